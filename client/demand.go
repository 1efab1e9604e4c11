package client

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/quota"
)

// DemandWindow is the time constant of a node's demand: the calls and
// tokens it asked for are an exponentially decayed count, a call
// DemandWindow ago weighing 1/e of one now, so the figure is what the node
// asked for per second over about the last minute. Long enough that a
// cold node's figure (1.5 calls/s) moves only a few percent between beats
// (the beat stores a change past heartbeat.DemandChange), short enough
// that a node that turns hot is placed within a minute.
const DemandWindow = time.Minute

// demandWarmup is the shortest age the meter divides by: before it, a
// first burst would read as an absurd rate (one call in 10 ms is 100 a
// second).
const demandWarmup = 10 * time.Second

// demandMeter counts what a node asks of its groups, refused or not: every
// Allow, Reserve, Wait and Acquire is one call (a Wait or AcquireWait once,
// however often it tries), with the tokens it estimated. The hot path is two
// atomic adds; the beat folds the counts into the decayed figures once per
// interval. Safe for concurrent use.
type demandMeter struct {
	calls, tokens atomic.Int64 // asked since the meter started

	mu      sync.Mutex // the fold, on the beat goroutine
	now     func() time.Time
	start   time.Time
	last    time.Time
	counted [2]int64   // calls, tokens folded so far
	decayed [2]float64 // calls, tokens, exponentially decayed by DemandWindow
	log     *slog.Logger
	warned  atomic.Bool // a refused figure was logged
}

func newDemandMeter(now func() time.Time, log *slog.Logger) *demandMeter {
	t := now()
	return &demandMeter{now: now, start: t, last: t, log: log}
}

// counted marks a context whose call was counted already: an AcquireWait's
// tries, an Acquire's own calls of the primitives.
type countedKey struct{}

// ask counts one call asked for, with its tokens, unless ctx says it was
// counted.
func (m *demandMeter) ask(ctx context.Context, tokens int64) {
	if ctx.Value(countedKey{}) != nil {
		return
	}
	m.calls.Add(1)
	if tokens > 0 {
		m.tokens.Add(min(tokens, quota.MaxCost))
	}
}

// once counts one call, as ask, and returns ctx marked so that the calls
// made with it are not counted again.
func (m *demandMeter) once(ctx context.Context, tokens int64) context.Context {
	if ctx.Value(countedKey{}) != nil {
		return ctx
	}
	m.ask(ctx, tokens)
	return context.WithValue(ctx, countedKey{}, true)
}

// rate folds the calls asked since the last fold into the decayed counts
// and returns the demand per second. Calls are taken as spread evenly over
// the time since the last fold; before demandWarmup the figure is scaled
// as if the meter had run that long.
func (m *demandMeter) rate() heartbeat.Demand {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	tau := DemandWindow.Seconds()
	dt := max(now.Sub(m.last).Seconds(), 0)
	decay := math.Exp(-dt / tau)
	// Each call spread over [last, now] weighs, on average, this much now.
	weight := 1.0
	if dt > 0 {
		weight = tau * (1 - decay) / dt
	}
	for k, n := range [2]int64{m.calls.Load(), m.tokens.Load()} {
		m.decayed[k] = m.decayed[k]*decay + float64(n-m.counted[k])*weight
		m.counted[k] = n
	}
	m.last = now
	age := max(now.Sub(m.start), demandWarmup).Seconds()
	norm := tau * (1 - math.Exp(-age/tau))
	return heartbeat.Demand{Calls: m.decayed[0] / norm, Tokens: m.decayed[1] / norm}
}

// refused logs, once, that the beat refused this node's demand figure; the
// node beats on without it.
func (m *demandMeter) refused(err error) {
	if m.warned.CompareAndSwap(false, true) {
		m.log.Warn("allot: the beat refused this node's demand figure; beating without it (logged once)", "err", err)
	}
}
