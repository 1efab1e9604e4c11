package client

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allot-io/allot/registry"
)

// lender is a node's side of borrowing, a small type on the Client as the
// limiter and the reporter are: the catalog of every group it may borrow
// from (registry.Catalog), read once when the node first acquires and kept
// fresh by the lend channel's events — each carries the revision it moved
// to, so a gap is seen and read again, and an acquire's reply, which
// carries the namespace's revision, catches a lost one — and the random
// choice of the few lendable groups an Acquire weighs. No read per call.
// Safe for concurrent use.
type lender struct {
	reg *registry.Registry
	// sample is how many lendable groups an Acquire that must borrow
	// weighs (WithBorrowSample; 0: the node never borrows).
	sample int
	// intn returns a random int in [0, n); guarded by mu (tests replace it).
	mu   sync.Mutex
	intn func(n int) int

	cat    atomic.Pointer[registry.Catalog]
	wanted atomic.Bool  // an Acquire needs the catalog: follow the lend channel and read it
	reload atomic.Bool  // the catalog cannot follow (a gap, a resumed subscription): read now
	behind atomic.Int64 // the newest revision a reply showed
	wake   chan struct{}
	// readMu makes concurrent first reads share one.
	readMu sync.Mutex
	// reads counts catalog reads (tests).
	reads atomic.Int64
}

func newLender(reg *registry.Registry, sample int, intn func(int) int) *lender {
	return &lender{reg: reg, sample: sample, intn: intn, wake: make(chan struct{}, 1)}
}

// catalog returns the catalog, asking for it (read in the background,
// then followed) the first time; nil until it is read.
func (l *lender) catalog() *registry.Catalog {
	if l.sample == 0 {
		return nil
	}
	if !l.wanted.Load() && l.wanted.CompareAndSwap(false, true) {
		signal(l.wake)
	}
	return l.cat.Load()
}

// catalogNow is catalog, reading it now (bounded by ctx) when it was never
// read: an Acquire that must borrow on a node that never borrowed.
func (l *lender) catalogNow(ctx context.Context) (*registry.Catalog, error) {
	if cat := l.catalog(); cat != nil || l.sample == 0 {
		return cat, nil
	}
	l.readMu.Lock()
	defer l.readMu.Unlock()
	if cat := l.cat.Load(); cat != nil {
		return cat, nil
	}
	l.reads.Add(1)
	cat, err := l.reg.ReadCatalog(ctx)
	if err != nil {
		return nil, err
	}
	l.install(cat)
	return cat, nil
}

// install makes cat the catalog unless a newer one is installed.
func (l *lender) install(cat *registry.Catalog) {
	for {
		cur := l.cat.Load()
		if cur != nil && cur.Rev > cat.Rev {
			return
		}
		if l.cat.CompareAndSwap(cur, cat) {
			return
		}
	}
}

// apply takes one event of the lend channel; one the catalog cannot take
// (a gap) makes it read again.
func (l *lender) apply(ev registry.Event) {
	for {
		cur := l.cat.Load()
		if cur == nil {
			return // the read to come covers it
		}
		next, ok := cur.Apply(ev)
		if !ok {
			l.readAgain()
			return
		}
		if next == cur || l.cat.CompareAndSwap(cur, next) {
			return
		}
	}
}

// readAgain asks for a new read of the catalog at once.
func (l *lender) readAgain() {
	if l.wanted.Load() {
		l.reload.Store(true)
		signal(l.wake)
	}
}

// saw records the namespace's revision as a reply showed it: a catalog
// older than it may have lost an event (the loop waits for it a little,
// then reads).
func (l *lender) saw(rev int64) {
	if cat := l.cat.Load(); cat == nil || cat.Rev >= rev {
		return
	}
	for {
		old := l.behind.Load()
		if old >= rev || l.behind.CompareAndSwap(old, rev) {
			break
		}
	}
	signal(l.wake)
}

// pick returns up to l.sample random names of lendable, excluding those
// skip says (held by the node, cooling by its own report, too small for
// the call): the power of k choices, so an Acquire weighs a few groups,
// not the pool, and the one with the most room among them wins.
func (l *lender) pick(lendable []string, skip func(string) bool) []string {
	if l.sample == 0 || len(lendable) == 0 {
		return nil
	}
	out := make([]string, 0, l.sample)
	l.mu.Lock()
	defer l.mu.Unlock()
	// A few random draws, not a scan: with 1,000 groups this stays a
	// handful of steps. Past the tries, a small pool has too few left.
	for tries := 4 * l.sample; tries > 0 && len(out) < l.sample; tries-- {
		name := lendable[l.intn(len(lendable))]
		if skip(name) || contains(out, name) {
			continue
		}
		out = append(out, name)
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// catalogLoop reads the catalog when an Acquire first wants it, and again
// when it cannot follow (a gap, a lost subscription) or a reply showed a
// newer revision that no event brought within a short wait. A failed read
// is retried with backoff. It never blocks an Acquire.
func (c *Client) catalogLoop() {
	defer c.workers.Done()
	l := c.lend
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	failures := 0
	var lastRead time.Time
	grace := min(c.o.heartbeat.Interval/8, 250*time.Millisecond)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-l.wake:
		case <-retry.C:
		}
		if !l.wanted.Load() {
			continue
		}
		cat := l.cat.Load()
		forced := l.reload.Load()
		if forced && cat != nil && time.Since(lastRead) < grace {
			// Asked again right after a read (a candidate the script
			// found stale while the read was on its way): at most one
			// read per grace, whatever asks.
			if !c.sleep(grace - time.Since(lastRead)) {
				return
			}
		}
		forced = l.reload.Swap(false)
		if cat != nil && !forced {
			if cat.Rev >= l.behind.Load() {
				continue
			}
			// The event of that revision is probably on its way.
			if !c.sleep(grace) {
				return
			}
			if l.cat.Load().Rev >= l.behind.Load() {
				continue
			}
		}
		c.followGroups() // the lend channel first, so no event falls between
		ctx, cancel := context.WithTimeout(c.ctx, c.callTimeout())
		l.reads.Add(1)
		lastRead = time.Now()
		fresh, err := l.reg.ReadCatalog(ctx)
		cancel()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			failures++
			l.reload.Store(true)
			c.log.Debug("allot: reading the group catalog failed; retrying", "err", err, "failures", failures)
			retry.Reset(c.backoff(failures))
			continue
		}
		failures = 0
		l.install(fresh)
	}
}

// sleep waits d unless the client stops first (false).
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// onLendEvent takes one event of the lend channel into the catalog.
func (c *Client) onLendEvent(payload string) {
	if c.dropEvents.Load() {
		return
	}
	ev, err := parseEvent(payload)
	if err != nil {
		c.log.Debug("allot: unreadable lend event ignored", "err", err)
		c.lend.readAgain()
		return
	}
	c.lend.apply(ev)
}
