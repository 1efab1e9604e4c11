package allocator

import "errors"

// ErrLocked is returned by Rebalancer.Run when another planner holds the
// rebalance lock. It is normal: that planner will do the work.
var ErrLocked = errors.New("allocator: another planner holds the rebalance lock")

// ErrRetireTimeout is returned by Rebalancer.WaitRetired when the group is
// still draining a little after its drain deadline: no planner could finish
// it (is a coordinator running?).
var ErrRetireTimeout = errors.New("allocator: group still draining after its drain deadline")
