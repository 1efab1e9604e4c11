package allocator

import (
	"context"
	"sort"
	"time"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// Status is what `allot status` and GET /v1/status show: the committed
// assignment next to what Plan wants.
type Status struct {
	Namespace string        `json:"namespace"`
	Epoch     int64         `json:"epoch"`
	Balanced  bool          `json:"balanced"`
	Groups    []GroupStatus `json:"groups"`
	Nodes     []NodeStatus  `json:"nodes"`
	Standby   []string      `json:"standby"`
	// Waiting counts capped-group grants held back until a holder releases.
	Waiting int `json:"waiting"`
	// Unserved lists the active groups no live node holds (sorted): with no
	// nodes at all the pool is "balanced" yet serves nothing.
	Unserved []string `json:"unserved"`
	// SecretsAtRest says how the reader stores secret values:
	// registry.AtRestEncrypted (it has secret keys) or AtRestPlaintext.
	SecretsAtRest string `json:"secrets_at_rest"`

	// groups are the documents the status was built from, for ReadUsage.
	groups []registry.Group
}

// GroupStatus is one group in a Status.
type GroupStatus struct {
	Name     string  `json:"name"`
	State    string  `json:"state"`
	Weight   float64 `json:"weight"`
	MaxNodes int     `json:"max_nodes"`
	Quota    string  `json:"quota"`
	// Target is the node count Plan wants for the group.
	Target int `json:"target"`
	// Nodes are the IDs of the live nodes holding it now, sorted.
	Nodes []string `json:"nodes"`
	// Share is the fraction of the group's quota each holder gets (1/holders;
	// 0 when nobody holds it).
	Share float64 `json:"share"`
	// Health is the group's key health (cooldown, failures, suspension).
	Health *registry.Health `json:"health,omitempty"`
	// Used is the highest fraction of any of the group's limits used, each
	// read over its window (quota.Limits.MostUsed: the last full minute for
	// a limit per second or minute, the last hour or day for one per hour
	// or day; 0.5 = half, above 1 = over), filled by ReadUsage; 0 for a
	// group without a quota.
	Used float64 `json:"used"`
	// Demand is what its live holders asked for lately, summed (a holder
	// of several groups counts an equal part towards each): placement by
	// demand steers it towards the group's share of the pool.
	Demand heartbeat.Demand `json:"demand"`
	// Wanted is the highest fraction of any of the group's limits that
	// Demand asks for (1.2 = a fifth more than the quota allows); 0 for a
	// group without a quota.
	Wanted float64 `json:"wanted"`
	// Short is true for an active group that live nodes hold fewer times
	// than Plan wants (Target): unserved, or waiting for a node.
	Short bool `json:"short,omitempty"`
}

// NodeStatus is one live node in a Status.
type NodeStatus struct {
	ID       string    `json:"id"`
	IP       string    `json:"ip"`
	Groups   []string  `json:"groups"`
	LastSeen time.Time `json:"last_seen"`
	// Demand is what the node asked for lately, as its beats last stored it
	// (null when it reports none: an HTTP node that sends no demand).
	Demand *heartbeat.Demand `json:"demand"`
	// Stale is true for a node still live (within its TTL) whose last beat
	// is older than two heartbeat intervals: it missed a beat and may be
	// about to be reaped.
	Stale bool `json:"stale,omitempty"`
}

// GroupView is a group as the CLI and the HTTP API show it: the stored
// document plus the nodes holding it.
type GroupView struct {
	registry.Group
	Nodes []string `json:"nodes"`
}

// Inspect reads the pool and reports its status. It only reads.
func Inspect(ctx context.Context, reg *registry.Registry, hb *heartbeat.Tracker) (Status, error) {
	st, err := readState(ctx, reg, hb)
	if err != nil {
		return Status{}, err
	}
	s := st.status()
	s.markStale(st.now, StaleAfter*hb.Config().Interval)
	s.Namespace = reg.Namespace()
	s.SecretsAtRest = reg.SecretsAtRest()
	withHealth, err := reg.WithHealth(ctx, st.groups)
	if err != nil {
		return Status{}, err
	}
	for i := range s.Groups {
		s.Groups[i].Health = withHealth[i].Health
	}
	return s, nil
}

func (st state) status() Status {
	groups, nodes := st.planInputs()
	targets := TargetsFrom(groups, nodes, st.assign.Nodes)

	// Only live nodes count as holders; a committed entry for a node that has
	// died since is not a holder.
	holders := make(map[string][]string)
	demand := make(map[string]heartbeat.Demand)
	current := make(Assignment, len(st.nodes))
	s := Status{Epoch: st.assign.Epoch, Groups: []GroupStatus{}, Nodes: []NodeStatus{}, Standby: []string{}}
	for _, n := range st.nodes {
		gs := append([]string{}, st.assign.Nodes[n.ID]...)
		if len(gs) > 0 {
			current[n.ID] = gs
		} else {
			s.Standby = append(s.Standby, n.ID)
		}
		for _, g := range gs {
			holders[g] = append(holders[g], n.ID)
			if n.Demand != nil {
				d := demand[g]
				d.Calls += n.Demand.Calls / float64(len(gs))
				d.Tokens += n.Demand.Tokens / float64(len(gs))
				demand[g] = d
			}
		}
		s.Nodes = append(s.Nodes, NodeStatus{ID: n.ID, IP: n.IP, Groups: gs, LastSeen: n.LastSeen, Demand: n.Demand})
	}
	for _, g := range st.groups {
		h := holders[g.Name]
		if h == nil {
			h = []string{}
		}
		sort.Strings(h)
		gs := GroupStatus{
			Name: g.Name, State: string(g.State), Weight: g.Weight, MaxNodes: g.MaxNodes,
			Quota: g.Quota, Target: targets[g.Name], Nodes: h, Demand: demand[g.Name],
		}
		if ls, err := registry.ParseQuota(g.Quota); err == nil {
			gs.Wanted = wanted(ls, gs.Demand)
		}
		if len(h) > 0 {
			gs.Share = 1 / float64(len(h))
		}
		gs.Short = g.State == registry.Active && len(h) < gs.Target
		s.Groups = append(s.Groups, gs)
	}
	s.groups = st.groups
	s.Unserved = []string{}
	for _, g := range s.Groups {
		if g.State == string(registry.Active) && len(g.Nodes) == 0 {
			s.Unserved = append(s.Unserved, g.Name)
		}
	}
	s.Waiting = st.next().waiting
	s.Balanced = s.Waiting == 0 && Balanced(groups, nodes, current)
	return s
}

// wanted is the highest fraction of any limit of ls that d asks for.
func wanted(ls quota.Limits, d heartbeat.Demand) float64 {
	w := 0.0
	for _, l := range ls {
		ask := d.Calls
		if l.Kind == quota.Tokens {
			ask = d.Tokens
		}
		if r := l.PerMinute() / 60; r > 0 {
			w = max(w, ask/r)
		}
	}
	return w
}

// StaleAfter is how many heartbeat intervals without a beat make a live
// node stale (NodeStatus.Stale).
const StaleAfter = 2

// markStale flags the nodes whose last beat is older than after at now
// (Redis server time); after <= 0 flags none.
func (s *Status) markStale(now time.Time, after time.Duration) {
	if after <= 0 || now.IsZero() {
		return
	}
	for i, n := range s.Nodes {
		s.Nodes[i].Stale = now.Sub(n.LastSeen) > after
	}
}

// View is group g as the CLI and the HTTP API show it: masked unless reveal
// (an admin asked for the secret values), with the IDs of the live nodes
// holding it (never nil, so JSON shows []).
func View(g registry.Group, nodes []string, reveal bool) GroupView {
	if !reveal {
		g = g.Masked()
	}
	if nodes == nil {
		nodes = []string{}
	}
	return GroupView{Group: g, Nodes: nodes}
}

// Holders maps each group to the IDs of the live nodes holding it, sorted.
// A committed entry of a node that died and is not reaped yet is no holder.
func (s Status) Holders() map[string][]string {
	holders := make(map[string][]string, len(s.Groups))
	for _, g := range s.Groups {
		holders[g.Name] = g.Nodes
	}
	return holders
}

// Holders reads the pool and maps each group to the IDs of the live nodes
// holding it, as Inspect counts them. It only reads.
func Holders(ctx context.Context, reg *registry.Registry, hb *heartbeat.Tracker) (map[string][]string, error) {
	st, err := Inspect(ctx, reg, hb)
	if err != nil {
		return nil, err
	}
	return st.Holders(), nil
}

// GroupViews pairs each group with the nodes holding it according to s,
// unmasked (the caller masks, or uses View).
func (s Status) GroupViews(groups []registry.Group) []GroupView {
	holders := s.Holders()
	out := make([]GroupView, 0, len(groups))
	for _, g := range groups {
		out = append(out, View(g, holders[g.Name], true))
	}
	return out
}
