package client

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
)

func TestStartGetsAssignment(t *testing.T) {
	p := newPool(t)
	p.addGroup("alpha", registry.Change{Set: set("api_key", "k-alpha"), Quota: ptr("600/m")})

	c := p.startClient("n1")
	require.Eventually(t, func() bool { return c.Assignment().Holds("alpha") }, 2*time.Second, 5*time.Millisecond)

	a := c.Assignment()
	g, ok := a.Group("alpha")
	require.True(t, ok)
	assert.Equal(t, int64(1), g.Version)
	assert.Equal(t, 1.0, g.Share)
	assert.Equal(t, "600/m", g.Quota)
	v, ok := c.Config("api_key")
	assert.True(t, ok)
	assert.Equal(t, "k-alpha", v)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Close(ctx))
	assert.Empty(t, c.Assignment().Groups)
}

func TestShareIsTheFractionOfHolders(t *testing.T) {
	p := newPool(t)
	p.addGroup("shared", registry.Change{Set: set("api_key", "k"), Quota: ptr("600/m")})
	cs := p.startClients("s", 4)
	within(t, 5*time.Second, func() bool {
		for _, c := range cs {
			g, ok := c.Assignment().Group("shared")
			if !ok || g.Share != 0.25 {
				return false
			}
		}
		return true
	}, "four holders with a quarter each")
	closeAll(cs[:2])
	within(t, 5*time.Second, func() bool {
		for _, c := range cs[2:] {
			g, ok := c.Assignment().Group("shared")
			if !ok || g.Share != 0.5 {
				return false
			}
		}
		return true
	}, "two holders left with half each")
}
