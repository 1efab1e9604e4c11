package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/perf"
)

func init() { commandFactories = append(commandFactories, newCheckCommand) }

func newCheckCommand(a *app) *cobra.Command {
	cmd := noun(&cobra.Command{
		Use:   "check",
		Short: "Check what the Redis of --redis can carry, and what its credentials may do",
	})
	cmd.AddCommand(newCheckPerfCommand(a), newCheckRedisCommand(a))
	return cmd
}

// Targets `check perf` compares its figures with (issue "Proof under
// failure and load"; 2 cores, one local redis-server).
const (
	targetBeatRatio   = 0.95 // of nodes/interval
	targetLeaveMS     = 200
	targetPropagateMS = 100
	targetLeaveCmds   = 2000 // all nodes, one graceful leave (10,000 nodes)
	targetLocks       = 3    // lock attempts per change
)

func newCheckPerfCommand(a *app) *cobra.Command {
	cfg := perf.DefaultConfig()
	var prefix, mode string
	cmd := &cobra.Command{
		Use:   "perf",
		Short: "Simulate a pool of nodes in a throwaway namespace and measure beats, failover, leave, propagation and rebalance",
		Long: `Simulate --nodes nodes over --groups groups against the Redis of --redis, in a
fresh namespace (--namespace-prefix + 8 random hex digits) that is deleted at the
end, and measure:

  beats/s               beats sustained over --duration of steady state (rounded
                        up to whole intervals; under 3 intervals it is not judged)
  round trips per beat  every command of the nodes / their beats (pub/sub not counted)
  failover              10% of the nodes stop beating without leaving: time until
                        each one's groups are held, per the committed assignment,
                        by live nodes that use them (p50/p99 over the killed nodes):
                        the later of that assignment's commit and the moment the
                        last of those holders started using the group, as the
                        nodes saw it
  leave                 10 nodes leave gracefully, one at a time: the same, per
                        node, from the commit of the plan that follows the leave
  propagation           5 config changes of the group with the most holders: time
                        until each holder uses the new version (p50/p99 over holders)
  rebalance             10 Rebalancer.Run timings, each after a weight change
  commands per leave    every Redis command the nodes sent for one graceful leave
                        (from the leave until settled + one interval; steady
                        beats not counted), and the lock attempts among them
  reads                 the nodes' assignment reads per leave, in the first
                        leave, and per weight change (until settled: at most
                        one per node)

Nodes are real client.Client instances, each on a small Redis client of its own,
up to 2000 nodes (--mode auto); above that real client.Client instances share one
connection pool (--mode shared; each keeps its own events subscription, so this
process needs a file and Redis a client slot per node: redis-server
--maxclients), or, where that does not fit, simulated nodes (--mode sim) make
the same round trips (beat, assignment read, rebalance) on one shared pooled
Redis client and one shared events subscription.
Exit 1 when Redis cannot be reached or the pool never settles; a missed target
is reported (MISS) but does not fail the command.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Mode = perf.Mode(mode)
			cfg.Namespace = perf.NewNamespace(prefix)
			if err := keys.Validate(cfg.Namespace); err != nil {
				return usageErrorf("invalid --namespace-prefix %q: the namespace %q must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", prefix, cfg.Namespace)
			}
			if err := cfg.Validate(); err != nil {
				return usageErrorf("invalid --%s", strings.TrimPrefix(err.Error(), perf.ErrInvalidConfig.Error()+": "))
			}
			pctx, cancel := a.ctx(cmd)
			rdb, err := a.rdb(pctx)
			cancel()
			if err != nil {
				return err
			}
			cfg.URL = a.redisURL
			cfg.Progress = a.stderr
			res, err := perf.Run(cmd.Context(), rdb, cfg)
			if err != nil {
				return fmt.Errorf("check perf: %w", err)
			}
			return a.print(res, func() table { return perfTable(res) })
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "simulated nodes")
	f.IntVar(&cfg.Groups, "groups", cfg.Groups, "groups")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "steady-state window measuring beats/s (rounded up to whole intervals)")
	f.DurationVar(&cfg.Interval, "interval", cfg.Interval, "beat interval of the simulated nodes")
	f.DurationVar(&cfg.TTL, "ttl", cfg.TTL, "node TTL (>= 3 x interval)")
	f.StringVar(&prefix, "namespace-prefix", "perf-", "prefix of the throwaway namespace")
	f.StringVar(&mode, "mode", string(perf.ModeAuto), "nodes: client (client.Client, a Redis client each), shared (client.Client, one shared pool), sim (simulated), auto (client up to 2000 nodes, then shared where sockets allow, else sim)")
	return cmd
}

var perfHeader = []string{"METRIC", "P50", "P99", "TARGET", "RESULT"}

// perfTable is the table of `allot check perf`.
func perfTable(r perf.Result) table {
	kind := "client.Client instances, one small Redis client each"
	switch r.Mode {
	case perf.ModeShared:
		kind = "client.Client instances on one shared connection pool"
	case perf.ModeSim:
		kind = "simulated nodes on one shared Redis client"
	}
	t := table{
		title: []string{
			fmt.Sprintf("%d nodes (%s), %d groups, interval %v, ttl %v", r.Nodes, kind, r.Groups, r.Interval, r.TTL),
			fmt.Sprintf("namespace %s (dropped); pool settled in %v", r.Namespace, r.Startup.Round(time.Millisecond)),
		},
		header: perfHeader,
	}
	want := float64(r.Nodes) / r.Interval.Seconds()
	beatVerdict := verdict(r.BeatsPerSec >= want*targetBeatRatio)
	if !r.BeatsMeaningful() {
		beatVerdict = "-"
	}
	t.rows = append(t.rows,
		[]string{fmt.Sprintf("beats/s (%v window)", r.Window.Round(100*time.Millisecond)), num(r.BeatsPerSec), "",
			fmt.Sprintf(">= %s (95%% of nodes/interval)", num(math.Round(want*targetBeatRatio*10)/10)), beatVerdict},
		[]string{"round trips per beat", strconv.FormatFloat(r.RoundTripsPerBeat, 'f', 2, 64), "", "1",
			verdict(r.RoundTripsPerBeat > 0 && r.RoundTripsPerBeat <= 1)},
	)
	failTarget := r.TTL + r.Interval
	t.rows = append(t.rows,
		latencyRow(fmt.Sprintf("failover: kill %d -> reassigned", r.Killed), r.FailoverMS, r.Killed,
			fmt.Sprintf("p99 <= %v (ttl + interval)", failTarget), float64(failTarget.Milliseconds())),
		latencyRow(fmt.Sprintf("leave -> reassigned (%d leaves)", r.Left), r.LeaveMS, r.Left,
			fmt.Sprintf("p99 <= %dms", targetLeaveMS), targetLeaveMS),
		latencyRow(fmt.Sprintf("config propagation (%d holders x %d)", r.Holders, r.Updates), r.PropagationMS, r.Updates,
			fmt.Sprintf("p99 <= %dms (1,000 holders)", targetPropagateMS), targetPropagateMS),
		latencyRow(fmt.Sprintf("rebalance commit (%d runs)", r.Rebalanced), r.RebalanceMS, r.Rebalanced, "-", 0),
	)
	if r.Left > 0 {
		t.rows = append(t.rows,
			[]string{"redis commands per leave (all nodes)", num(r.CommandsPerLeave), "",
				fmt.Sprintf("<= %s", num(targetLeaveCmds)), verdict(r.CommandsPerLeave <= targetLeaveCmds)},
			[]string{"lock attempts per change", strconv.FormatFloat(r.LockAttemptsPerChange, 'f', 1, 64), "",
				fmt.Sprintf("<= %d", targetLocks), verdict(r.LockAttemptsPerChange <= targetLocks)},
			[]string{"assignment reads per leave (all nodes)", num(r.ReadsPerLeave), "", "-", "-"},
			[]string{"assignment reads, first leave", num(float64(r.ReadsFirstLeave)), "", "-", "-"},
		)
	}
	if r.Rebalanced > 0 {
		t.rows = append(t.rows,
			[]string{"assignment reads per weight change", num(r.ReadsPerWeightChange), "", "<= nodes", verdict(r.ReadsPerWeightChange <= float64(r.Nodes))})
	}
	if r.Mode != perf.ModeSim {
		t.footer = append(t.footer, "round trips: every command of the nodes' Redis clients; pub/sub pings on quiet subscriptions are not counted")
	} else {
		t.footer = append(t.footer, "simulated nodes beat, read their assignment and rebalance like client.Client, but share one Redis client and one events subscription")
	}
	if !r.BeatsMeaningful() {
		t.footer = append(t.footer, fmt.Sprintf("beats/s not judged: a window under %d intervals is too short to mean anything (raise --duration)", perf.MinBeatIntervals))
	}
	for _, m := range []struct {
		n    int
		what string
	}{{r.MissedFailover, "failover"}, {r.MissedLeave, "leave"}, {r.MissedPropagation, "propagation"}} {
		if m.n > 0 {
			t.footer = append(t.footer, fmt.Sprintf("%d %s samples timed out and count as the timeout", m.n, m.what))
		}
	}
	return t
}

// latencyRow renders one p50/p99 row; targetMS 0 means no target.
func latencyRow(name string, p perf.Percentiles, samples int, target string, targetMS float64) []string {
	if samples == 0 {
		return []string{name, "-", "-", target, "-"}
	}
	result := "-"
	if targetMS > 0 {
		result = verdict(p.P99 <= targetMS)
	}
	return []string{name, fmtMS(p.P50), fmtMS(p.P99), target, result}
}

// fmtMS renders milliseconds as "850ms" or "6.12s".
func fmtMS(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}
