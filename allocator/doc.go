// Package allocator decides which node holds which group.
//
// Plan is pure and deterministic: no I/O, no clock, no randomness. It balances
// groups across live nodes by weight and, given the previous assignment, moves
// only the nodes that must move. Rebalancer wraps Plan with the lock-guarded,
// epoch-fenced read-plan-commit cycle against Redis.
package allocator
