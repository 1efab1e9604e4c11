package registry

import (
	"context"
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
	From Counters
	// Base is the assignment the plan was computed from, as Assignment read
	// it with From. Only entries that differ from it are sent, so a commit
	// costs what changed, not the size of the pool. nil: Commit reads it.
	Base *Assignment
	// Nodes is the whole new assignment: node ID -> groups (empty = standby).
	Nodes map[string][]string
	// Revoked is the whole new set of revoked entries.
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
	var read assignmentRead
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		read = queueAssignment(ctx, p, r.keys.State(), r.keys.Assign(), r.keys.Revoked())
		return nil
	})
	if err != nil {
		return Assignment{}, wrap(err, "read assignment")
	}
	a, err := read.result()
	return a, wrap(err, "read assignment")
}

// assignmentRead is an assignment read queued on a transaction.
type assignmentRead struct {
	state           *redis.SliceCmd
	assign, revoked *redis.MapStringStringCmd
}

func queueAssignment(ctx context.Context, tx redis.Pipeliner, state, assign, revoked string) assignmentRead {
	return assignmentRead{
		state:   tx.HMGet(ctx, state, "epoch", "rev", "mver", "prev", "pmver"),
		assign:  tx.HGetAll(ctx, assign),
		revoked: tx.HGetAll(ctx, revoked),
	}
}

func (read assignmentRead) result() (Assignment, error) {
	vals, err := read.state.Result()
	if err != nil {
		return Assignment{}, err
	}
	assign, err := read.assign.Result()
	if err != nil {
		return Assignment{}, err
	}
	revoked, err := read.revoked.Result()
	if err != nil {
		return Assignment{}, err
	}
	var n [5]int64
	for i, x := range vals {
		s, _ := x.(string)
		if n[i], err = parseCounter(s); err != nil {
			return Assignment{}, err
		}
	}
	return Assignment{
		Counters: Counters{Epoch: n[0], Rev: n[1], MVer: n[2], PlannedRev: n[3], PlannedMVer: n[4]},
		Nodes:    splitMap(assign),
		Revoked:  splitMap(revoked),
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
	// Dirty is true when a leave or reap changed holder counts since the
	// epoch was committed: Holders are newer than Epoch, so the next
	// assignment event must be read, not adopted (it may not name them).
	Dirty bool
	// Rev is the group revision at the instant of the read: the documents
	// read are those of Rev, so a reader has seen every group write up to
	// it (and need not re-read for a revision it saw before the read).
	Rev int64
}

// NodeAssignment returns node's part of the committed assignment, read
// atomically. Groups deleted since the commit are left out.
func (r *Registry) NodeAssignment(ctx context.Context, node string) (NodeView, error) {
	k := r.keys
	res, err := nodeAssignmentScript.Run(ctx, r.rdb, []string{k.State(), k.Assign(), k.Holders()}, node, k.Group("")).StringSlice()
	if err != nil {
		return NodeView{}, wrap(err, "read assignment of node %q", node)
	}
	if len(res) < 3 || len(res)%2 != 1 {
		return NodeView{}, wrap(errMalformed, "read assignment of node %q", node)
	}
	var v NodeView
	if v.Epoch, err = parseCounter(res[0]); err != nil {
		return NodeView{}, wrap(err, "read assignment of node %q", node)
	}
	v.Dirty = res[1] == "1"
	if v.Rev, err = parseCounter(res[2]); err != nil {
		return NodeView{}, wrap(err, "read assignment of node %q", node)
	}
	v.Groups = make([]Group, 0, len(res)/2)
	v.Holders = make(map[string]int, len(res)/2)
	for i := 3; i < len(res); i += 2 {
		g, err := r.decodeGroup(res[i])
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
	// A node's config is used as keys: a value it cannot open is refused,
	// never handed out sealed.
	if err := RequireOpen(v.Groups...); err != nil {
		return NodeView{}, wrap(err, "read assignment of node %q", node)
	}
	return v, nil
}

// Commit stores c if c.From.Epoch is still the current epoch (ErrStaleEpoch
// otherwise). Groups that no longer exist are dropped from c.Nodes first;
// otherwise it is CommitPlan.
func (r *Registry) Commit(ctx context.Context, c Commit) (epoch int64, changed bool, err error) {
	if c.Nodes, err = r.dropMissing(ctx, c.Nodes); err != nil {
		return 0, false, wrap(err, "commit assignment")
	}
	res, err := r.CommitPlan(ctx, c)
	return res.Epoch, res.Changed, err
}

// Committed is the outcome of CommitPlan.
type Committed struct {
	// Epoch is the new epoch, or the current one when nothing changed or
	// the plan was stale.
	Epoch int64
	// Changed reports whether a new assignment was committed.
	Changed bool
	// Rev and MVer are the group revision and membership version at the
	// commit: when they differ from c.From's, something moved while the
	// plan was made.
	Rev, MVer int64
}

// CommitPlan stores c if c.From.Epoch is still the current epoch
// (ErrStaleEpoch otherwise), in one script: a planner's commit, for a plan
// that names only groups read with c.Base. Group lists are sorted and
// deduplicated; a node mapped to no group is stored as standby; groups
// deleted since the plan was read are dropped from the entries written, but
// unlike Commit, an entry equal to c.Base's keeps such a group: the delete
// moved the revision, which calls for the next plan, and readers skip
// deleted groups meanwhile. Revoked entries ("group@epoch", the rebalancer's) are
// stored as given, only sorted, deduplicated and without empty lists.
// prev/pmver are set to c.From.Rev/MVer. Only the entries that differ from
// c.Base are written, with the holder counts adjusted; when none does,
// Changed is false (same epoch, no event), otherwise the epoch is
// incremented and an assignment event published that names what changed
// (Event.Scope, Nodes, Groups; see Event.Concerns).
func (r *Registry) CommitPlan(ctx context.Context, c Commit) (Committed, error) {
	base := c.Base
	if base == nil {
		a, err := r.Assignment(ctx)
		if err != nil {
			return Committed{}, wrap(err, "commit assignment")
		}
		base = &a
	}
	if base.Epoch != c.From.Epoch {
		return Committed{Epoch: base.Epoch, Rev: base.Rev, MVer: base.MVer},
			wrap(fmt.Errorf("%w: planned from %d, current is %d", ErrStaleEpoch, c.From.Epoch, base.Epoch), "commit assignment")
	}
	setNodes, delNodes := diffPairs(base.Nodes, c.Nodes, true)
	setRevoked, delRevoked := diffPairs(base.Revoked, c.Revoked, false)
	groups := distinctGroups(setNodes)

	k := r.keys
	args := make([]any, 0, 12+len(groups)+len(setNodes)+len(delNodes)+len(setRevoked)+len(delRevoked))
	args = append(args, c.From.Epoch, c.From.Rev, c.From.MVer, c.By, k.Events(), LogMaxLen,
		len(groups), len(setNodes)/2, len(delNodes), len(setRevoked)/2, len(delRevoked))
	for _, part := range [][]string{groups, setNodes, delNodes, setRevoked, delRevoked} {
		for _, v := range part {
			args = append(args, v)
		}
	}
	args = append(args, EventMaxNodes)
	res, err := commitScript.Run(ctx, r.rdb,
		[]string{k.State(), k.Assign(), k.Revoked(), k.Groups(), k.Log(), k.Holders(), k.Nodes()}, args...).StringSlice()
	if err != nil {
		return Committed{}, wrap(err, "commit assignment")
	}
	if len(res) != 4 {
		return Committed{}, wrap(fmt.Errorf("%w %q", errMalformed, res), "commit assignment")
	}
	var out Committed
	for i, p := range []*int64{&out.Epoch, &out.Rev, &out.MVer} {
		if *p, err = parseCounter(res[1+i]); err != nil {
			return Committed{}, wrap(err, "commit assignment")
		}
	}
	switch res[0] {
	case "stale":
		return out, wrap(fmt.Errorf("%w: planned from %d, current is %d", ErrStaleEpoch, c.From.Epoch, out.Epoch), "commit assignment")
	case "same":
		return out, nil
	case "ok":
		out.Changed = true
		r.log.Debug("assignment committed", "epoch", out.Epoch, "changed", len(setNodes)/2+len(delNodes))
		return out, nil
	}
	return Committed{}, wrap(fmt.Errorf("registry: unexpected reply %q", res[0]), "commit assignment")
}

// dropMissing removes from a plan the groups that no longer exist (deleted
// after the plan was computed). One SMISMEMBER of the distinct groups named;
// the commit script checks the entries it writes again, for a delete that
// lands in between.
func (r *Registry) dropMissing(ctx context.Context, plan map[string][]string) (map[string][]string, error) {
	seen := map[string]bool{}
	var members []any
	for _, gs := range plan {
		for _, g := range gs {
			if !seen[g] {
				seen[g] = true
				members = append(members, g)
			}
		}
	}
	if len(members) == 0 {
		return plan, nil
	}
	present, err := r.rdb.SMIsMember(ctx, r.keys.Groups(), members...).Result()
	if err != nil {
		return nil, err
	}
	missing := map[string]bool{}
	for i, ok := range present {
		if !ok {
			missing[members[i].(string)] = true
		}
	}
	if len(missing) == 0 {
		return plan, nil
	}
	out := make(map[string][]string, len(plan))
	for id, gs := range plan {
		kept := make([]string, 0, len(gs))
		for _, g := range gs {
			if !missing[g] {
				kept = append(kept, g)
			}
		}
		out[id] = kept
	}
	return out, nil
}

// diffPairs compares two assignments entry by entry: set holds the node,
// "g1,g2" pairs of next that differ from prev; del the nodes of prev that next
// no longer has. With keepEmpty false an empty list counts as no entry. Only
// changed entries are normalized and joined: a diff of a 10k-node pool with
// one change does almost no work.
func diffPairs(prev, next map[string][]string, keepEmpty bool) (set, del []string) {
	for id, gs := range next {
		if !keepEmpty && len(gs) == 0 {
			continue
		}
		gs = normalized(gs)
		if old, ok := prev[id]; ok && (keepEmpty || len(old) > 0) && slices.Equal(normalized(old), gs) {
			continue
		}
		set = append(set, id, strings.Join(gs, ","))
	}
	for id, gs := range prev {
		if !keepEmpty && len(gs) == 0 {
			continue
		}
		if ngs, ok := next[id]; !ok || (!keepEmpty && len(ngs) == 0) {
			del = append(del, id)
		}
	}
	return set, del
}

// normalized returns gs sorted and without duplicates, copying only when gs
// is not already so.
func normalized(gs []string) []string {
	if slices.IsSorted(gs) && !hasDup(gs) {
		return gs
	}
	return slices.Compact(slices.Sorted(slices.Values(gs)))
}

// distinctGroups lists, sorted, the groups named in node, "g1,g2" pairs.
func distinctGroups(flat []string) []string {
	seen := map[string]bool{}
	var out []string
	for i := 1; i < len(flat); i += 2 {
		for _, g := range splitGroups(flat[i]) {
			if !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	slices.Sort(out)
	return out
}

func hasDup(sorted []string) bool {
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return true
		}
	}
	return false
}
