package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/perf"
	"github.com/allot-io/allot/internal/redistest"
)

// runCheckCLI runs one allot command line in-process and returns its exit code,
// stdout and stderr.
func runCheckCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), args, env{stdout: &stdout, stderr: &stderr})
	return code, stdout.String(), stderr.String()
}

func TestCheckPerfJSON(t *testing.T) {
	for _, mode := range []string{"client", "shared", "sim"} {
		t.Run(mode, func(t *testing.T) {
			s := redistest.Start(t)
			code, out, errOut := runCheckCLI(t, "check", "perf", "--redis", s.URL(), "-o", "json",
				"--nodes", "50", "--groups", "5", "--duration", "3s",
				"--interval", "200ms", "--ttl", "1s", "--mode", mode)
			require.Equal(t, 0, code, "stderr: %s", errOut)

			// Exactly the contract's fields.
			var raw map[string]json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(out), &raw), out)
			fields := make([]string, 0, len(raw))
			for k := range raw {
				fields = append(fields, k)
			}
			assert.ElementsMatch(t, []string{"nodes", "groups", "beats_per_sec", "round_trips_per_beat",
				"failover_ms", "leave_ms", "propagation_ms", "rebalance_ms", "commands_per_leave", "lock_attempts_per_change",
				"reads_per_leave", "reads_first_leave", "reads_per_weight_change"}, fields)

			var r struct {
				Nodes             int     `json:"nodes"`
				Groups            int     `json:"groups"`
				BeatsPerSec       float64 `json:"beats_per_sec"`
				RoundTripsPerBeat float64 `json:"round_trips_per_beat"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &r))
			assert.Equal(t, 50, r.Nodes)
			assert.Equal(t, 5, r.Groups)
			// 50 nodes beating every 200 ms (a little early, never late).
			assert.Greater(t, r.BeatsPerSec, 150.0)
			assert.LessOrEqual(t, r.BeatsPerSec, 300.0)
			assert.Equal(t, 1.0, r.RoundTripsPerBeat, "steady state costs one round trip per beat")

			for _, f := range []string{"failover_ms", "leave_ms", "propagation_ms", "rebalance_ms"} {
				var p perf.Percentiles
				require.NoError(t, json.Unmarshal(raw[f], &p), f)
				assert.Greater(t, p.P50, 0.0, f)
				assert.LessOrEqual(t, p.P50, p.P99, f)
			}
			var work struct {
				Cmds  float64 `json:"commands_per_leave"`
				Locks float64 `json:"lock_attempts_per_change"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &work))
			// The leaver's own leave and plan are a dozen commands; 50 nodes
			// over 5 groups give ~10 holders per group to re-read.
			assert.Greater(t, work.Cmds, 5.0)
			assert.Less(t, work.Cmds, 200.0)
			// The leaver plans without the lock (allocator.LeaveAndPlan):
			// attempts come only from a plan that lost to another.
			assert.LessOrEqual(t, work.Locks, 3.0, "no herd at the lock")

			var reads struct {
				PerLeave  float64 `json:"reads_per_leave"`
				PerWeight float64 `json:"reads_per_weight_change"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &reads))
			// A weight change makes the holders of the groups it moves
			// read, at most once each; a leave, fewer.
			assert.Greater(t, reads.PerWeight, 0.0, "reads are counted")
			assert.LessOrEqual(t, reads.PerWeight, 50.0, "at most one read per node")
			assert.LessOrEqual(t, reads.PerLeave, 50.0)

			var fo perf.Percentiles
			require.NoError(t, json.Unmarshal(raw["failover_ms"], &fo))
			// A killed node is noticed only after its TTL has run out since its
			// last beat (at most one interval before the kill).
			assert.GreaterOrEqual(t, fo.P50, float64(800), "failover faster than TTL - interval: the kill did not stop beats")
			assert.Less(t, fo.P99, float64(10_000), "failover samples timed out")

			// The namespace is gone.
			rdb := s.Client(t)
			n, err := rdb.DBSize(context.Background()).Result()
			require.NoError(t, err)
			assert.Equal(t, int64(0), n)
		})
	}
}

func TestCheckPerfTable(t *testing.T) {
	s := redistest.Start(t)
	code, out, errOut := runCheckCLI(t, "check", "perf", "--redis", s.URL(),
		"--nodes", "12", "--groups", "3", "--duration", "1s", "--interval", "200ms", "--ttl", "600ms",
		"--namespace-prefix", "bench-")
	require.Equal(t, 0, code, "stderr: %s", errOut)
	assert.Contains(t, out, "namespace bench-")
	for _, row := range []string{"beats/s", "round trips per beat", "failover: kill 1", "leave -> reassigned (1 leaves)",
		"config propagation", "rebalance commit", "redis commands per leave", "lock attempts per change"} {
		assert.Contains(t, out, row)
	}
	assert.Contains(t, errOut, "check perf: failover: killing 1 of 11 nodes")
}

func TestCheckPerfRedisDown(t *testing.T) {
	port := redistest.FreePort(t)
	code, out, errOut := runCheckCLI(t, "check", "perf", "--redis", "redis://127.0.0.1:"+strconv.Itoa(port), "--timeout", "2s")
	assert.Equal(t, exitFailure, code)
	assert.Empty(t, out)
	assert.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
	assert.Contains(t, errOut, "cannot reach redis at redis://127.0.0.1:")
}

func TestCheckPerfUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--nodes", "0"},
		{"--groups", "0"},
		{"--duration", "0s"},
		{"--interval", "2s", "--ttl", "3s"},
		{"--mode", "fast"},
		{"--namespace-prefix", "bad prefix "},
	} {
		code, _, errOut := runCheckCLI(t, append([]string{"check", "perf", "--redis", "redis://127.0.0.1:1"}, args...)...)
		assert.Equal(t, exitUsage, code, "%v: %s", args, errOut)
	}
}

func TestPerfTableVerdicts(t *testing.T) {
	r := perf.Result{
		Nodes: 1000, Groups: 20, BeatsPerSec: 400, RoundTripsPerBeat: 1,
		FailoverMS: perf.Percentiles{P50: 5000, P99: 9000}, LeaveMS: perf.Percentiles{P50: 20, P99: 50},
		PropagationMS: perf.Percentiles{P50: 10, P99: 150}, RebalanceMS: perf.Percentiles{P50: 30, P99: 40},
		Mode: perf.ModeClient, Interval: 2 * time.Second, TTL: 6 * time.Second, Window: 20 * time.Second,
		Killed: 100, Left: 10, Holders: 50, Updates: 5, Rebalanced: 10,
		CommandsPerLeave: 2500, LockAttemptsPerChange: 1,
		ReadsPerLeave: 60, ReadsFirstLeave: 80, ReadsPerWeightChange: 1500,
	}
	tb := perfTable(r)
	require.Len(t, tb.rows, 11)
	got := make([]string, len(tb.rows))
	for i, row := range tb.rows {
		got[i] = row[len(row)-1]
	}
	// 400 < 95% of 500 beats/s; 9 s > 8 s; 150 ms > 100 ms; no rebalance
	// target; 2,500 commands > 2,000; 1 lock attempt; reads per leave
	// shown without a target; 1,500 reads per weight change > one per node.
	assert.Equal(t, []string{"MISS", "PASS", "MISS", "PASS", "MISS", "-", "MISS", "PASS", "-", "-", "MISS"}, got)

	// A window of two intervals is too short to judge beats/s: no MISS.
	r.Window = 4 * time.Second
	tb = perfTable(r)
	assert.Equal(t, "-", tb.rows[0][len(tb.rows[0])-1])
	assert.Contains(t, strings.Join(tb.footer, "\n"), "beats/s not judged")
}
