package bench

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var strategies = []Strategy{Allot{}, Sticky{}, BoundedHash{}}

// holders maps each group to the nodes holding it.
func holders(a Assignment) map[string][]string {
	h := map[string][]string{}
	for n, gs := range a {
		for _, g := range gs {
			h[g] = append(h[g], n)
		}
	}
	return h
}

func TestEveryStrategyCoversEveryGroupOnce(t *testing.T) {
	groups, nodes := Names("g", 200), Names("n", 17)
	for _, s := range strategies {
		t.Run(s.Name(), func(t *testing.T) {
			a, err := s.Plan(groups, nodes, nil)
			require.NoError(t, err)
			h := holders(a)
			require.Len(t, h, len(groups))
			for g, ns := range h {
				assert.Len(t, ns, 1, "group %s", g)
			}
			// After one node leaves, its groups must move and land on live nodes.
			left := nodes[3]
			next, err := s.Plan(groups, append(append([]string(nil), nodes[:3]...), nodes[4:]...), a)
			require.NoError(t, err)
			assert.NotContains(t, next, left)
			assert.Len(t, holders(next), len(groups))
			assert.GreaterOrEqual(t, Moved(a, next), len(a[left]))
		})
	}
}

func TestStickyAndAllotAreBalanced(t *testing.T) {
	groups, nodes := Names("g", 500), Names("n", 23)
	for _, s := range []Strategy{Allot{}, Sticky{}} {
		a, err := s.Plan(groups, nodes, nil)
		require.NoError(t, err)
		assert.LessOrEqual(t, Spread(a, nodes), 1, s.Name())
	}
}

func TestStickyUserDataIsReadBack(t *testing.T) {
	// If sarama could not decode our user data it would plan from scratch and
	// move far more than the leaving node's groups.
	groups, nodes := Names("g", 300), Names("n", 10)
	a, err := Sticky{}.Plan(groups, nodes, nil)
	require.NoError(t, err)
	next, err := Sticky{}.Plan(groups, nodes[1:], a)
	require.NoError(t, err)
	assert.Equal(t, len(a[nodes[0]]), Moved(a, next), "only the leaver's groups move")
}

// BenchmarkStrategies reports, per strategy and size, the time of one plan
// from scratch, after one node leaves and after one node joins, with the
// groups moved (moved/op) and the load spread (spread) of the result.
func BenchmarkStrategies(b *testing.B) {
	for _, size := range []struct{ nodes, groups int }{{10, 100}, {100, 1000}, {1000, 10000}} {
		groups, nodes := Names("g", size.groups), Names("n", size.nodes)
		for _, s := range strategies {
			base, err := s.Plan(groups, nodes, nil)
			require.NoError(b, err)
			cases := []struct {
				name  string
				nodes []string
				prev  Assignment
			}{
				{"scratch", nodes, nil},
				{"leave", nodes[1:], base},
				{"join", append(append([]string(nil), nodes...), "n-new"), base},
			}
			for _, c := range cases {
				b.Run(fmt.Sprintf("%dx%d/%s/%s", size.nodes, size.groups, s.Name(), c.name), func(b *testing.B) {
					var next Assignment
					for b.Loop() {
						next, err = s.Plan(groups, c.nodes, c.prev)
						if err != nil {
							b.Fatal(err)
						}
					}
					if c.prev != nil {
						b.ReportMetric(float64(Moved(c.prev, next)), "moved/op")
					}
					b.ReportMetric(float64(Spread(next, c.nodes)), "spread")
				})
			}
		}
	}
}
