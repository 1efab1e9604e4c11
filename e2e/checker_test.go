package e2e

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/allot-io/allot/allocator"
)

// goroutineLimit is the most goroutines a node process may report. A node
// runs its client's few workers plus go-redis pools: a leak shows as growth
// far past that.
const goroutineLimit = 100

// violation is one broken invariant, with what is needed to print its
// history.
type violation struct {
	t      int64
	what   string
	nodes  []string // process names ("n07#2") involved
	groups []string // groups involved
}

// stats are the figures a run reports (BENCHMARKS.md).
type stats struct {
	reports         int
	moves           int     // groups newly held, summed over every report
	maxGap          int64   // longest stretch a live node held nothing (ns)
	maxGapWho       string  //
	reassignKill    []int64 // kill -9 of a sole holder → next holder reports it (ns)
	reassignLeave   []int64 // SIGTERM of a sole holder → next holder reports it (ns)
	zombieReaction  []int64 // SIGCONT → the zombie reports its capped groups gone (ns)
	maxGoroutines   int
	groupsOrphanMax int64
	leaseChecked    int   // kill -9s of an exclusive holder checked against its lease
	leaseMinMargin  int64 // smallest next report - (last beat + TTL) among them (ns)
}

// checker evaluates the invariants over everything the harness recorded up
// to until.
type checker struct {
	h      *harness
	caps   map[string]int     // capped groups -> max_nodes
	base   map[string]bool    // groups that exist the whole run
	bound  int64              // TTL + 2 intervals
	lapse  int64              // longest a resumed zombie may keep a capped group: TTL - interval
	grace  int64              // after an outage ends, before the supply bound applies again
	until  int64              // end of the checked history
	procs  []*proc            //
	byProc map[*proc][]report //
	holds  map[*proc]map[string][]span
	extra  []violation // found elsewhere (Redis-side sampler, quiescence)
	events []event
}

func newChecker(h *harness, caps map[string]int, base []string, extra []violation) (*checker, error) {
	c := &checker{
		h: h, caps: caps, base: make(map[string]bool),
		bound: int64(h.hb.TTL + 2*h.hb.Interval),
		lapse: int64(h.hb.TTL - h.hb.Interval),
		// After an outage the rebalance lock taken before it (persisted in
		// the AOF, replicated to the promoted master) may still be held by a
		// planner that can no longer release it: it lapses after its expiry.
		grace: int64(h.hb.TTL + 2*h.hb.Interval + max(h.hb.Interval, allocator.MinLockExpiry)),
		until: now(), byProc: make(map[*proc][]report), holds: make(map[*proc]map[string][]span),
		extra: extra,
	}
	for _, g := range base {
		c.base[g] = true
	}
	h.mu.Lock()
	c.procs = append([]*proc(nil), h.all...)
	c.events = append([]event(nil), h.events...)
	h.mu.Unlock()
	for _, p := range c.procs {
		rs, err := readReports(p)
		if err != nil {
			return nil, err
		}
		c.byProc[p] = rs
		c.holds[p] = c.holdings(p, rs)
	}
	return c, nil
}

// lifeEnd is when p stopped existing (or until, while it runs).
func (c *checker) lifeEnd(p *proc) int64 {
	if e := p.end(); e != 0 {
		return e
	}
	return c.until
}

// holdings turns p's reports into time spans per group: p holds g from a
// report naming g until its next report without g, or its death.
func (c *checker) holdings(p *proc, rs []report) map[string][]span {
	end := c.lifeEnd(p)
	out := make(map[string][]span)
	for i, r := range rs {
		if r.T >= end {
			break
		}
		to := end
		if i+1 < len(rs) && rs[i+1].T < end {
			to = rs[i+1].T
		}
		for _, g := range r.names() {
			ss := out[g]
			if n := len(ss); n > 0 && ss[n-1].to == r.T {
				ss[n-1].to = to
			} else {
				ss = append(ss, span{r.T, to})
			}
			out[g] = ss
		}
	}
	return out
}

// stopsOf returns p's SIGSTOP spans (an open one ends at its life end).
func (c *checker) stopsOf(p *proc) []span {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.stops)
	for i := range out {
		if out[i].to == 0 {
			out[i].to = c.lifeEnd(p)
		}
	}
	return out
}

// outages returns the Redis outages, each extended by the grace period.
func (c *checker) outages() []span {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	out := make([]span, 0, len(c.h.outages))
	for _, o := range c.h.outages {
		if o.to == 0 {
			o.to = c.until
		}
		out = append(out, span{o.from, o.to + c.grace})
	}
	return out
}

// subtract removes every span of cut from s.
func subtract(s span, cut []span) []span {
	out := []span{s}
	for _, x := range cut {
		var next []span
		for _, a := range out {
			if x.to <= a.from || x.from >= a.to {
				next = append(next, a)
				continue
			}
			if x.from > a.from {
				next = append(next, span{a.from, x.from})
			}
			if x.to < a.to {
				next = append(next, span{x.to, a.to})
			}
		}
		out = next
	}
	return out
}

type holder struct {
	s span
	p *proc
}

// checkCaps verifies invariant 1: no capped group is held by more than
// max_nodes nodes at any instant, from the nodes' own reports. A frozen
// process uses nothing while stopped; once resumed it must drop the capped
// groups it lost within lapse (its lease ran out while it was frozen).
func (c *checker) checkCaps(st *stats) []violation {
	var out []violation
	spans := make(map[string][]holder)
	for _, p := range c.procs {
		stops := c.stopsOf(p)
		for g, ss := range c.holds[p] {
			if _, capped := c.caps[g]; !capped {
				continue
			}
			for _, s := range ss {
				for _, piece := range subtract(s, stops) {
					spans[g] = append(spans[g], holder{piece, p})
				}
			}
			// A piece that starts at a SIGCONT is the zombie's reaction.
			for _, stp := range stops {
				for _, s := range ss {
					if s.from <= stp.from && s.to > stp.to && stp.to-stp.from > int64(c.h.hb.TTL) {
						react := s.to - stp.to
						st.zombieReaction = append(st.zombieReaction, react)
						if react <= c.lapse {
							spans[g] = slices.DeleteFunc(spans[g], func(x holder) bool {
								return x.p == p && x.s.from == stp.to
							})
						}
					}
				}
			}
		}
	}
	for g, hs := range spans {
		max := c.caps[g]
		type edge struct {
			t     int64
			delta int
			h     holder
		}
		var edges []edge
		for _, h := range hs {
			if h.s.to <= h.s.from {
				continue
			}
			edges = append(edges, edge{h.s.from, +1, h}, edge{h.s.to, -1, h})
		}
		sort.Slice(edges, func(i, j int) bool {
			if edges[i].t != edges[j].t {
				return edges[i].t < edges[j].t
			}
			return edges[i].delta < edges[j].delta // ends first
		})
		cur := map[*proc]bool{}
		reported := false
		for _, e := range edges {
			if e.delta < 0 {
				delete(cur, e.h.p)
				continue
			}
			cur[e.h.p] = true
			if len(cur) > max && !reported {
				var who []string
				for p := range cur {
					who = append(who, p.name())
				}
				sort.Strings(who)
				out = append(out, violation{t: e.t, groups: []string{g}, nodes: who,
					what: fmt.Sprintf("capped group %s (max_nodes %d) held by %d nodes at once: %v", g, max, len(cur), who)})
				reported = true // one history per group is enough
			}
		}
	}
	return out
}

// checkSupply verifies invariant 2: a live node never holds nothing for
// longer than TTL + 2 intervals, outside Redis outages (plus grace) and its
// own frozen spans. Its life for this purpose ends at SIGTERM or death.
func (c *checker) checkSupply(st *stats) []violation {
	var out []violation
	outages := c.outages()
	for _, p := range c.procs {
		rs := c.byProc[p]
		end := c.lifeEnd(p)
		p.mu.Lock()
		if p.termed != 0 && p.termed < end {
			end = p.termed
		}
		from := p.spawned
		p.mu.Unlock()
		exempt := append(c.stopsOf(p), outages...)
		var gaps []span
		empty, since := true, from
		for _, r := range rs {
			if r.T >= end {
				break
			}
			has := len(r.Groups) > 0
			switch {
			case empty && has:
				gaps = append(gaps, span{since, r.T})
				empty = false
			case !empty && !has:
				empty, since = true, r.T
			}
		}
		if empty {
			gaps = append(gaps, span{since, end})
		}
		for _, g := range gaps {
			for _, piece := range subtract(g, exempt) {
				d := piece.to - piece.from
				if d > st.maxGap {
					st.maxGap, st.maxGapWho = d, fmt.Sprintf("%s at %s", p.name(), c.h.rel(piece.from))
				}
				if d > c.bound {
					out = append(out, violation{t: piece.from + c.bound, nodes: []string{p.name()},
						what: fmt.Sprintf("node %s held no group for %v (from %s), bound TTL+2×interval = %v",
							p.name(), time.Duration(d).Round(time.Millisecond), c.h.rel(piece.from), time.Duration(c.bound))})
				}
			}
		}
	}
	return out
}

// checkReassign measures how long a base group held by one node only stays
// unheld after that node is killed or leaves, and flags it past the bound
// (outside outages).
func (c *checker) checkReassign(st *stats) []violation {
	var out []violation
	outages := c.outages()
	heldAt := func(p *proc, g string, t int64) bool {
		for _, s := range c.holds[p][g] {
			if s.from <= t && t < s.to {
				return true
			}
		}
		return false
	}
	for _, p := range c.procs {
		p.mu.Lock()
		killed, termed, stopped := p.killed, p.termed, len(p.stops) > 0
		p.mu.Unlock()
		at, kind := killed, "kill"
		if at == 0 {
			at, kind = termed, "leave"
		}
		if at == 0 || stopped {
			continue
		}
		for g := range c.base {
			if !heldAt(p, g, at-1) {
				continue
			}
			others := false
			next := int64(0)
			for _, q := range c.procs {
				if q == p {
					continue
				}
				if heldAt(q, g, at) {
					others = true
					break
				}
				for _, s := range c.holds[q][g] {
					if s.from > at && (next == 0 || s.from < next) {
						next = s.from
					}
				}
			}
			if others {
				continue
			}
			until := next
			if until == 0 {
				until = c.until
			}
			if slices.ContainsFunc(outages, func(o span) bool { return o.from <= until && at <= o.to }) {
				continue
			}
			if next == 0 {
				if c.until-at > c.bound {
					out = append(out, violation{t: at + c.bound, nodes: []string{p.name()}, groups: []string{g},
						what: fmt.Sprintf("group %s unheld since %s of its holder %s", g, kind, p.name())})
				}
				continue
			}
			d := next - at
			if kind == "kill" {
				st.reassignKill = append(st.reassignKill, d)
			} else {
				st.reassignLeave = append(st.reassignLeave, d)
			}
			if d > c.bound {
				out = append(out, violation{t: at + c.bound, nodes: []string{p.name()}, groups: []string{g},
					what: fmt.Sprintf("group %s took %v to be held again after %s of %s, bound %v",
						g, time.Duration(d).Round(time.Millisecond), kind, p.name(), time.Duration(c.bound))})
			}
		}
	}
	return out
}

// checkProcesses verifies no node crashed or leaked goroutines.
func (c *checker) checkProcesses(st *stats) []violation {
	var out []violation
	for _, msg := range c.h.crashes() {
		out = append(out, violation{t: c.until, what: "node crashed: " + msg})
	}
	for _, p := range c.procs {
		for _, r := range c.byProc[p] {
			st.maxGoroutines = max(st.maxGoroutines, r.Goroutines)
			if r.Goroutines > goroutineLimit {
				out = append(out, violation{t: r.T, nodes: []string{p.name()},
					what: fmt.Sprintf("node %s reports %d goroutines (limit %d): leak", p.name(), r.Goroutines, goroutineLimit)})
				break
			}
		}
	}
	return out
}

// run evaluates every invariant and returns the violations and figures.
func (c *checker) run() ([]violation, stats) {
	var st stats
	for _, p := range c.procs {
		rs := c.byProc[p]
		st.reports += len(rs)
		var prev []string
		for _, r := range rs {
			for _, g := range r.names() {
				if !slices.Contains(prev, g) {
					st.moves++
				}
			}
			prev = r.names()
		}
	}
	var out []violation
	out = append(out, c.extra...)
	out = append(out, c.checkCaps(&st)...)
	out = append(out, c.checkSupply(&st)...)
	out = append(out, c.checkReassign(&st)...)
	out = append(out, c.checkLeaseOnKill(&st)...)
	out = append(out, c.checkProcesses(&st)...)
	slices.SortFunc(out, func(a, b violation) int { return cmp.Compare(a.t, b.t) })
	return out, st
}

// history prints, in time order, the reports and harness events around v
// that concern its nodes or groups: what a reader needs to see why it broke.
func (c *checker) history(v violation) string {
	from, to := v.t-int64(3*time.Second), v.t+int64(time.Second)
	type line struct {
		t int64
		s string
	}
	var lines []line
	involved := func(name string, groups []string) bool {
		if slices.Contains(v.nodes, name) {
			return true
		}
		for _, g := range groups {
			if slices.Contains(v.groups, g) {
				return true
			}
		}
		return false
	}
	for _, p := range c.procs {
		rs := c.byProc[p]
		for i, r := range rs {
			if r.T < from || r.T > to {
				continue
			}
			var prev []string
			if i > 0 {
				prev = rs[i-1].names()
			}
			if involved(p.name(), append(r.names(), prev...)) {
				lines = append(lines, line{r.T, fmt.Sprintf("%s report epoch=%d groups=%s goroutines=%d",
					p.name(), r.Epoch, strings.Join(r.Groups, ","), r.Goroutines)})
			}
		}
	}
	for _, e := range c.events {
		if e.t < from || e.t > to {
			continue
		}
		global := strings.HasPrefix(e.kind, "redis") || strings.HasPrefix(e.kind, "cold") || e.kind == "failover"
		if global || involved(e.node, []string{e.node}) || slices.Contains(v.groups, e.node) {
			lines = append(lines, line{e.t, fmt.Sprintf("%s %s %s", e.node, e.kind, e.detail)})
		}
	}
	slices.SortStableFunc(lines, func(a, b line) int { return cmp.Compare(a.t, b.t) })
	if len(lines) > 300 {
		lines = lines[len(lines)-300:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "VIOLATION at %s: %s\n", c.h.rel(v.t), v.what)
	for _, l := range lines {
		fmt.Fprintf(&b, "  %s  %s\n", c.h.rel(l.t), l.s)
	}
	return b.String()
}
