// Package killswitch crashes a go-redis client on demand: once killed, every
// dial and every command fails at once, as if the process that owns the
// client had died. A simulated node (the dev fleet, `allot check perf`, the
// quota benchmark) is killed this way so that it cannot leave the pool: its
// groups move only when its heartbeat TTL runs out, as for a real crash.
package killswitch
