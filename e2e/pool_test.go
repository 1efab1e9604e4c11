package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// by is the updated_by of every write the suite makes.
const by = "chaos"

// baseGroup is a group that exists for the whole run: the storm never
// retires or deletes it, so nodes always have an uncapped group to hold.
type baseGroup struct {
	name   string
	weight float64
	max    int
}

var baseGroups = []baseGroup{
	{"alpha", 1, 0}, {"beta", 2, 0}, {"gamma", 3, 0},
	{"solo", 1, 1}, {"excl", 2, 1}, {"pair", 1, 2},
}

// expect is what the registry must hold for a group after the acknowledged
// writes: certain is false after a write whose outcome is unknown (it
// failed on a broken connection).
type expect struct {
	version int64
	state   registry.State
	config  map[string]string
	deleted bool
	certain bool
}

// pool is the in-process side of one chaos run: the Redis clients, the
// group storm, the forced rebalance loop and the Redis-side sampler.
type pool struct {
	t   *testing.T
	h   *harness
	rdb redis.UniversalClient
	reg *registry.Registry
	hb  *heartbeat.Tracker
	rb  *allocator.Rebalancer

	mu      sync.Mutex
	rng     *rand.Rand
	model   map[string]*expect
	caps    map[string]int // every capped group ever added -> max_nodes (never changed)
	nextID  int
	extra   []violation
	ops     atomic.Int64
	opsFail atomic.Int64
	samples atomic.Int64
	// staleForced counts the stale commits the stale planner made and the
	// epoch fence refused.
	staleForced atomic.Int64

	samplesFile *os.File // redis.jsonl, under mu
}

func newPool(t *testing.T, h *harness, rdb redis.UniversalClient, seed uint64) *pool {
	hb, err := heartbeat.New(rdb, h.ns, h.hb)
	require.NoError(t, err)
	reg := registry.New(rdb, registry.WithNamespace(h.ns))
	p := &pool{
		t: t, h: h, rdb: rdb, reg: reg, hb: hb,
		rb:    allocator.NewRebalancer(rdb, reg, hb, allocator.WithPlanner(by)),
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		model: make(map[string]*expect), caps: make(map[string]int),
	}
	ctx := context.Background()
	for _, g := range baseGroups {
		w, m := g.weight, g.max
		got, err := reg.Add(ctx, g.name, registry.Change{Set: map[string]string{"key": "k-" + g.name}, Weight: &w, MaxNodes: &m}, by)
		require.NoError(t, err)
		p.acked(got)
		if m > 0 {
			p.caps[g.name] = m
		}
	}
	return p
}

func (p *pool) baseNames() []string {
	var out []string
	for _, g := range baseGroups {
		out = append(out, g.name)
	}
	return out
}

func (p *pool) capsCopy() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.caps)
}

func (p *pool) violate(v violation) {
	p.mu.Lock()
	p.extra = append(p.extra, v)
	p.mu.Unlock()
}

func (p *pool) violations() []violation {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.extra)
}

func (p *pool) acked(g registry.Group) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.model[g.Name] = &expect{version: g.Version, state: g.State, config: maps.Clone(g.Config), certain: true}
}

// outcome records the result of a write to name: acknowledged writes become
// the expectation, rejections leave it, anything else makes it unknown.
func (p *pool) outcome(name string, g registry.Group, deleted bool, err error) {
	p.ops.Add(1)
	switch {
	case err == nil && deleted:
		p.mu.Lock()
		p.model[name] = &expect{deleted: true, certain: true}
		p.mu.Unlock()
	case err == nil:
		p.acked(g)
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrInvalidState), errors.Is(err, registry.ErrExists):
		// Rejected before writing anything: the expectation stands.
	default:
		p.opsFail.Add(1)
		p.mu.Lock()
		if e := p.model[name]; e != nil {
			e.certain = false
		} else {
			p.model[name] = &expect{certain: false}
		}
		p.mu.Unlock()
	}
}

// stormOp makes one random group write: add, update, retire or delete a
// storm group, or update a base group's config.
func (p *pool) stormOp(ctx context.Context) {
	p.mu.Lock()
	roll := p.rng.IntN(100)
	var storm, active []string
	for name, e := range p.model {
		if !strings.HasPrefix(name, "s-") || e.deleted {
			continue
		}
		storm = append(storm, name)
		if e.state == registry.Active {
			active = append(active, name)
		}
	}
	sort.Strings(storm)
	sort.Strings(active)
	pick := func(xs []string) string { return xs[p.rng.IntN(len(xs))] }
	val := fmt.Sprintf("v%d", p.rng.IntN(1_000_000))
	weight := float64(1 + p.rng.IntN(3))
	maxNodes := []int{0, 0, 1, 2}[p.rng.IntN(4)]
	base := baseGroups[p.rng.IntN(len(baseGroups))].name
	var name, op string
	switch {
	case roll < 25 && len(active) < 5:
		p.nextID++
		name, op = fmt.Sprintf("s-%03d", p.nextID), "add"
		if maxNodes > 0 {
			p.caps[name] = maxNodes
		}
	case roll < 55 && len(active) > 0:
		name, op = pick(active), "update"
	case roll < 70:
		name, op = base, "update"
	case roll < 85 && len(active) > 0:
		name, op = pick(active), "retire"
	case len(storm) > 0:
		name, op = pick(storm), "delete"
	default:
		name, op = base, "update"
	}
	updateWeight := strings.HasPrefix(name, "s-") && p.rng.IntN(2) == 0
	p.mu.Unlock()

	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	switch op {
	case "add":
		g, err := p.reg.Add(wctx, name, registry.Change{Set: map[string]string{"key": val}, Weight: &weight, MaxNodes: &maxNodes}, by)
		p.outcome(name, g, false, err)
		p.h.note("add", name, fmt.Sprintf("max_nodes %d weight %g err=%v", maxNodes, weight, err))
	case "update":
		c := registry.Change{Set: map[string]string{"key": val}}
		if updateWeight {
			c.Weight = &weight
		}
		g, err := p.reg.Update(wctx, name, c, by)
		p.outcome(name, g, false, err)
		p.h.note("update", name, fmt.Sprintf("v%d err=%v", g.Version, err))
	case "retire":
		g, err := p.reg.Retire(wctx, name, 2*time.Second, by)
		p.outcome(name, g, false, err)
		p.h.note("retire", name, fmt.Sprintf("err=%v", err))
	default:
		err := p.reg.Delete(wctx, name, by)
		p.outcome(name, registry.Group{}, true, err)
		p.h.note("delete", name, fmt.Sprintf("err=%v", err))
	}
}

// background runs fn every period on its own goroutine until the returned
// stop func is called (which waits for it).
func background(period time.Duration, fn func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			fn(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// storm starts group writes every period.
func (p *pool) storm(period time.Duration) (stop func()) {
	return background(period, func(ctx context.Context) {
		if ctx.Err() == nil {
			p.stormOp(ctx)
		}
	})
}

// rebalanceLoop forces a rebalance every period, as an over-eager
// coordinator would; the lock and the epoch fence must keep it harmless.
func (p *pool) rebalanceLoop(period time.Duration) (stop func()) {
	return background(period, func(ctx context.Context) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, _ = p.rb.Run(rctx)
	})
}

// sampler checks from Redis, every period, that the committed grants of
// every capped group (assigned or revoked-but-unacknowledged) never exceed
// its max_nodes: the rebalancer's gate, seen from the store.
func (p *pool) sampler(period time.Duration) (stop func()) {
	reported := make(map[string]bool)
	return background(period, func(ctx context.Context) {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		a, err := p.reg.Assignment(rctx)
		if err != nil {
			return
		}
		p.samples.Add(1)
		caps := p.capsCopy()
		p.recordSample(rctx, a, caps)
		who := make(map[string]map[string]bool)
		add := func(node, g string) {
			g, _, _ = strings.Cut(g, "@")
			if caps[g] == 0 {
				return
			}
			if who[g] == nil {
				who[g] = make(map[string]bool)
			}
			who[g][node] = true
		}
		for n, gs := range a.Nodes {
			for _, g := range gs {
				add(n, g)
			}
		}
		for n, gs := range a.Revoked {
			for _, g := range gs {
				add(n, g)
			}
		}
		for g, ns := range who {
			if len(ns) > caps[g] && !reported[g] {
				reported[g] = true
				ids := slices.Sorted(maps.Keys(ns))
				var names []string
				for _, id := range ids {
					names = append(names, p.procName(id))
				}
				p.violate(violation{t: now(), groups: []string{g}, nodes: names,
					what: fmt.Sprintf("redis epoch %d grants capped group %s (max_nodes %d) to %d nodes (assign ∪ revoked): %v; assign=%v revoked=%v",
						a.Epoch, g, caps[g], len(ns), ids, only(a.Nodes, ids), only(a.Revoked, ids))})
			}
		}
	})
}

// recordSample appends the capped groups' committed state and the live
// nodes' held groups to redis.jsonl in the run's directory, for post-mortems.
func (p *pool) recordSample(ctx context.Context, a registry.Assignment, caps map[string]int) {
	nodes, _, err := p.hb.Live(ctx)
	if err != nil {
		return
	}
	type sample struct {
		T       int64               `json:"t"`
		Epoch   int64               `json:"epoch"`
		Assign  map[string][]string `json:"assign"`  // capped group -> nodes assigned it
		Held    map[string][]string `json:"held"`    // capped group -> live nodes reporting it held
		Revoked map[string][]string `json:"revoked"` // node -> revoked entries
		Live    int                 `json:"live"`
	}
	s := sample{T: now(), Epoch: a.Epoch, Assign: map[string][]string{}, Held: map[string][]string{}, Revoked: a.Revoked, Live: len(nodes)}
	for n, gs := range a.Nodes {
		for _, g := range gs {
			if caps[g] > 0 {
				s.Assign[g] = append(s.Assign[g], n)
			}
		}
	}
	for _, n := range nodes {
		for _, g := range n.Held {
			if caps[g] > 0 {
				s.Held[g] = append(s.Held[g], n.ID)
			}
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.samplesFile == nil {
		if p.samplesFile, err = os.Create(filepath.Join(p.h.dir, "redis.jsonl")); err != nil {
			return
		}
		p.t.Cleanup(func() { _ = p.samplesFile.Close() })
	}
	_, _ = p.samplesFile.Write(append(b, '\n'))
}

func only(m map[string][]string, ids []string) map[string][]string {
	out := make(map[string][]string)
	for _, id := range ids {
		out[id] = m[id]
	}
	return out
}

// procName is the name of the current incarnation of node id.
func (p *pool) procName(id string) string {
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	if pr := p.h.procs[id]; pr != nil {
		return pr.name()
	}
	return id
}

// checkWrites verifies invariant 4: every acknowledged group write is in
// Redis (a later write by the rebalancer — a drained group retired — may
// have moved the version on, never back).
func (p *pool) checkWrites(ctx context.Context) error {
	p.mu.Lock()
	model := make(map[string]expect, len(p.model))
	for k, v := range p.model {
		model[k] = *v
	}
	p.mu.Unlock()
	var errs []error
	checked := 0
	for name, e := range model {
		if !e.certain {
			continue
		}
		checked++
		g, err := p.get(ctx, name)
		switch {
		case e.deleted:
			if !errors.Is(err, registry.ErrNotFound) {
				errs = append(errs, fmt.Errorf("group %s: deleted (acknowledged) but Get = v%d %s, %v", name, g.Version, g.State, err))
			}
		case err != nil:
			errs = append(errs, fmt.Errorf("group %s: acknowledged v%d lost: %w", name, e.version, err))
		case g.Version < e.version:
			errs = append(errs, fmt.Errorf("group %s: acknowledged v%d, found v%d", name, e.version, g.Version))
		case g.Version == e.version && (g.State != e.state || !maps.Equal(g.Config, e.config)):
			errs = append(errs, fmt.Errorf("group %s v%d: acknowledged %s %v, found %s %v", name, e.version, e.state, e.config, g.State, g.Config))
		}
	}
	if checked == 0 {
		errs = append(errs, errors.New("no acknowledged write to check"))
	}
	return errors.Join(errs...)
}

// get reads a group, retrying connection errors for a few seconds: after a
// failover the test's own client needs a moment to find the new master.
func (p *pool) get(ctx context.Context, name string) (registry.Group, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, err := p.reg.Get(ctx, name)
		if err == nil || errors.Is(err, registry.ErrNotFound) || time.Now().After(deadline) {
			return g, err
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// settle waits (polling, up to limit) for invariant 3: the pool is
// balanced per docs/design.md (allocator.Inspect), every active group has
// exactly its target node count, the live nodes are exactly the running
// processes, and every running node's last report equals its committed
// groups at the registry's versions.
func (p *pool) settle(ctx context.Context, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(limit)
	var last error
	for {
		if last = p.settled(ctx); last == nil {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("not settled after %v: %w", limit, last)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

func (p *pool) settled(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := allocator.Inspect(rctx, p.reg, p.hb)
	if err != nil {
		return err
	}
	if !st.Balanced {
		return fmt.Errorf("epoch %d: not balanced (waiting %d)", st.Epoch, st.Waiting)
	}
	for _, g := range st.Groups {
		if g.State == string(registry.Active) && len(g.Nodes) != g.Target {
			return fmt.Errorf("epoch %d: group %s held by %d nodes, target %d", st.Epoch, g.Name, len(g.Nodes), g.Target)
		}
	}
	groups, err := p.reg.List(rctx)
	if err != nil {
		return err
	}
	version := make(map[string]int64)
	for _, g := range groups {
		version[g.Name] = g.Version
	}
	live := make(map[string][]string)
	for _, n := range st.Nodes {
		live[n.ID] = n.Groups
	}
	running := p.h.live()
	if len(running) != len(live) {
		return fmt.Errorf("epoch %d: %d live nodes in redis, %d processes running", st.Epoch, len(live), len(running))
	}
	for _, pr := range running {
		want, ok := live[pr.id]
		if !ok {
			return fmt.Errorf("epoch %d: %s runs but is not live in redis", st.Epoch, pr.name())
		}
		rs, err := readReports(pr)
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return fmt.Errorf("%s has not reported yet", pr.name())
		}
		r := rs[len(rs)-1]
		var wantGroups []string
		for _, g := range want {
			wantGroups = append(wantGroups, fmt.Sprintf("%s@v%d", g, version[g]))
		}
		if !slices.Equal(wantGroups, r.Groups) {
			return fmt.Errorf("epoch %d: %s reports %v (epoch %d), redis assigns %v", st.Epoch, pr.name(), r.Groups, r.Epoch, wantGroups)
		}
	}
	return nil
}

// randomLive picks a running, not frozen node.
func (p *pool) randomLive() *proc {
	var ok []*proc
	for _, pr := range p.h.live() {
		pr.mu.Lock()
		frozen := len(pr.stops) > 0 && pr.stops[len(pr.stops)-1].to == 0
		pr.mu.Unlock()
		if !frozen {
			ok = append(ok, pr)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return ok[p.rng.IntN(len(ok))]
}

// holderOf returns a running node whose committed groups include a capped
// group, and that group.
func (p *pool) holderOf(ctx context.Context) (*proc, string, error) {
	a, err := p.reg.Assignment(ctx)
	if err != nil {
		return nil, "", err
	}
	caps := p.capsCopy()
	for _, pr := range p.h.live() {
		for _, g := range a.Nodes[pr.id] {
			if caps[g] > 0 {
				return pr, g, nil
			}
		}
	}
	return nil, "", errors.New("no running node holds a capped group")
}

// waitReported polls until pr has reported holding a group.
func waitReported(pr *proc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		rs, err := readReports(pr)
		if err != nil {
			return err
		}
		if len(rs) > 0 && len(rs[len(rs)-1].Groups) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s reported no group within %v", pr.name(), limit)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
