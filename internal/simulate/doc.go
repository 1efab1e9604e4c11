// Package simulate runs a fleet of real nodes in one process, so anyone can
// see a pool at size against their own Redis: `allot node simulate --count
// N [--spend R/s]`. Every node is a real client.Client (it joins, beats,
// follows its assignment, spends from its groups' limits and leaves); they
// share one Redis connection pool, each with its own events subscription.
package simulate
