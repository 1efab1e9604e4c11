package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCheckerLeaseOnKill: after the kill -9 of an exclusive holder, nobody
// may report its group before the holder's last beat + TTL (750 ms).
func TestCheckerLeaseOnKill(t *testing.T) {
	for _, tt := range []struct {
		name   string
		nextMS int
		fails  bool
	}{
		{"after the lease", 1000, false},
		{"before the lease ran out", 900, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRun(t)
			a := f.node("a", 0, "10:solo")
			a.killed, a.lastBeat = f.at(300), f.at(200)
			f.node("b", 0, "10:alpha", itoa(tt.nextMS)+":solo")
			vs, st := f.check(2000)
			assert.Equal(t, 1, st.leaseChecked)
			assert.Equal(t, int64(tt.nextMS-950)*int64(time.Millisecond), st.leaseMinMargin)
			if !tt.fails {
				assert.Empty(t, vs, whats(vs))
				return
			}
			require.Len(t, vs, 1, whats(vs))
			assert.Contains(t, vs[0].what, "capped group solo reported by b#1 600ms after the kill -9 of a#1, 50ms before its lease")
		})
	}
}

// TestCheckerLeaseOnKillSkips: a group the killed node had already dropped,
// a group capped above one, and an unknown last beat are not checked.
func TestCheckerLeaseOnKillSkips(t *testing.T) {
	f := newFakeRun(t)
	a := f.node("a", 0, "10:solo,pair", "250:pair")
	a.killed, a.lastBeat = f.at(300), f.at(200)
	c := f.node("c", 0, "10:pair")
	c.killed = f.at(300)
	f.node("b", 0, "10:alpha", "400:solo,pair")
	vs, st := f.check(2000)
	assert.Empty(t, vs, whats(vs))
	assert.Zero(t, st.leaseChecked)
}
