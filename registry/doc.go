// Package registry stores everything allot keeps in Redis except liveness:
// groups and their history, assignments and the epoch, scheduled changes, and
// events. Every multi-key write is one Lua script embedded from a .lua file, and
// every key carries the namespace hash tag so the scripts run unchanged on
// Redis Cluster.
package registry
