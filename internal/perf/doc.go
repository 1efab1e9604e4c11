// Package perf is the harness behind `allot check perf`: it builds a pool
// of nodes in a throwaway namespace of a real Redis, measures beats, round
// trips, failover, graceful leave, config propagation and rebalance, and
// drops the namespace again. Nodes are real client.Client instances or, for
// pools too large for one process's sockets, simulated nodes that make the
// same round trips. The CLI only parses flags and renders Result.
package perf
