package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/keys"
)

func init() { commandFactories = append(commandFactories, newCheckCommand) }

func newCheckCommand(a *app) *cobra.Command {
	cmd := noun(&cobra.Command{
		Use:   "check",
		Short: "Check what the Redis of --redis can carry",
	})
	cmd.AddCommand(newCheckPerfCommand(a))
	return cmd
}

// Targets `check perf` compares its figures with (issue "Proof under
// failure and load"; 2 cores, one local redis-server).
const (
	targetBeatRatio   = 0.95 // of nodes/interval
	targetLeaveMS     = 200
	targetPropagateMS = 100
)

func newCheckPerfCommand(a *app) *cobra.Command {
	cfg := perfConfig{kill: 10, leaves: 10, updates: 5, rebalance: 10}
	var prefix, mode string
	cmd := &cobra.Command{
		Use:   "perf",
		Short: "Simulate a pool of nodes in a throwaway namespace and measure beats, failover, leave, propagation and rebalance",
		Long: `Simulate --nodes nodes over --groups groups against the Redis of --redis, in a
fresh namespace (--namespace-prefix + 8 random hex digits) that is deleted at the
end, and measure:

  beats/s               beats sustained over --duration of steady state
  round trips per beat  every command of the nodes / their beats (pub/sub not counted)
  failover              10% of the nodes stop beating without leaving: time until
                        each one's groups are held, per the committed assignment,
                        by live nodes that use them (p50/p99 over the killed nodes)
  leave                 10 nodes leave gracefully, one at a time: the same, per node
  propagation           5 config changes of the group with the most holders: time
                        until each holder uses the new version (p50/p99 over holders)
  rebalance             10 Rebalancer.Run timings, each after a weight change

Nodes are real client.Client instances, each on a small Redis client of its own,
up to 2000 nodes (--mode auto); above that, or with --mode sim, simulated nodes
make the same round trips (beat, assignment read, rebalance) on one shared
pooled Redis client and one shared events subscription.
Exit 1 when Redis cannot be reached or the pool never settles; a missed target
is reported (MISS) but does not fail the command.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			hb := heartbeat.Config{Interval: cfg.interval, TTL: cfg.ttl}
			switch {
			case cfg.nodes < 1:
				return usageErrorf("invalid --nodes %d: must be >= 1", cfg.nodes)
			case cfg.groups < 1:
				return usageErrorf("invalid --groups %d: must be >= 1", cfg.groups)
			case cfg.duration <= 0:
				return usageErrorf("invalid --duration %v: must be > 0", cfg.duration)
			}
			if err := hb.Validate(); err != nil {
				return usageErrorf("invalid --interval/--ttl: %s", err)
			}
			switch mode {
			case "auto":
				cfg.sim = cfg.nodes > maxClientNodes
			case "client", "sim":
				cfg.sim = mode == "sim"
			default:
				return usageErrorf("invalid --mode %q: want auto, client or sim", mode)
			}
			cfg.namespace = newPerfNamespace(prefix)
			if err := keys.Validate(cfg.namespace); err != nil {
				return usageErrorf("invalid --namespace-prefix %q: the namespace %q must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", prefix, cfg.namespace)
			}
			pctx, cancel := a.ctx(cmd)
			rdb, err := a.rdb(pctx)
			cancel()
			if err != nil {
				return err
			}
			cfg.url = a.redisURL
			cfg.progress = a.stderr
			res, err := runPerf(cmd.Context(), rdb, cfg)
			if err != nil {
				return fmt.Errorf("check perf: %w", err)
			}
			return a.print(res, func() table { return perfTable(res) })
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.nodes, "nodes", 1000, "simulated nodes")
	f.IntVar(&cfg.groups, "groups", 20, "groups")
	f.DurationVar(&cfg.duration, "duration", 20*time.Second, "steady-state window measuring beats/s")
	f.DurationVar(&cfg.interval, "interval", 2*time.Second, "beat interval of the simulated nodes")
	f.DurationVar(&cfg.ttl, "ttl", 6*time.Second, "node TTL (>= 3 x interval)")
	f.StringVar(&prefix, "namespace-prefix", "perf-", "prefix of the throwaway namespace")
	f.StringVar(&mode, "mode", "auto", "nodes: client (client.Client), sim (simulated), auto (client up to 2000 nodes)")
	return cmd
}

var perfHeader = []string{"METRIC", "P50", "P99", "TARGET", "RESULT"}

// perfTable is the table of `allot check perf`.
func perfTable(r perfResult) table {
	kind := "client.Client instances, one small Redis client each"
	if r.mode == "sim" {
		kind = "simulated nodes on one shared Redis client"
	}
	t := table{
		title: []string{
			fmt.Sprintf("%d nodes (%s), %d groups, interval %v, ttl %v", r.Nodes, kind, r.Groups, r.interval, r.ttl),
			fmt.Sprintf("namespace %s (dropped); pool settled in %v", r.namespace, r.startup.Round(time.Millisecond)),
		},
		header: perfHeader,
	}
	want := float64(r.Nodes) / r.interval.Seconds()
	t.rows = append(t.rows,
		[]string{fmt.Sprintf("beats/s (%v window)", r.window.Round(100*time.Millisecond)), num(r.BeatsPerSec), "",
			fmt.Sprintf(">= %s (95%% of nodes/interval)", num(round1(want*targetBeatRatio))), verdict(r.BeatsPerSec >= want*targetBeatRatio)},
		[]string{"round trips per beat", strconv.FormatFloat(r.RoundTripsPerBeat, 'f', 2, 64), "", "1",
			verdict(r.RoundTripsPerBeat > 0 && r.RoundTripsPerBeat <= 1)},
	)
	failTarget := r.ttl + r.interval
	t.rows = append(t.rows,
		latencyRow(fmt.Sprintf("failover: kill %d -> reassigned", r.killed), r.FailoverMS, r.killed,
			fmt.Sprintf("p99 <= %v (ttl + interval)", failTarget), ms(failTarget)),
		latencyRow(fmt.Sprintf("leave -> reassigned (%d leaves)", r.left), r.LeaveMS, r.left,
			fmt.Sprintf("p99 <= %dms", targetLeaveMS), targetLeaveMS),
		latencyRow(fmt.Sprintf("config propagation (%d holders x %d)", r.holders, r.updates), r.PropagationMS, r.updates,
			fmt.Sprintf("p99 <= %dms (1,000 holders)", targetPropagateMS), targetPropagateMS),
		latencyRow(fmt.Sprintf("rebalance commit (%d runs)", r.rebalances), r.RebalanceMS, r.rebalances, "-", 0),
	)
	if r.mode != "sim" {
		t.footer = append(t.footer, "round trips: every command of the nodes' Redis clients; pub/sub pings on quiet subscriptions are not counted")
	} else {
		t.footer = append(t.footer, "simulated nodes beat, read their assignment and rebalance like client.Client, but share one Redis client and one events subscription")
	}
	for _, m := range []struct {
		n    int
		what string
	}{{r.missedFailover, "failover"}, {r.missedLeave, "leave"}, {r.missedPropagation, "propagation"}} {
		if m.n > 0 {
			t.footer = append(t.footer, fmt.Sprintf("%d %s samples timed out and count as the timeout", m.n, m.what))
		}
	}
	return t
}

// latencyRow renders one p50/p99 row; targetMS 0 means no target.
func latencyRow(name string, p percentiles, samples int, target string, targetMS float64) []string {
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
