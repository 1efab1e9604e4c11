package allocator

import "errors"

// ErrLocked is returned by Rebalancer.Run when another planner holds the
// rebalance lock. It is normal: that planner will do the work.
var ErrLocked = errors.New("allocator: another planner holds the rebalance lock")
