package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
)

// exclusive records, from the nodes' own OnChange views, who holds one
// group, and counts any instant where two nodes hold it.
type exclusive struct {
	group string

	mu         sync.Mutex
	holders    map[string]bool
	violations []string
	grants     int
}

func (e *exclusive) watch(c *Client) {
	c.OnChange(func(old, new Assignment) {
		had, has := old.Holds(e.group), new.Holds(e.group)
		e.mu.Lock()
		defer e.mu.Unlock()
		switch {
		case !had && has:
			if len(e.holders) > 0 {
				e.violations = append(e.violations, fmt.Sprintf("%s took %s while %v held it", c.NodeID(), e.group, e.holders))
			}
			e.holders[c.NodeID()] = true
			e.grants++
		case had && !has:
			delete(e.holders, c.NodeID())
		}
	})
}

func (e *exclusive) holder() (string, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id := range e.holders {
		return id, e.grants
	}
	return "", e.grants
}

// TestCappedGroupNeverHeldTwice forces a max_nodes=1 group to move again and
// again — holder closes, holder freezes past its lease (and later comes
// back), a new node prefers the group — and checks from the nodes' own
// OnChange views that no two nodes ever hold it at once.
func TestCappedGroupNeverHeldTwice(t *testing.T) {
	const moves = 12
	p := newPool(t)
	p.addGroup("solo", registry.Change{Set: set("api_key", "only-one"), MaxNodes: ptr(1)})
	p.addGroup("wide", registry.Change{Set: set("api_key", "many")})
	e := &exclusive{group: "solo", holders: map[string]bool{}}

	byID := map[string]*Client{}
	seq := 0
	start := func(opts ...Option) *Client {
		seq++
		c := p.newClient(fmt.Sprintf("x%02d", seq), opts...)
		e.watch(c)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, c.Start(ctx))
		byID[c.NodeID()] = c
		return c
	}
	for range 3 {
		start()
	}
	var frozen []*Client
	for i := range moves {
		var id string
		var grants int
		within(t, 10*time.Second, func() bool { id, grants = e.holder(); return id != "" }, "solo held")
		h := byID[id]
		switch i % 3 {
		case 0: // graceful leave
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			require.NoError(t, h.Close(ctx))
			cancel()
			delete(byID, id)
			start()
		case 1: // stalls past its lease; comes back later
			h.pause()
			frozen = append(frozen, h)
		case 2: // someone else asks for it
			start(WithPreferredGroup("solo"))
		}
		within(t, 10*time.Second, func() bool {
			now, g := e.holder()
			return now != "" && now != id && g > grants
		}, fmt.Sprintf("move %d: solo moved away from %s", i, id))
		for _, f := range frozen {
			f.resume() // rejoins: must not take solo back while another holds it
		}
		frozen = nil
	}
	// Let the last moves settle, then check.
	within(t, 5*time.Second, func() bool { id, _ := e.holder(); return id != "" }, "solo held at the end")
	e.mu.Lock()
	defer e.mu.Unlock()
	assert.Empty(t, e.violations)
	assert.GreaterOrEqual(t, e.grants, moves+1)
	t.Logf("solo granted %d times across %d forced moves", e.grants, moves)
}
