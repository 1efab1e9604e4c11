package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The checker's own tests: hand-written histories that must (or must not)
// break each invariant, so a green chaos run means something.

// fakeRun builds a harness with no processes; at(ms) is a time in it.
type fakeRun struct {
	t    *testing.T
	h    *harness
	base int64
}

func newFakeRun(t *testing.T) *fakeRun {
	start := time.Now().Add(-time.Minute)
	return &fakeRun{t: t, base: start.UnixNano(), h: &harness{
		t: t, dir: t.TempDir(), hb: fast, start: start,
		procs: make(map[string]*proc), incs: make(map[string]int),
	}}
}

func (f *fakeRun) at(ms int) int64 { return f.base + int64(ms)*int64(time.Millisecond) }

// node adds a process spawned at ms whose reports are (ms, groups...) pairs
// given as "ms:g1,g2".
func (f *fakeRun) node(id string, spawned int, reports ...string) *proc {
	p := &proc{id: id, inc: 1, spawned: f.at(spawned), done: make(chan struct{})}
	p.report = filepath.Join(f.h.dir, id+".jsonl")
	p.errPath = filepath.Join(f.h.dir, id+".stderr")
	var b strings.Builder
	for _, r := range reports {
		ms, gs, _ := strings.Cut(r, ":")
		var n int
		for _, c := range ms {
			n = n*10 + int(c-'0')
		}
		groups := []string{}
		for _, g := range strings.Split(gs, ",") {
			if g != "" {
				groups = append(groups, g+"@v1")
			}
		}
		line, err := json.Marshal(report{T: f.at(n), Node: id, Epoch: 1, Groups: groups, Goroutines: 10})
		require.NoError(f.t, err)
		b.Write(append(line, '\n'))
	}
	require.NoError(f.t, os.WriteFile(p.report, []byte(b.String()), 0o600))
	f.h.all = append(f.h.all, p)
	f.h.procs[id] = p
	return p
}

func (f *fakeRun) check(untilMS int) ([]violation, stats) {
	c, err := newChecker(f.h, map[string]int{"solo": 1, "pair": 2}, []string{"alpha", "solo", "pair"}, nil)
	require.NoError(f.t, err)
	c.until = f.at(untilMS)
	return c.run()
}

func whats(vs []violation) string {
	var out []string
	for _, v := range vs {
		out = append(out, v.what)
	}
	return strings.Join(out, "\n")
}

func TestCheckerCapOverlap(t *testing.T) {
	f := newFakeRun(t)
	f.node("a", 0, "10:solo", "500:alpha")
	f.node("b", 0, "10:alpha", "400:solo")
	vs, _ := f.check(1000)
	require.Len(t, vs, 1, whats(vs))
	assert.Contains(t, vs[0].what, "capped group solo (max_nodes 1) held by 2 nodes")
	assert.Equal(t, f.at(400), vs[0].t)
	c, err := newChecker(f.h, map[string]int{"solo": 1}, nil, nil)
	require.NoError(t, err)
	assert.Contains(t, c.history(vs[0]), "b#1 report epoch=1 groups=solo@v1")
}

func TestCheckerCapHandoffInOrder(t *testing.T) {
	f := newFakeRun(t)
	f.node("a", 0, "10:solo", "500:alpha")
	f.node("b", 0, "10:alpha,pair", "501:solo,pair")
	f.node("c", 0, "10:alpha,pair")
	vs, st := f.check(1000)
	assert.Empty(t, vs, whats(vs))
	assert.Equal(t, 7, st.moves)
}

func TestCheckerKilledHolderEndsAtKill(t *testing.T) {
	f := newFakeRun(t)
	a := f.node("a", 0, "10:solo")
	a.killed = f.at(300)
	f.node("b", 0, "10:alpha", "900:solo")
	vs, st := f.check(1000)
	assert.Empty(t, vs, whats(vs))
	assert.Equal(t, []int64{f.at(900) - f.at(300)}, st.reassignKill)
}

func TestCheckerReassignTooSlow(t *testing.T) {
	f := newFakeRun(t)
	a := f.node("a", 0, "10:solo")
	a.killed = f.at(300)
	f.node("b", 0, "10:alpha", "1700:solo")
	vs, _ := f.check(2000)
	require.Len(t, vs, 1, whats(vs))
	assert.Contains(t, vs[0].what, "group solo took 1.4s to be held again after kill of a#1")
}

func TestCheckerZombie(t *testing.T) {
	for _, tt := range []struct {
		name   string
		dropMS int
		fails  bool
	}{
		{"drops at once", 2005, false},
		{"keeps it past the lease", 2700, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRun(t)
			z := f.node("z", 0, "10:solo", itoa(tt.dropMS)+":alpha")
			z.stops = []span{{f.at(100), f.at(2000)}}
			f.node("b", 0, "10:alpha", "1000:solo")
			vs, st := f.check(3000)
			require.Len(t, st.zombieReaction, 1)
			assert.Equal(t, int64(tt.dropMS-2000)*int64(time.Millisecond), st.zombieReaction[0])
			if tt.fails {
				require.Len(t, vs, 1, whats(vs))
				assert.Contains(t, vs[0].what, "capped group solo")
			} else {
				assert.Empty(t, vs, whats(vs))
			}
		})
	}
}

func TestCheckerSupplyGap(t *testing.T) {
	f := newFakeRun(t)
	f.node("a", 0, "10:alpha", "1000:", "2500:alpha")
	f.node("b", 0, "10:alpha", "1000:", "1900:alpha")
	vs, st := f.check(3000)
	require.Len(t, vs, 1, whats(vs))
	assert.Contains(t, vs[0].what, "node a#1 held no group for 1.5s")
	assert.Equal(t, f.at(2500)-f.at(1000), st.maxGap)
}

func TestCheckerSupplyGapDuringOutageExempt(t *testing.T) {
	f := newFakeRun(t)
	f.node("a", 0, "10:alpha", "1000:", "2500:alpha")
	f.h.outages = []span{{f.at(900), f.at(1800)}}
	vs, _ := f.check(3000)
	assert.Empty(t, vs, whats(vs))
}

func TestCheckerNeverSupplied(t *testing.T) {
	f := newFakeRun(t)
	f.node("a", 0)
	vs, _ := f.check(1500)
	require.Len(t, vs, 1, whats(vs))
	assert.Contains(t, vs[0].what, "node a#1 held no group for 1.5s")
}

func TestCheckerCrashAndGoroutines(t *testing.T) {
	f := newFakeRun(t)
	a := f.node("a", 0, "10:alpha")
	require.NoError(t, os.WriteFile(a.errPath, []byte("panic: boom\n\ngoroutine 1 [running]:\n"), 0o600))
	b := f.node("b", 0)
	line, err := json.Marshal(report{T: f.at(10), Node: "b", Groups: []string{"alpha@v1"}, Goroutines: goroutineLimit + 1})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(b.report, append(line, '\n'), 0o600))
	vs, _ := f.check(500)
	require.Len(t, vs, 2, whats(vs))
	assert.Contains(t, whats(vs), `"panic:" in stderr`)
	assert.Contains(t, whats(vs), "goroutines (limit 100): leak")
}

func TestReadReportsIgnoresTornLastLine(t *testing.T) {
	f := newFakeRun(t)
	a := f.node("a", 0, "10:alpha")
	fh, err := os.OpenFile(a.report, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fh.WriteString(`{"t":12,"node":"a","gro`)
	require.NoError(t, err)
	require.NoError(t, fh.Close())
	rs, err := readReports(a)
	require.NoError(t, err)
	assert.Len(t, rs, 1)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
