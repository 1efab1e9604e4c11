package client

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// TestCappedReleaseWaitsForOnChange pins "release only after OnChange
// returns": the holder of a max_nodes=1 group is moved off it while its
// OnChange callback blocks. Until the callback returns, the holder must keep
// reporting the group as held, so no planner may grant it to the node that
// prefers it. The check does not rely on timing: it waits until the holder
// has acknowledged the revoke epoch in a beat (the beat that would carry a
// premature release), runs a rebalance itself, and reads the committed
// assignment. Then the callback returns and the grant must follow.
func TestCappedReleaseWaitsForOnChange(t *testing.T) {
	ctx := context.Background()
	p := newPool(t)
	p.addGroup("solo", registry.Change{Set: set("api_key", "only-one"), MaxNodes: ptr(1)})

	entered := make(chan struct{})
	release := make(chan struct{})
	var once, unblock sync.Once
	t.Cleanup(func() { unblock.Do(func() { close(release) }) }) // never leave Close hanging
	// The holder prefers a group added later: then a plan moves it off solo
	// (a preference for solo never takes solo from its live holder).
	holder := p.newClient("holder", WithPreferredGroup("wide"))
	holder.OnChange(func(old, new Assignment) {
		if old.Holds("solo") && !new.Holds("solo") {
			once.Do(func() { close(entered) })
			<-release
		}
	})
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, holder.Start(startCtx))
	within(t, 10*time.Second, func() bool { return holder.Assignment().Holds("solo") }, "holder holds solo")

	p.addGroup("wide", registry.Change{Set: set("api_key", "many")})
	taker := p.startClient("taker", WithPreferredGroup("solo"))
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the holder's OnChange never saw solo dropped")
	}

	// The revoke is committed: solo@E is in the holder's revoked entry.
	var revokedAt int64
	within(t, 5*time.Second, func() bool {
		a, err := p.reg.Assignment(ctx)
		require.NoError(t, err)
		for _, e := range a.Revoked["holder"] {
			if g, at, ok := strings.Cut(e, "@"); ok && g == "solo" {
				var err error
				revokedAt, err = strconv.ParseInt(at, 10, 64)
				require.NoError(t, err)
				return true
			}
		}
		return false
	}, "solo revoked from the holder")

	// The holder has beaten with ack >= E: this is the beat that would report
	// solo released if the release did not wait for the callback.
	hb := p.hbTracker()
	var rec heartbeat.Node
	within(t, 5*time.Second, func() bool {
		nodes, _, err := hb.Live(ctx)
		require.NoError(t, err)
		for _, n := range nodes {
			if n.ID == "holder" {
				rec = n
			}
		}
		return rec.Ack >= revokedAt
	}, "the holder acknowledged the revoke epoch")
	assert.Contains(t, rec.Held, "solo", "OnChange has not returned: solo must still be reported held")

	// Whoever plans now must not grant solo to the taker.
	rb := allocator.NewRebalancer(p.rdb, p.reg, hb, allocator.WithPlanner("test"))
	within(t, 5*time.Second, func() bool {
		_, err := rb.Run(ctx)
		if errors.Is(err, allocator.ErrLocked) || errors.Is(err, registry.ErrStaleEpoch) {
			return false
		}
		require.NoError(t, err)
		return true
	}, "a rebalance ran")
	a, err := p.reg.Assignment(ctx)
	require.NoError(t, err)
	assert.NotContains(t, a.Nodes["taker"], "solo", "solo granted while the holder's OnChange still runs")
	assert.True(t, slices.ContainsFunc(a.Revoked["holder"], func(e string) bool { return strings.HasPrefix(e, "solo@") }),
		"the holder's revoke is still pending: %v", a.Revoked)
	assert.False(t, taker.Assignment().Holds("solo"))

	// The callback returns: the release is reported and the grant follows.
	unblock.Do(func() { close(release) })
	within(t, 10*time.Second, func() bool {
		a, err := p.reg.Assignment(ctx)
		require.NoError(t, err)
		return slices.Contains(a.Nodes["taker"], "solo") && len(a.Revoked["holder"]) == 0
	}, "solo granted to the taker after the release")
	within(t, 10*time.Second, func() bool { return taker.Assignment().Holds("solo") }, "the taker holds solo")
}
