package simulate_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/simulate"
	"github.com/allot-io/allot/registry"
)

// TestFleet: a fleet's nodes join with numbered IDs and spread IPs, hold
// the pool's groups, spend from their limits, and leave on Close.
func TestFleet(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	reg := registry.New(rdb, registry.WithNamespace("sim"))
	q := "6000/m"
	_, err := reg.Add(ctx, "g", registry.Change{Quota: &q}, "test")
	require.NoError(t, err)

	f, err := simulate.Start(ctx, rdb, simulate.Config{Count: 3, Namespace: "sim", Spend: 30})
	require.NoError(t, err)
	assert.Equal(t, 3, f.Nodes())
	hb, err := heartbeat.New(rdb, "sim", heartbeat.DefaultConfig())
	require.NoError(t, err)
	live, _, err := hb.Live(ctx)
	require.NoError(t, err)
	require.Len(t, live, 3)
	assert.Equal(t, []string{"sim-1", "sim-2", "sim-3"}, []string{live[0].ID, live[1].ID, live[2].ID})
	assert.Equal(t, "10.0.0.1", live[0].IP)
	require.Eventually(t, func() bool {
		made, _ := f.Calls()
		return made >= 3
	}, 10*time.Second, 20*time.Millisecond, "30 calls a second over 3 nodes")

	require.NoError(t, f.Close(ctx))
	live, _, err = hb.Live(ctx)
	require.NoError(t, err)
	assert.Empty(t, live, "every node left")
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []simulate.Config{{Count: 0}, {Count: simulate.MaxCount + 1}, {Count: 1, Spend: -1}, {Count: 1, Tokens: -1}} {
		assert.ErrorIs(t, c.Validate(), simulate.ErrInvalidConfig, "%+v", c)
	}
	assert.NoError(t, simulate.Config{Count: 1}.Validate())
	assert.Equal(t, "10.0.1.0", simulate.NodeIP(256))
}
