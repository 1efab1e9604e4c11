// Package devredis is the dev mode of `allot serve --dev`: an embedded
// in-memory Redis (github.com/alicebob/miniredis/v2) whose state is lost on
// exit, a few sample groups, and a fleet of simulated nodes that are real
// allot clients, so the whole system runs with nothing installed.
//
// It is for demos and local exploration only; never use it for a real pool.
package devredis
