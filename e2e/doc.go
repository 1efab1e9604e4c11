// Package e2e is allot's chaos suite: it starts real redis-server processes
// (internal/redistest) and dozens of e2e/chaosnode processes (examples/node
// plus a report of every change), breaks things (kill -9, rolling restarts, SIGSTOP past the TTL, Redis restarts, Cluster
// failover, group storms, forced rebalances) and checks the invariants of
// docs/design.md from the nodes' own reports and from Redis.
//
// The package has no non-test code. `go test ./e2e/` runs the short form
// (about 90 s); `ALLOT_CHAOS=long` (make chaos) runs the long form.
//
// e2e/mutants (make mutants) proves the safety tests can fail: it plants
// known bugs one at a time in a copy of the module and runs the tests that
// must catch each.
package e2e
