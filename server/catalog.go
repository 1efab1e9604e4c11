package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allot-io/allot/registry"
)

// catalogGrace is how long a revision an acquire's reply showed may stay
// ahead of the catalog before it is read again: its event is usually on
// the way.
const catalogGrace = 250 * time.Millisecond

// catalogCache is the server's copy of every group (registry.Catalog), for
// HTTP leases: the limits of a node's held groups and the lendable ones,
// with no read per acquire. It is read at the first acquire, then follows
// the lend channel (watch); a gap, a resumed subscription, or a revision an
// acquire showed that no event brought within catalogGrace makes the next
// acquire read it again. Safe for concurrent use.
type catalogCache struct {
	reg *registry.Registry
	cur atomic.Pointer[registry.Catalog]
	mu  sync.Mutex // one read at a time

	stale       atomic.Bool
	behindRev   atomic.Int64
	behindSince atomic.Int64 // Unix ns; 0: not behind
	readAt      atomic.Int64 // Unix ns of the last read
}

// get returns the catalog, reading it when it was never read or cannot
// be trusted (at most once per catalogGrace: a read just made is the best
// there is).
func (c *catalogCache) get(ctx context.Context) (*registry.Catalog, error) {
	if cur := c.cur.Load(); cur != nil && !c.needsRead(cur) {
		return cur, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.cur.Load(); cur != nil && !c.needsRead(cur) {
		return cur, nil
	}
	c.stale.Store(false) // an event that makes it stale during the read is seen
	c.readAt.Store(time.Now().UnixNano())
	cat, err := c.reg.ReadCatalog(ctx)
	if err != nil {
		c.stale.Store(true)
		return nil, err
	}
	c.install(cat)
	return c.cur.Load(), nil
}

func (c *catalogCache) needsRead(cur *registry.Catalog) bool {
	if time.Since(time.Unix(0, c.readAt.Load())) < catalogGrace {
		return false
	}
	return c.stale.Load() || c.behindTooLong(cur)
}

func (c *catalogCache) behindTooLong(cur *registry.Catalog) bool {
	since := c.behindSince.Load()
	return since != 0 && c.behindRev.Load() > cur.Rev && time.Since(time.Unix(0, since)) > catalogGrace
}

// install makes cat current unless a newer one is.
func (c *catalogCache) install(cat *registry.Catalog) {
	for {
		cur := c.cur.Load()
		if cur != nil && cur.Rev > cat.Rev {
			return
		}
		if c.cur.CompareAndSwap(cur, cat) {
			break
		}
	}
	if cat.Rev >= c.behindRev.Load() {
		c.behindSince.Store(0)
	}
}

// apply takes an event of the lend channel; one it cannot take makes the
// catalog stale.
func (c *catalogCache) apply(ev registry.Event) {
	for {
		cur := c.cur.Load()
		if cur == nil {
			return
		}
		next, ok := cur.Apply(ev)
		if !ok {
			c.stale.Store(true)
			return
		}
		if next == cur || c.cur.CompareAndSwap(cur, next) {
			if next.Rev >= c.behindRev.Load() {
				c.behindSince.Store(0)
			}
			return
		}
	}
}

// saw records the namespace's revision as a reply showed it.
func (c *catalogCache) saw(rev int64) {
	cur := c.cur.Load()
	if cur == nil || rev <= cur.Rev {
		return
	}
	for {
		old := c.behindRev.Load()
		if old >= rev || c.behindRev.CompareAndSwap(old, rev) {
			break
		}
	}
	c.behindSince.CompareAndSwap(0, time.Now().UnixNano())
}
