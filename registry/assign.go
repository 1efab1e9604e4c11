package registry

import (
	"context"
	"crypto/sha1" // only to match redis.sha1hex in commit.lua
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Counters are the namespace counters kept in the state hash.
type Counters struct {
	// Epoch is the assignment epoch, +1 on every changed commit.
	Epoch int64
	// Rev is +1 on every group write.
	Rev int64
	// MVer is +1 on every membership change (written by heartbeat).
	MVer int64
	// PlannedRev and PlannedMVer are the Rev and MVer the committed
	// assignment was planned from.
	PlannedRev, PlannedMVer int64
}

// Assignment is the committed assignment with the counters it was read with.
type Assignment struct {
	Counters
	// Nodes maps node ID to its sorted groups; planned standby nodes map to
	// an empty slice.
	Nodes map[string][]string
	// Revoked maps node ID to the "group@epoch" entries revoked from it that
	// it may still use until it acknowledges (the rebalancer's format).
	Revoked map[string][]string
}

// Commit is a plan to store, computed from the counters in From.
type Commit struct {
	From    Counters
	Nodes   map[string][]string
	Revoked map[string][]string
	By      string
}

// Counters reads the namespace counters.
func (r *Registry) Counters(ctx context.Context) (Counters, error) {
	v, err := r.rdb.HMGet(ctx, r.keys.State(), "epoch", "rev", "mver", "prev", "pmver").Result()
	if err != nil {
		return Counters{}, wrap(err, "read counters")
	}
	n := make([]int64, len(v))
	for i, x := range v {
		s, _ := x.(string)
		if n[i], err = parseCounter(s); err != nil {
			return Counters{}, wrap(err, "read counters")
		}
	}
	return Counters{Epoch: n[0], Rev: n[1], MVer: n[2], PlannedRev: n[3], PlannedMVer: n[4]}, nil
}

func parseCounter(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("registry: bad counter %q: %w", s, err)
	}
	return n, nil
}

// Assignment reads the committed assignment and counters in one consistent
// read (one MULTI/EXEC: no script, so 10k entries are not copied through Lua).
func (r *Registry) Assignment(ctx context.Context) (Assignment, error) {
	k := r.keys
	var st *redis.SliceCmd
	var assign, revoked *redis.MapStringStringCmd
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		st = p.HMGet(ctx, k.State(), "epoch", "rev", "mver", "prev", "pmver")
		assign = p.HGetAll(ctx, k.Assign())
		revoked = p.HGetAll(ctx, k.Revoked())
		return nil
	})
	if err != nil {
		return Assignment{}, wrap(err, "read assignment")
	}
	n := make([]int64, 5)
	for i, x := range st.Val() {
		s, _ := x.(string)
		if n[i], err = parseCounter(s); err != nil {
			return Assignment{}, wrap(err, "read assignment")
		}
	}
	return Assignment{
		Counters: Counters{Epoch: n[0], Rev: n[1], MVer: n[2], PlannedRev: n[3], PlannedMVer: n[4]},
		Nodes:    splitMap(assign.Val()),
		Revoked:  splitMap(revoked.Val()),
	}, nil
}

func splitMap(m map[string]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for id, v := range m {
		out[id] = splitGroups(v)
	}
	return out
}

func splitGroups(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// NodeView is one node's part of the committed assignment.
type NodeView struct {
	// Epoch is the assignment epoch the view was read at.
	Epoch int64
	// Groups are the documents of the node's groups, sorted by name.
	Groups []Group
	// Holders maps each of Groups to the number of nodes the assignment gives
	// it to: the node's share of the group's quota is 1/Holders.
	Holders map[string]int
}

// NodeAssignment returns node's part of the committed assignment, read
// atomically. Groups deleted since the commit are left out.
func (r *Registry) NodeAssignment(ctx context.Context, node string) (NodeView, error) {
	k := r.keys
	res, err := nodeAssignmentScript.Run(ctx, r.rdb, []string{k.State(), k.Assign(), k.Holders()}, node, k.Group("")).StringSlice()
	if err != nil {
		return NodeView{}, wrap(err, "read assignment of node %q", node)
	}
	if len(res) == 0 || len(res)%2 != 1 {
		return NodeView{}, wrap(errors.New("registry: malformed reply"), "read assignment of node %q", node)
	}
	var v NodeView
	if v.Epoch, err = parseCounter(res[0]); err != nil {
		return NodeView{}, wrap(err, "read assignment of node %q", node)
	}
	v.Groups = make([]Group, 0, len(res)/2)
	v.Holders = make(map[string]int, len(res)/2)
	for i := 1; i < len(res); i += 2 {
		g, err := decodeGroup(res[i])
		if err != nil {
			return NodeView{}, wrap(err, "read assignment of node %q", node)
		}
		n, err := strconv.Atoi(res[i+1])
		if err != nil || n < 1 {
			n = 1
		}
		v.Groups = append(v.Groups, g)
		v.Holders[g.Name] = n
	}
	return v, nil
}

// Commit stores c if c.From.Epoch is still the current epoch (ErrStaleEpoch
// otherwise). Groups that no longer exist are dropped from Nodes, group lists
// are sorted and deduplicated; a node mapped to no group is stored as standby.
// Revoked entries ("group@epoch", the rebalancer's) are stored as given, only
// sorted, deduplicated and without empty lists. prev/pmver are set to c.From.Rev/MVer. When the
// assignment is unchanged only those are stored and changed is false (same
// epoch, no event); otherwise the epoch is incremented and an assignment event
// published.
func (r *Registry) Commit(ctx context.Context, c Commit) (epoch int64, changed bool, err error) {
	k := r.keys
	keys := []string{k.State(), k.Assign(), k.Revoked(), k.Groups(), k.Log(), k.Holders()}
	nodes, groups := pairs(c.Nodes, true)
	revoked, _ := pairs(c.Revoked, false)
	head := []any{c.From.Epoch, c.From.Rev, c.From.MVer, c.By, k.Events(), LogMaxLen, digest(nodes, revoked)}
	// Probe first: an unchanged plan (the common case) is settled without
	// sending it.
	res, err := commitScript.Run(ctx, r.rdb, keys, head...).StringSlice()
	if err == nil && len(res) == 1 && res[0] == "send" {
		args := make([]any, 0, len(head)+2+len(groups)+len(nodes)+len(revoked))
		args = append(args, head...)
		args = append(args, len(groups), len(nodes)/2)
		for _, part := range [][]string{groups, nodes, revoked} {
			for _, v := range part {
				args = append(args, v)
			}
		}
		res, err = commitScript.Run(ctx, r.rdb, keys, args...).StringSlice()
	}
	if err != nil {
		return 0, false, wrap(err, "commit assignment")
	}
	if len(res) != 2 {
		return 0, false, wrap(fmt.Errorf("registry: malformed reply %q", res), "commit assignment")
	}
	if epoch, err = parseCounter(res[1]); err != nil {
		return 0, false, wrap(err, "commit assignment")
	}
	switch res[0] {
	case "stale":
		return epoch, false, wrap(fmt.Errorf("%w: planned from %d, current is %d", ErrStaleEpoch, c.From.Epoch, epoch), "commit assignment")
	case "same":
		return epoch, false, nil
	case "ok":
		r.log.Debug("assignment committed", "epoch", epoch, "nodes", len(c.Nodes))
		return epoch, true, nil
	}
	return 0, false, wrap(fmt.Errorf("registry: unexpected reply %q", res[0]), "commit assignment")
}

// digest identifies an assignment the way commit.lua does: sha1 hex of the
// node pairs joined by NUL, \x01, the revoked pairs joined by NUL.
func digest(nodes, revoked []string) string {
	h := sha1.New()
	for i, s := range nodes {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(s))
	}
	h.Write([]byte{1})
	for i, s := range revoked {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// pairs flattens m into node, "g1,g2" pairs in node order with each list
// sorted and deduplicated, and returns the distinct values named. With
// keepEmpty false, nodes with an empty list are left out.
func pairs(m map[string][]string, keepEmpty bool) (flat, distinct []string) {
	ids := make([]string, 0, len(m))
	for id, gs := range m {
		if keepEmpty || len(gs) > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	seen := map[string]bool{}
	flat = make([]string, 0, 2*len(ids))
	for _, id := range ids {
		gs := m[id]
		if !slices.IsSorted(gs) || hasDup(gs) {
			gs = slices.Compact(slices.Sorted(slices.Values(gs)))
		}
		for _, g := range gs {
			if !seen[g] {
				seen[g] = true
				distinct = append(distinct, g)
			}
		}
		flat = append(flat, id, strings.Join(gs, ","))
	}
	slices.Sort(distinct)
	return flat, distinct
}

func hasDup(sorted []string) bool {
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return true
		}
	}
	return false
}
