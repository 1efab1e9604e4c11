package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// A node that would join past the namespace's max_live_nodes is refused
// (not an outage: no cache, no backoff) and Start says why; the live node
// keeps its group.
func TestStartRefusedPastMaxLiveNodes(t *testing.T) {
	p := newPool(t)
	p.addGroup("g", registry.Change{Set: set("k", "v")})
	require.NoError(t, heartbeat.StoreMaxLiveNodes(context.Background(), p.rdb, "", 1))
	a := p.startClient("a")
	within(t, 5*time.Second, func() bool { return a.Assignment().Holds("g") }, "a holds g")

	b := p.newClient("b")
	ctx, cancel := context.WithTimeout(context.Background(), 3*a.o.heartbeat.Interval)
	defer cancel()
	err := b.Start(ctx)
	require.Error(t, err)
	assert.True(t, errors.Is(err, heartbeat.ErrTooManyNodes), "%v", err)
	assert.True(t, a.Assignment().Holds("g"))
}
