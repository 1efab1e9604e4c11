//go:build race

package client

// raceEnabled: the race detector slows this process 5-10x; timing bounds
// get more slack (figures for BENCHMARKS.md come from runs without -race).
const raceEnabled = true
