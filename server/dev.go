package server

import (
	"context"
	"net/http"
)

// DevHeader is set ("true") on GET /v1/status by a server in dev mode.
const DevHeader = "Allot-Dev"

// DevNode describes one simulated node of `allot serve --dev`.
type DevNode struct {
	ID      string   `json:"id"`
	IP      string   `json:"ip"`
	Running bool     `json:"running"`
	Epoch   int64    `json:"epoch"`
	Groups  []string `json:"groups"`
}

// DevController runs the simulated nodes of dev mode. Its methods may be
// called concurrently.
type DevController interface {
	// Nodes lists the demo nodes, running or stopped, by ID.
	Nodes() []DevNode
	// Stop stops a node. Not graceful: it stops beating without leaving, so
	// its groups move once its TTL runs out. Graceful: it leaves, so they
	// move at once. ErrDevNodeNotFound for an unknown ID.
	Stop(ctx context.Context, id string, graceful bool) error
	// Start starts a stopped node again (a no-op for a running one).
	Start(ctx context.Context, id string) error
	// Add starts one more node and returns it.
	Add(ctx context.Context) (DevNode, error)
}

// errNoDev answers the dev routes when the server is not in dev mode.
var errNoDev = &apiError{status: http.StatusNotFound, code: CodeNotFound, message: "not in dev mode (allot serve --dev)"}

func (s *Server) devNodes(w http.ResponseWriter, r *http.Request) error {
	if s.dev == nil {
		return errNoDev
	}
	nodes := s.dev.Nodes()
	if nodes == nil {
		nodes = []DevNode{}
	}
	writeJSON(w, http.StatusOK, nodes)
	return nil
}

func (s *Server) devAdd(w http.ResponseWriter, r *http.Request) error {
	if s.dev == nil {
		return errNoDev
	}
	n, err := s.dev.Add(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, n)
	return nil
}

func (s *Server) devStop(w http.ResponseWriter, r *http.Request) error {
	if s.dev == nil {
		return errNoDev
	}
	graceful, err := boolParam(r, "graceful")
	if err != nil {
		return err
	}
	if err := s.dev.Stop(r.Context(), r.PathValue("id"), graceful); err != nil {
		return err
	}
	return s.devNode(w, r.PathValue("id"))
}

func (s *Server) devStart(w http.ResponseWriter, r *http.Request) error {
	if s.dev == nil {
		return errNoDev
	}
	if err := s.dev.Start(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	return s.devNode(w, r.PathValue("id"))
}

// devNode answers the current state of one demo node.
func (s *Server) devNode(w http.ResponseWriter, id string) error {
	for _, n := range s.dev.Nodes() {
		if n.ID == id {
			writeJSON(w, http.StatusOK, n)
			return nil
		}
	}
	return ErrDevNodeNotFound
}
