package devredis

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"time"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/quota"
)

// Demo traffic: every running demo node spends from the limits of the
// groups it holds, so `serve --dev` shows live usage (sparklines, USED)
// without a real workload. Each node calls at its share of a group's
// tightest request limit × a level that swings between 10% and 90% over
// ten minutes, at most maxDemoCalls per second per group, reserving tokens
// near the token limit's matching pace and settling with a bit less.
const (
	trafficTick  = 250 * time.Millisecond
	maxDemoCalls = 8.0
	trafficSwing = 10 * time.Minute
)

// traffic is one demo node's calling loop; stop ends it and waits.
type traffic struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startTraffic(c *client.Client, seed uint64) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	t := &traffic{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		runTraffic(ctx, c, rand.New(rand.NewPCG(seed, 13)))
	}()
	return t
}

func (t *traffic) stop() {
	t.cancel()
	<-t.done
}

func runTraffic(ctx context.Context, c *client.Client, rng *rand.Rand) {
	tick := time.NewTicker(trafficTick)
	defer tick.Stop()
	owed := map[string]float64{} // group -> calls due but not made yet
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			level := 0.5 + 0.4*math.Sin(2*math.Pi*float64(now.UnixNano()%int64(trafficSwing))/float64(trafficSwing))
			for _, g := range c.Assignment().Groups {
				ls, err := quota.Parse(g.Quota)
				if err != nil || ls.IsZero() {
					continue
				}
				calls, tokens := pace(ls, g.Share)
				owed[g.Name] += min(calls*level, maxDemoCalls) * trafficTick.Seconds()
				for ; owed[g.Name] >= 1; owed[g.Name]-- {
					est := int64(tokens * (0.8 + 0.4*rng.Float64()))
					r, err := c.Reserve(ctx, g.Name, est)
					if err != nil {
						if !errors.Is(err, client.ErrRateLimited) {
							owed[g.Name] = 0
						}
						break
					}
					_ = r.Settle(ctx, int64(float64(est)*(0.6+0.4*rng.Float64())))
				}
			}
		}
	}
}

// pace is a holder's calls per second (its share of the tightest request
// limit; 1 without one) and the tokens per call that keep the token limits
// at the same level.
func pace(ls quota.Limits, share float64) (calls, tokens float64) {
	if share <= 0 || share > 1 {
		share = 1
	}
	reqs, toks := math.Inf(1), math.Inf(1)
	for _, l := range ls {
		perSec := l.PerMinute() / 60 * share
		if l.Kind == quota.Tokens {
			toks = min(toks, perSec)
		} else {
			reqs = min(reqs, perSec)
		}
	}
	if math.IsInf(reqs, 1) {
		reqs = 1
	}
	if !math.IsInf(toks, 1) {
		tokens = toks / max(min(reqs, maxDemoCalls), 0.01)
		for _, l := range ls { // a call never costs more than a burst
			if l.Kind == quota.Tokens {
				tokens = min(tokens, float64(l.EffectiveBurst())/2)
			}
		}
	}
	return reqs, tokens
}
