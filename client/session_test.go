package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
)

// holders records, from each client's own OnChange view, which clients hold
// one group — by client, not by node ID, since here two clients share an ID
// — and every instant two of them held it at once.
type holders struct {
	group string

	mu         sync.Mutex
	now        map[*Client]string
	violations []string
	grants     int
}

func newHolders(group string) *holders {
	return &holders{group: group, now: map[*Client]string{}}
}

func (h *holders) watch(c *Client, name string) {
	c.OnChange(func(old, new Assignment) {
		had, has := old.Holds(h.group), new.Holds(h.group)
		h.mu.Lock()
		defer h.mu.Unlock()
		switch {
		case !had && has:
			if len(h.now) > 0 {
				h.violations = append(h.violations, fmt.Sprintf("%s took %s while %v held it", name, h.group, h.now))
			}
			h.now[c] = name
			h.grants++
		case had && !has:
			delete(h.now, c)
		}
	})
}

func (h *holders) holds(c *Client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.now[c]
	return ok
}

func (h *holders) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Empty(t, h.violations)
}

// A second process started with a live node's ID waits instead of sharing
// it: Start fails when its ctx ends (ErrNodeIDInUse, logged once), it never
// holds the exclusive group, and a restart after Close joins at once.
func TestSameNodeIDNeverHeldTwice(t *testing.T) {
	p := newPool(t)
	p.addGroup("solo", registry.Change{Set: set("api_key", "only-one"), MaxNodes: ptr(1)})
	h := newHolders("solo")

	first := p.newClient("dup")
	h.watch(first, "first")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, first.Start(ctx))
	within(t, 5*time.Second, func() bool { return h.holds(first) }, "first holds solo")

	var logs testlog.Buffer
	second := p.newClient("dup", WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	h.watch(second, "second")
	sctx, scancel := context.WithTimeout(context.Background(), 4*fastHB.TTL)
	err := second.Start(sctx)
	scancel()
	require.ErrorIs(t, err, heartbeat.ErrNodeIDInUse)
	require.ErrorIs(t, err, ErrNoAssignment)
	assert.Equal(t, 1, strings.Count(logs.String(), "node id in use by another process"), logs.String())
	assert.Contains(t, logs.String(), "node=dup")
	assert.Contains(t, logs.String(), "held_for_at_least=")
	assert.True(t, h.holds(first), "the first process keeps the group")
	assert.Empty(t, second.Assignment().Groups)

	// A restart after Close: the next process with the ID joins at once.
	third := p.newClient("dup")
	h.watch(third, "third")
	started := make(chan error, 1)
	go func() { started <- third.Start(ctx) }()
	within(t, 5*time.Second, func() bool {
		third.mu.Lock()
		defer third.mu.Unlock()
		return errors.Is(third.lastErr, heartbeat.ErrNodeIDInUse)
	}, "third refused while first is live")
	select {
	case err := <-started:
		t.Fatalf("third started while first was live: %v", err)
	default:
	}
	closed := time.Now()
	require.NoError(t, first.Close(ctx))
	require.NoError(t, <-started)
	took := time.Since(closed)
	assert.Less(t, took, bound(2*fastHB.Interval), "restart after Close")
	within(t, 5*time.Second, func() bool { return h.holds(third) }, "third holds solo")
	h.check(t)
	t.Logf("restart after Close joined in %v", took)
}

// A process that stops beating without Close (kill -9) loses its ID within
// one TTL; a stalled one that comes back finds its ID taken, stops using
// every group and cannot remove the new owner.
func TestSameNodeIDAfterKill(t *testing.T) {
	p := newPool(t)
	p.addGroup("solo", registry.Change{Set: set("api_key", "only-one"), MaxNodes: ptr(1)})
	p.addGroup("wide", registry.Change{Set: set("api_key", "many")})
	h := newHolders("solo")

	old := p.newClient("dup")
	h.watch(old, "old")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, old.Start(ctx))
	within(t, 5*time.Second, func() bool { return h.holds(old) && len(old.Assignment().Groups) == 2 }, "old holds both groups")

	old.pause() // beats stop, as after kill -9
	killed := time.Now()
	next := p.newClient("dup")
	h.watch(next, "next")
	require.NoError(t, next.Start(ctx))
	took := time.Since(killed)
	assert.Less(t, took, bound(fastHB.TTL+fastHB.Interval), "join after a kill")
	within(t, 5*time.Second, func() bool { return h.holds(next) }, "next holds solo")
	t.Logf("join after kill took %v (TTL %v)", took, fastHB.TTL)

	// The stalled process comes back: refused, it drops every group
	// (uncapped ones too: they are the new owner's now).
	old.resume()
	within(t, 5*time.Second, func() bool { return len(old.Assignment().Groups) == 0 }, "old dropped its groups")
	require.NoError(t, old.Close(ctx), "closing a displaced client is no error")
	nodes, _, err := p.hbTracker().Live(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 1, "old's Close must not remove next")
	assert.Equal(t, "dup", nodes[0].ID)
	assert.True(t, h.holds(next))
	h.check(t)
}

// A node IP that does not parse is refused by New, before any I/O.
func TestNewRefusesBadIP(t *testing.T) {
	rdb := newPool(t).rdb
	for _, ip := range []string{"not-an-ip", "10.0.0.256", "10.0.0.1:80", "10.0.0.1\t"} {
		_, err := New(rdb, WithNodeID("n1"), WithIP(ip))
		assert.ErrorIs(t, err, ErrInvalidOption, ip)
		assert.ErrorIs(t, err, heartbeat.ErrInvalidNode, ip)
	}
	_, err := New(rdb, WithNodeID("n1"), WithIP("2001:db8::1"))
	assert.NoError(t, err)
}
