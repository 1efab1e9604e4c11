package registry

import "context"

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
	// Revoked maps node ID to the groups revoked from it that it may still
	// use until it acknowledges.
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
	return Counters{}, errNotImplemented
}

// Assignment reads the committed assignment and counters in one consistent read.
func (r *Registry) Assignment(ctx context.Context) (Assignment, error) {
	return Assignment{}, errNotImplemented
}

// NodeAssignment returns the epoch and the documents of the groups assigned to
// node, read atomically.
func (r *Registry) NodeAssignment(ctx context.Context, node string) (epoch int64, groups []Group, err error) {
	return 0, nil, errNotImplemented
}

// Commit stores c if c.From.Epoch is still the current epoch (ErrStaleEpoch
// otherwise). Groups that no longer exist are dropped. When the assignment is
// unchanged only the planned counters are stored and changed is false;
// otherwise the epoch is incremented and an assignment event published.
func (r *Registry) Commit(ctx context.Context, c Commit) (epoch int64, changed bool, err error) {
	return 0, false, errNotImplemented
}
