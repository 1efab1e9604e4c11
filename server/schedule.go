package server

import (
	"net/http"
	"time"

	"github.com/allot-io/allot/registry"
)

// scheduleRequest is the body of POST /v1/schedule.
type scheduleRequest struct {
	Group  string          `json:"group"`
	Op     registry.Op     `json:"op"` // update | retire | delete
	At     string          `json:"at"` // RFC 3339, or a duration from now ("10m")
	Change registry.Change `json:"change"`
	// DrainTimeout is the drain timeout of a retire ("" = registry default).
	DrainTimeout string `json:"drain_timeout"`
}

func (s *Server) listSchedule(w http.ResponseWriter, r *http.Request) error {
	show, err := reveal(r)
	if err != nil {
		return err
	}
	items, err := s.reg.Schedules(r.Context())
	if err != nil {
		return err
	}
	if show {
		if err := registry.RequireOpenSchedules(items...); err != nil {
			return err
		}
	}
	secrets := map[string][]string{}
	if !show {
		groups, err := s.reg.List(r.Context())
		if err != nil {
			return err
		}
		for _, g := range groups {
			secrets[g.Name] = g.SecretKeys
		}
	}
	out := make([]registry.Scheduled, 0, len(items))
	for _, it := range items {
		if !show {
			it = it.Masked(secrets[it.Group])
		}
		out = append(out, it)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) addSchedule(w http.ResponseWriter, r *http.Request) error {
	var req scheduleRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, false); err != nil {
		return err
	}
	show, err := reveal(r)
	if err != nil {
		return err
	}
	switch req.Op {
	case registry.OpUpdate:
		if !req.Change.Edits() {
			return errInvalid("an update needs a change: set, unset, secret, weight, max_nodes or quota")
		}
	case registry.OpRetire, registry.OpDelete:
		if req.Change.Edits() {
			return errInvalid("only an update takes a change")
		}
	default:
		return errInvalid("op %q: want update, retire or delete", req.Op)
	}
	sc := registry.Scheduled{Group: req.Group, Op: req.Op, Change: req.Change}
	if req.DrainTimeout != "" {
		d, err := time.ParseDuration(req.DrainTimeout)
		if err != nil || d <= 0 || req.Op != registry.OpRetire {
			return errInvalid("drain_timeout %q: want a positive duration like 5m, on a retire", req.DrainTimeout)
		}
		sc.Drain = d
	}
	return s.schedule(w, r, sc, req.At, show)
}

// schedule stores sc due at `at` and answers the stored item.
func (s *Server) schedule(w http.ResponseWriter, r *http.Request, sc registry.Scheduled, at string, show bool) error {
	when, err := registry.ParseAt(at, time.Now())
	if err != nil {
		return errInvalid("at: %s", registry.Reason(err))
	}
	sc.At, sc.By = when, actor(r)
	stored, err := s.reg.Schedule(r.Context(), sc)
	if err != nil {
		return err
	}
	s.log.Info("change scheduled", "group", stored.Group, "op", stored.Op, "at", stored.At, "id", stored.ID, "by", stored.By)
	if !show {
		var secret []string
		if g, err := s.reg.Get(r.Context(), stored.Group); err == nil {
			secret = g.SecretKeys
		}
		stored = stored.Masked(secret)
	}
	w.Header().Set("Location", "/v1/schedule/"+stored.ID)
	writeJSON(w, http.StatusCreated, stored)
	return nil
}

func (s *Server) cancelSchedule(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.reg.CancelSchedule(r.Context(), id); err != nil {
		return err
	}
	s.log.Info("schedule cancelled", "id", id, "by", actor(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}
