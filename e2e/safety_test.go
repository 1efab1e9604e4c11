package e2e

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/registry"
)

// Two safety rules the chaos runs check on top of the invariants of
// checker_test.go: a killed holder's exclusive group is not handed on before
// its lease allows, and a stale planner's commit is refused by the epoch
// fence — which the runs force, since a well-behaved pool rarely goes stale.

// kill9 SIGKILLs pr and records its last beat as Redis stored it (ms of
// server time), the start of the lease the checker holds the next holder of
// its exclusive groups to. A beat still in flight at the kill can only land
// later, which makes the recorded lease shorter: the bound stays sound.
func (r *scenario) kill9(pr *proc) {
	r.h.kill9(pr)
	r.kills++
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	score, err := r.p.rdb.ZScore(ctx, keys.New(r.h.ns).Nodes(), pr.id).Result()
	if err != nil {
		// Already reaped, or Redis is down: no bound for this kill.
		if !errors.Is(err, redis.Nil) {
			r.h.note("kill", pr.name(), fmt.Sprintf("last beat unknown: %v", err))
		}
		return
	}
	pr.mu.Lock()
	pr.lastBeat = int64(score) * int64(time.Millisecond)
	pr.mu.Unlock()
}

// checkLeaseOnKill verifies that a group capped at one node, held by a node
// at the instant it was kill -9ed, is reported by no other node before the
// killed node's last beat + TTL: before that the server cannot have reaped
// it, and nothing else frees the group (its holder never released it — its
// report still showed the group, and a release is beaten only after OnChange
// returns). Kills near a Redis outage are skipped: a failover may lose the
// last beats.
func (c *checker) checkLeaseOnKill(st *stats) []violation {
	var out []violation
	outages := c.outages()
	ttl := int64(c.h.hb.TTL)
	for _, p := range c.procs {
		p.mu.Lock()
		killed, last, stopped := p.killed, p.lastBeat, len(p.stops) > 0
		p.mu.Unlock()
		if killed == 0 || last == 0 || stopped {
			continue
		}
		for g, max := range c.caps {
			if max != 1 || !c.heldAt(p, g, killed-1) {
				continue
			}
			next, by := int64(0), ""
			for _, q := range c.procs {
				if q == p {
					continue
				}
				for _, s := range c.holds[q][g] {
					if s.from >= killed && (next == 0 || s.from < next) {
						next, by = s.from, q.name()
					}
				}
			}
			if next == 0 {
				continue
			}
			if slicesContainsOverlap(outages, last, next) {
				continue
			}
			allowed := last + ttl
			st.leaseChecked++
			margin := next - allowed
			if st.leaseChecked == 1 || margin < st.leaseMinMargin {
				st.leaseMinMargin = margin
			}
			if next < allowed {
				out = append(out, violation{t: next, nodes: []string{p.name(), by}, groups: []string{g},
					what: fmt.Sprintf("capped group %s reported by %s %v after the kill -9 of %s, %v before its lease (last beat + TTL %v) ran out",
						g, by, ms(next-killed), p.name(), ms(allowed-next), c.h.hb.TTL)})
			}
		}
	}
	return out
}

// heldAt reports whether p's reports show it holding g at t.
func (c *checker) heldAt(p *proc, g string, t int64) bool {
	for _, s := range c.holds[p][g] {
		if s.from <= t && t < s.to {
			return true
		}
	}
	return false
}

func slicesContainsOverlap(spans []span, from, to int64) bool {
	for _, o := range spans {
		if o.from <= to && from <= o.to {
			return true
		}
	}
	return false
}

// stalePlanner forces stale commits, as a planner paused between reading
// and committing would (a GC pause past its lock): it reads the assignment,
// waits until another plan has moved the epoch, then commits with the base
// it read. The commit script must refuse it (ErrStaleEpoch, counted in
// staleForced); an accepted one is a violation unless a Redis outage — a
// failover that lost the newer epoch — overlaps the attempt.
func (p *pool) stalePlanner() (stop func()) {
	return background(10*time.Millisecond, func(ctx context.Context) {
		began := now()
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		base, err := p.reg.Assignment(rctx)
		if err != nil {
			return
		}
		for {
			c, err := p.reg.Counters(rctx)
			if err != nil {
				return
			}
			if c.Epoch != base.Epoch {
				break
			}
			select {
			case <-rctx.Done():
				return
			case <-time.After(20 * time.Millisecond): // polling interval
			}
		}
		epoch, _, err := p.reg.Commit(rctx, registry.Commit{From: base.Counters, Base: &base,
			Nodes: base.Nodes, Revoked: base.Revoked, By: "stale-planner"})
		switch {
		case errors.Is(err, registry.ErrStaleEpoch):
			p.staleForced.Add(1)
		case err == nil:
			if !slicesContainsOverlap(p.h.outageSpans(), began, now()) {
				p.violate(violation{t: now(), what: fmt.Sprintf("a stale plan (read at epoch %d, epoch moved since) was committed: epoch %d", base.Epoch, epoch)})
			}
		}
	})
}

// outageSpans returns the outages so far, each extended by a TTL on both
// sides (an open one ends now).
func (h *harness) outageSpans() []span {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]span, 0, len(h.outages))
	for _, o := range h.outages {
		if o.to == 0 {
			o.to = now()
		}
		out = append(out, span{o.from - int64(h.hb.TTL), o.to + int64(h.hb.TTL)})
	}
	return out
}
