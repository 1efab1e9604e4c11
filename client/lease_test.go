package client

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
)

// TestHealthFollowsRedis: Health says when Redis is away and when the lease
// is lost, and recovers; Done closes only with Close.
func TestHealthFollowsRedis(t *testing.T) {
	p := newPool(t)
	p.addGroup("g1", registry.Change{})
	c := p.startClient("n1")
	h := c.Health()
	assert.True(t, h.Connected)
	assert.True(t, h.LeaseValid)
	assert.NoError(t, h.Err)
	assert.Equal(t, h.LastBeat.Add(fastHB.TTL), h.LeaseUntil)

	p.s.Kill(t)
	require.Eventually(t, func() bool { h := c.Health(); return !h.Connected && h.Err != nil }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return !c.Health().LeaseValid }, 10*time.Second, 10*time.Millisecond)
	select {
	case <-c.Done():
		t.Fatal("Done closed without Close")
	default:
	}

	p.s.Restart(t)
	require.Eventually(t, func() bool { h := c.Health(); return h.Connected && h.LeaseValid }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, c.Close(context.Background()))
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}
