package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/simulate"
	limiter "github.com/allot-io/allot/quota"
)

// leaveTimeout bounds the leave of a simulated fleet at SIGINT.
const leaveTimeout = 60 * time.Second

func newNodeSimulateCommand(a *app) *cobra.Command {
	var (
		count  int
		spend  string
		tokens int64
		prefix string
	)
	cmd := &cobra.Command{
		Use:   "simulate --count N [--spend R/s]",
		Short: "Run N real nodes against the configured Redis until stopped",
		Long: `Simulate runs N real nodes (client.Client, as a Go service embeds it) in this
process against the Redis of --redis, in the pool of --namespace, until
SIGINT or SIGTERM; then every node leaves, so its groups move at once. The
nodes join, beat at the namespace's heartbeat settings, follow their
assignment and, with --spend, call their groups' limits. Use it to see a
pool at size in 'allot serve' (the UI, /metrics) or 'allot status'.

With many nodes set a slower heartbeat first: 'allot namespace set
--interval 10s' (1,000 nodes at 10 s are 100 beats a second). Two
simulations in one namespace need different --prefix values.`,
		Example: "  allot node simulate --count 1000 --spend 50/s\n  allot node simulate --count 20 --prefix canary- --spend '600/m' --tokens 500",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rate, err := parseSpend(spend)
			if err != nil {
				return err
			}
			switch {
			case !cmd.Flags().Changed("count"):
				return usageErrorf("--count is required: how many nodes to run")
			case count < 1 || count > simulate.MaxCount:
				return usageErrorf("invalid --count %d: want 1..%d", count, simulate.MaxCount)
			case tokens < 0 || tokens > limiter.MaxCost:
				return usageErrorf("invalid --tokens %d: want 0..%d", tokens, limiter.MaxCost)
			}
			cfg := simulate.Config{Count: count, Prefix: prefix, Namespace: a.namespace, Spend: rate, Tokens: tokens, Logger: a.log}
			if err := cfg.Validate(); err != nil {
				return usage(err)
			}
			ctx := cmd.Context()
			start := max(a.timeout, 30*time.Second+time.Duration(count)*40*time.Millisecond)
			sctx, cancel := context.WithTimeout(ctx, start)
			defer cancel()
			rdb, err := a.rdb(sctx)
			if err != nil {
				return err
			}
			f, err := simulate.Start(sctx, rdb, cfg)
			if err != nil {
				return err
			}
			ns := a.namespace
			if ns == "" {
				ns = keys.DefaultNamespace
			}
			spending := ""
			if rate > 0 {
				spending = ", spending " + spend
			}
			fmt.Fprintf(a.stdout, "allot node simulate: %d nodes running in namespace %s%s; Ctrl-C makes them leave\n", f.Nodes(), ns, spending)
			<-ctx.Done()
			lctx, cancelLeave := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
			defer cancelLeave()
			err = f.Close(lctx)
			made, refused := f.Calls()
			fmt.Fprintf(a.stdout, "allot node simulate: %d nodes left; %d calls made, %d refused by the limits\n", f.Nodes(), made, refused)
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&count, "count", 0, fmt.Sprintf("how many nodes to run (1..%d)", simulate.MaxCount))
	f.StringVar(&spend, "spend", "", "calls the whole fleet makes, as a rate: 50/s, 600/m (each node Acquires its part from its groups)")
	f.Int64Var(&tokens, "tokens", 0, "tokens each call reserves from the token limits")
	f.StringVar(&prefix, "prefix", "sim-", "node ID prefix: IDs are the prefix and a number (sim-0001)")
	return cmd
}

// parseSpend reads --spend: one request rate of quota's syntax ("50/s",
// "600/m"), as calls per second; "" is 0.
func parseSpend(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	ls, err := limiter.Parse(s)
	if err != nil || len(ls) != 1 || ls[0].Kind != limiter.Requests || ls[0].Burst != 0 {
		return 0, usageErrorf("invalid --spend %q: want a rate of calls like 50/s or 600/m", s)
	}
	return ls[0].PerMinute() / 60, nil
}
