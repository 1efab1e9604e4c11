package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// SessionHeader carries a node's session in the HTTP node protocol: the
// heartbeat answer gives it (NodeAssignment.Session), and every later
// heartbeat, assignment read and DELETE of that node must send it.
const SessionHeader = "Allot-Session"

// beatRequest is the body of POST /v1/nodes/{id}/heartbeat.
type beatRequest struct {
	// IP is the node's address, used by the IP hash (default: the address
	// the request came from).
	IP string `json:"ip"`
	// Preferred names a group the node would like to hold.
	Preferred string `json:"preferred"`
	// Held lists the groups the node is using now.
	Held []string `json:"held"`
	// Ack is the assignment epoch Held reflects.
	Ack int64 `json:"ack"`
	// Demand is what the node asked of its groups lately, per second
	// ({"calls": 20, "tokens": 0}); optional: without it the stored demand
	// stays. A figure that is negative or above 10^9 is refused (422) and
	// nothing is written, the beat included.
	Demand *heartbeat.Demand `json:"demand"`
}

// NodeGroup is one group of a node's assignment in the HTTP node protocol.
// Config is not masked: the node needs its keys.
type NodeGroup struct {
	Name    string            `json:"name"`
	Version int64             `json:"version"`
	Config  map[string]string `json:"config"`
	// Share is the fraction of the group's quota this node may use
	// (1 / number of holders).
	Share float64 `json:"share"`
	// Quota is the group's whole quota ("600/m"), "" when it has none.
	Quota string `json:"quota"`
	// QuotaShare is this node's part of Quota as a rate ("200/m").
	QuotaShare string `json:"quota_share,omitempty"`
	// MaxNodes is the group's cap (0 = unlimited, 1 = exclusive). A node
	// must stop using a capped group once it has gone a TTL without a
	// successful beat: by then another node may have been granted it.
	MaxNodes int `json:"max_nodes,omitempty"`
}

// NodeAssignment is the answer of the heartbeat and assignment routes.
type NodeAssignment struct {
	Epoch int64  `json:"epoch"`
	Node  string `json:"node"`
	// Session is the node's session, in heartbeat answers only: send it
	// back in the Allot-Session header from then on.
	Session    string      `json:"session,omitempty"`
	Groups     []NodeGroup `json:"groups"`
	IntervalMS int64       `json:"interval_ms"`
	TTLMS      int64       `json:"ttl_ms"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	st, err := allocator.Inspect(r.Context(), s.reg, s.hb)
	if err != nil {
		return err
	}
	if err := st.ReadUsage(r.Context(), s.usage); err != nil {
		return err
	}
	if s.dev != nil {
		// The web UI shows the demo nodes' panel, and asks for them, only
		// then.
		w.Header().Set(DevHeader, "true")
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	st, err := allocator.Inspect(r.Context(), s.reg, s.hb)
	if err != nil {
		return err
	}
	nodes := st.Nodes
	if nodes == nil {
		nodes = []allocator.NodeStatus{}
	}
	writeJSON(w, http.StatusOK, nodes)
	return nil
}

// rebalanceNow runs a rebalance and answers its result. A run that finds the
// lock taken or loses to a newer epoch is retried for a few seconds: the
// caller asked for a rebalance that happened, not for a race report.
func (s *Server) rebalanceNow(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	for {
		res, err := s.rebalance(ctx)
		if err == nil {
			writeJSON(w, http.StatusOK, res.Summary())
			return nil
		}
		if !errors.Is(err, allocator.ErrLocked) && !errors.Is(err, registry.ErrStaleEpoch) {
			return err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func (s *Server) nodeHeartbeat(w http.ResponseWriter, r *http.Request) error {
	var req beatRequest
	if err := decodeJSON(w, r, MaxBodyBytes, &req, true); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := heartbeat.ValidateNodeID(id); err != nil {
		return err
	}
	// The session of every join is the server's own: a session a client
	// sends is used only while it holds the ID (so it came from an earlier
	// answer). The first heartbeat of a process sends none.
	session := r.Header.Get(SessionHeader)
	sent := session != ""
	if sent && heartbeat.ValidateSession(session) != nil {
		return errSession("malformed %s header", SessionHeader)
	}
	if req.IP == "" {
		req.IP, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	beat := heartbeat.Beat{Node: id, Session: session, IP: req.IP, Preferred: req.Preferred, Held: req.Held, Ack: req.Ack,
		Demand: req.Demand}
	check := beat
	if check.Session == "" {
		// A join without a session gets the server's (below): check the
		// rest of the beat now.
		check.Session = heartbeat.NewSession()
	}
	if err := check.Validate(); err != nil {
		return err // bad input: before the join limit writes anything
	}
	h, err := s.hb.Holder(r.Context(), id)
	if err != nil {
		return err
	}
	if !sent || !h.Holds(session) {
		// A join (or a beat the script will refuse: the ID is live under
		// another session). Only a join takes from the token's budget, so a
		// refused beat still writes nothing. Holder and Beat are two round
		// trips: an ID freed between them joins uncounted, once, and a join
		// raced by another process's is counted and then refused (409).
		if !h.Live && roleOf(r.Context()) == roleNode {
			if err := s.joins.take(r.Context(), credentialOf(r.Context())); err != nil {
				return err
			}
		}
		beat.Session = heartbeat.NewSession()
	}
	rep, err := s.hb.Beat(r.Context(), beat)
	var inUse *heartbeat.InUseError
	switch {
	case errors.As(err, &inUse) && !sent:
		return errConflict("node %q is in use by another process (live for at least %v more unless it beats again); "+
			"retry later or use another node id", id, inUse.Remaining.Round(time.Millisecond))
	case errors.As(err, &inUse):
		return errSession("wrong %s for node %q: another process holds it; re-join without the header", SessionHeader, id)
	case err != nil:
		return err
	}
	s.metrics.beats.Inc()
	if rep.Joined {
		s.log.Info("node joined", "node", id)
	}
	if rep.Work && rep.First {
		s.Nudge()
	}
	a, err := s.assignment(r.Context(), id)
	if err != nil {
		return err
	}
	s.held.set(id, a.entry())
	a.Session = beat.Session
	writeJSON(w, http.StatusOK, a)
	return nil
}

// checkSession lets a request act on node id only with the node's session
// in the Allot-Session header: the node token alone cannot read or remove
// another node. The admin role (and the open mode, where every request is
// admin) may omit the header; a header that is sent is always checked.
func (s *Server) checkSession(r *http.Request, id string) error {
	session := r.Header.Get(SessionHeader)
	if session == "" {
		if roleOf(r.Context()) == roleAdmin {
			return nil
		}
		return errSession("missing %s header: send the session of node %q's heartbeat answer", SessionHeader, id)
	}
	err := s.hb.CheckSession(r.Context(), id, session)
	if errors.Is(err, heartbeat.ErrWrongSession) || errors.Is(err, heartbeat.ErrInvalidNode) {
		return errSession("wrong %s for node %q; re-join with a heartbeat without the header", SessionHeader, id)
	}
	return err
}

// nodeAssignment long-polls: it answers once the epoch is past ?after= (at
// once without it) or one of the node's groups changed while it waited (a
// group revision: config, version or share), or after ?wait= (default 30 s,
// at most 60 s) with the current assignment.
func (s *Server) nodeAssignment(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := heartbeat.ValidateNodeID(id); err != nil {
		return err
	}
	if err := s.checkSession(r, id); err != nil {
		return err
	}
	q := r.URL.Query()
	after := int64(-1)
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return errBadRequest("after=%q is not an epoch number", v)
		}
		after = n
	}
	wait := DefaultLongPoll
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errBadRequest("wait=%q is not a duration like 30s", v)
		}
		wait = min(d, MaxLongPoll)
	}
	if wait > 0 {
		// Each token class has its own slots; beyond them the poll is
		// refused with Retry-After rather than answered at once, which a
		// node polling in a loop would turn into a spin.
		release, ok := s.longPolls.take(roleOf(r.Context()))
		if !ok {
			return errFull("long polls", s.longPolls.size(), s.hbCfg.Interval)
		}
		defer release()
	}
	// Lift the server's write timeout: this answer may come a minute late.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})

	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(fallbackPoll)
	defer poll.Stop()
	var first *NodeAssignment
	for {
		wake := s.changed.wait() // taken before the read, so no change slips between
		a, err := s.assignment(r.Context(), id)
		if err != nil {
			return err
		}
		// A new epoch, or a held group changed (config, version, share)
		// since the poll began: a config change reaches the node at once,
		// not at its next beat.
		if a.Epoch > after || (first != nil && !sameGroups(*first, a)) {
			s.held.set(id, a.entry())
			writeJSON(w, http.StatusOK, a)
			return nil
		}
		if first == nil {
			first = &a
		}
		select {
		case <-wake:
		case <-poll.C:
		case <-deadline.C:
			writeJSON(w, http.StatusOK, a)
			return nil
		case <-r.Context().Done():
			return nil
		case <-s.ctx.Done():
			return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: "server shutting down"}
		}
	}
}

// nodeLeave removes a node: with its session (Allot-Session), or without
// one as admin — an operator evicting a node; the process behind it, if
// still running, re-joins with its next heartbeat.
func (s *Server) nodeLeave(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := heartbeat.ValidateNodeID(id); err != nil {
		return err
	}
	session := r.Header.Get(SessionHeader)
	planned := false
	switch {
	case session == "" && roleOf(r.Context()) == roleAdmin:
		if err := s.hb.Evict(r.Context(), id); err != nil {
			return err
		}
	case session == "":
		return errSession("missing %s header: send the session of node %q's heartbeat answer", SessionHeader, id)
	default:
		// As a Go client's Close: the leave and the reads of a plan without
		// the node are one transaction, then the commit, so its groups have
		// moved when the answer comes back. The script checks the session;
		// leaving an unknown node is a no-op.
		left, res, err := s.rebal.LeaveAndPlan(r.Context(), id, session)
		if !left {
			if errors.Is(err, heartbeat.ErrWrongSession) || errors.Is(err, heartbeat.ErrInvalidNode) {
				return errSession("wrong %s for node %q", SessionHeader, id)
			}
			return err
		}
		s.metrics.observeRebalance(res, err)
		// Another plan came first (stale) or the plan failed: the loop's
		// locked run plans the departure.
		planned = err == nil
	}
	s.held.forget(id)
	s.log.Info("node left", "node", id)
	if !planned {
		s.Nudge()
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// assignment reads node id's assignment in the node protocol's shape.
func (s *Server) assignment(ctx context.Context, id string) (NodeAssignment, error) {
	v, err := s.reg.NodeAssignment(ctx, id)
	if err != nil {
		return NodeAssignment{}, err
	}
	a := NodeAssignment{
		Epoch: v.Epoch, Node: id, Groups: make([]NodeGroup, 0, len(v.Groups)),
		IntervalMS: s.hbCfg.Interval.Milliseconds(), TTLMS: s.hbCfg.TTL.Milliseconds(),
	}
	for _, g := range v.Groups {
		n := max(v.Holders[g.Name], 1)
		ng := NodeGroup{Name: g.Name, Version: g.Version, Config: g.Config, Share: 1 / float64(n), Quota: g.Quota, MaxNodes: g.MaxNodes}
		if ng.Config == nil {
			ng.Config = map[string]string{}
		}
		if q, err := registry.ParseQuota(g.Quota); err == nil && !q.IsZero() {
			ng.QuotaShare = q.Share(n)
		}
		a.Groups = append(a.Groups, ng)
	}
	return a, nil
}

// entry is a's groups as the node's :assign entry holds them: sorted
// names, comma-joined (what an acquire's candidates are built from).
func (a NodeAssignment) entry() string {
	names := make([]string, len(a.Groups))
	for i, g := range a.Groups {
		names[i] = g.Name
	}
	return strings.Join(names, ",")
}

// errSession is the 403 of a node protocol request without the node's
// session.
func errSession(format string, a ...any) *apiError {
	return &apiError{status: http.StatusForbidden, code: CodeForbidden, message: fmt.Sprintf(format, a...)}
}

// sameGroups reports whether a and b give the node the same groups at the
// same versions and shares.
func sameGroups(a, b NodeAssignment) bool {
	if len(a.Groups) != len(b.Groups) {
		return false
	}
	for i := range a.Groups {
		x, y := a.Groups[i], b.Groups[i]
		if x.Name != y.Name || x.Version != y.Version || x.Share != y.Share {
			return false
		}
	}
	return true
}
