package server

import (
	"context"
	"net/http"
	"time"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/registry"
)

// groupRequest is the body of POST /v1/groups: the group JSON's editable
// fields.
type groupRequest struct {
	Name       string            `json:"name"`
	Weight     *float64          `json:"weight"`
	MaxNodes   *int              `json:"max_nodes"`
	Quota      *string           `json:"quota"`
	Config     map[string]string `json:"config"`
	SecretKeys []string          `json:"secret_keys"`
	EjectAfter *string           `json:"eject_after"`
	Lend       *bool             `json:"lend"`
}

// updateRequest is the body of PATCH /v1/groups/{name}: a registry.Change,
// applied now or, with "at", scheduled.
type updateRequest struct {
	Set        map[string]string `json:"set"`
	Unset      []string          `json:"unset"`
	Secret     []string          `json:"secret"`
	Unsecret   []string          `json:"unsecret"`
	Weight     *float64          `json:"weight"`
	MaxNodes   *int              `json:"max_nodes"`
	Quota      *string           `json:"quota"`
	EjectAfter *string           `json:"eject_after"`
	Lend       *bool             `json:"lend"`
	IfVersion  int64             `json:"if_version"`
	At         string            `json:"at"`
}

func (u updateRequest) change() registry.Change {
	return registry.Change{Set: u.Set, Unset: u.Unset, Secret: u.Secret, Unsecret: u.Unsecret, Weight: u.Weight,
		MaxNodes: u.MaxNodes, Quota: u.Quota, EjectAfter: u.EjectAfter, Lend: u.Lend, IfVersion: u.IfVersion}
}

// retireRequest is the optional body of POST /v1/groups/{name}/retire.
type retireRequest struct {
	DrainTimeout string `json:"drain_timeout"` // Go duration; "" = registry default
	At           string `json:"at"`
}

type rollbackRequest struct {
	Version int64 `json:"version"`
}

// liveHolders returns the live nodes holding each group (allocator.Holders).
func (s *Server) liveHolders(ctx context.Context) (map[string][]string, error) {
	return allocator.Holders(ctx, s.reg, s.hb)
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	show, err := reveal(r)
	if err != nil {
		return err
	}
	groups, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	if groups, err = s.reg.WithHealth(r.Context(), groups); err != nil {
		return err
	}
	holders, err := s.liveHolders(r.Context())
	if err != nil {
		return err
	}
	if err := revealable(show, groups...); err != nil {
		return err
	}
	out := make([]allocator.GroupView, 0, len(groups))
	for _, g := range groups {
		out = append(out, allocator.View(g, holders[g.Name], show))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	show, err := reveal(r)
	if err != nil {
		return err
	}
	g, err := s.reg.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	gs, err := s.reg.WithHealth(r.Context(), []registry.Group{g})
	if err != nil {
		return err
	}
	g = gs[0]
	holders, err := s.liveHolders(r.Context())
	if err != nil {
		return err
	}
	if err := revealable(show, g); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, allocator.View(g, holders[g.Name], show))
	return nil
}

func (s *Server) addGroup(w http.ResponseWriter, r *http.Request) error {
	var req groupRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, false); err != nil {
		return err
	}
	show, err := reveal(r)
	if err != nil {
		return err
	}
	c := registry.Change{Set: req.Config, Secret: req.SecretKeys, Weight: req.Weight, MaxNodes: req.MaxNodes, Quota: req.Quota, EjectAfter: req.EjectAfter, Lend: req.Lend}
	g, err := s.reg.Add(r.Context(), req.Name, c, actor(r))
	if err != nil {
		return err
	}
	s.log.Info("group added", "group", g.Name, "version", g.Version, "by", actor(r))
	w.Header().Set("Location", "/v1/groups/"+g.Name)
	writeJSON(w, http.StatusCreated, allocator.View(g, nil, show))
	return nil
}

func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request) error {
	var req updateRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, false); err != nil {
		return err
	}
	show, err := reveal(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	c := req.change()
	if !c.Edits() {
		return errInvalid("nothing to change: give set, unset, secret, weight, max_nodes, quota or eject_after")
	}
	if req.At != "" {
		return s.schedule(w, r, registry.Scheduled{Group: name, Op: registry.OpUpdate, Change: c}, req.At, show)
	}
	g, err := s.reg.Update(r.Context(), name, c, actor(r))
	if err != nil {
		return err
	}
	s.log.Info("group updated", "group", g.Name, "version", g.Version, "by", actor(r))
	if len(c.Unsecret) > 0 {
		s.log.Warn("secret marks removed", "group", g.Name, "keys", c.Unsecret, "version", g.Version, "by", actor(r))
	}
	holders, err := s.liveHolders(r.Context())
	if err != nil {
		return err
	}
	if err := revealable(show, g); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, allocator.View(g, holders[g.Name], show))
	return nil
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.reg.Delete(r.Context(), name, actor(r)); err != nil {
		return err
	}
	s.log.Info("group deleted", "group", name, "by", actor(r))
	s.Nudge()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) retireGroup(w http.ResponseWriter, r *http.Request) error {
	var req retireRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, true); err != nil {
		return err
	}
	show, err := reveal(r)
	if err != nil {
		return err
	}
	var drain time.Duration
	if req.DrainTimeout != "" {
		if drain, err = time.ParseDuration(req.DrainTimeout); err != nil || drain <= 0 {
			return errInvalid("drain_timeout %q: want a positive duration like 5m", req.DrainTimeout)
		}
	}
	wait, err := boolParam(r, "wait")
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if req.At != "" {
		if wait {
			return errInvalid("wait cannot be combined with at")
		}
		return s.schedule(w, r, registry.Scheduled{Group: name, Op: registry.OpRetire, Drain: drain}, req.At, show)
	}
	g, err := s.reg.Retire(r.Context(), name, drain, actor(r))
	if err != nil {
		return err
	}
	s.log.Info("group retiring", "group", g.Name, "version", g.Version, "by", actor(r))
	s.Nudge()
	if wait {
		// ?wait=true answers once the group is retired (the same wait as
		// `allot group retire --wait`); the request's deadline bounds it.
		if g, err = s.rebal.WaitRetired(r.Context(), name, 0); err != nil {
			return err
		}
	}
	holders, err := s.liveHolders(r.Context())
	if err != nil {
		return err
	}
	if err := revealable(show, g); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, allocator.View(g, holders[g.Name], show))
	return nil
}

func (s *Server) groupHistory(w http.ResponseWriter, r *http.Request) error {
	show, err := reveal(r)
	if err != nil {
		return err
	}
	hist, err := s.reg.History(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	if !show {
		hist = registry.MaskHistory(hist)
	} else if err := revealable(show, hist...); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, hist)
	return nil
}

func (s *Server) rollbackGroup(w http.ResponseWriter, r *http.Request) error {
	var req rollbackRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, false); err != nil {
		return err
	}
	show, err := reveal(r)
	if err != nil {
		return err
	}
	if req.Version <= 0 {
		return errInvalid("version must be a positive version number")
	}
	g, err := s.reg.Rollback(r.Context(), r.PathValue("name"), req.Version, actor(r))
	if err != nil {
		return err
	}
	s.log.Info("group rolled back", "group", g.Name, "version", g.Version, "to", req.Version, "by", actor(r))
	holders, err := s.liveHolders(r.Context())
	if err != nil {
		return err
	}
	if err := revealable(show, g); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, allocator.View(g, holders[g.Name], show))
	return nil
}
