package allocator

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
)

// TestClaimsCannotSteal runs issue 21's two attacks from a node with a valid
// session through real beats and rebalances: a beat claiming a capped group
// it was never given does not keep that group from its planned holder, and a
// preference for a capped group does not take it from its live holder.
func TestClaimsCannotSteal(t *testing.T) {
	for _, topo := range topologies {
		t.Run(topo.name, func(t *testing.T) {
			ctx := context.Background()

			t.Run("held claim on a group never given", func(t *testing.T) {
				p := newPool(t, topo.rdb(t))
				p.addGroup(t, "key4", 1, 1)
				p.addGroup(t, "other", 1, 0)
				// The attacker prefers other, so the plan gives key4 to n2;
				// every beat of the attacker claims key4 held.
				attack := heartbeat.Beat{Node: "n1", Session: "s1", Preferred: "other", Held: []string{"key4"}}
				p.beat(t, attack)
				p.beat(t, heartbeat.Beat{Node: "n2", Session: "s2"})
				for range 3 {
					_, err := p.rb.Run(ctx)
					require.NoError(t, err)
					r := p.beat(t, attack)
					assert.Equal(t, []string{"key4"}, r.Ignored)
				}
				a := p.assignment(t)
				assert.Equal(t, []string{"key4"}, a.Nodes["n2"], "key4 served by its planned holder")
				assert.Empty(t, a.Revoked["n1"], "no revoke for a group n1 was never given")
			})

			t.Run("preference for a held capped group", func(t *testing.T) {
				p := newPool(t, topo.rdb(t))
				p.addGroup(t, "key4", 1, 1)
				p.addGroup(t, "other", 1, 0)
				p.beat(t, heartbeat.Beat{Node: "n1", Session: "s1"})
				_, err := p.rb.Run(ctx)
				require.NoError(t, err)
				holder := "n1"
				p.beat(t, heartbeat.Beat{Node: "n2", Session: "s2"})
				_, err = p.rb.Run(ctx)
				require.NoError(t, err)
				a := p.assignment(t)
				if a.Nodes["n2"] != nil && a.Nodes["n2"][0] == "key4" {
					holder = "n2"
				}
				require.Equal(t, []string{"key4"}, a.Nodes[holder])
				p.beat(t, heartbeat.Beat{Node: holder, Session: "s" + holder[1:], Held: []string{"key4"}, Ack: a.Epoch})

				// A third node asks for key4 on every beat.
				for range 3 {
					p.beat(t, heartbeat.Beat{Node: "n9", Session: "s9", Preferred: "key4"})
					_, err := p.rb.Run(ctx)
					require.NoError(t, err)
					a = p.assignment(t)
					assert.Equal(t, []string{"key4"}, a.Nodes[holder], "the live holder keeps key4")
					assert.Empty(t, a.Revoked[holder])
					assert.NotContains(t, a.Nodes["n9"], "key4")
				}
			})
		})
	}
}
