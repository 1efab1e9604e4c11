package redistest

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

// Topologies runs test twice, as the subtests "standalone" (on a new
// redis-server) and "cluster" (on a new 3-master Cluster), each with a
// client of its own. Tests of a Lua script use it: every script must work
// unchanged on both, its keys sharing one hash tag.
func Topologies(t *testing.T, test func(t *testing.T, rdb redis.UniversalClient)) {
	t.Helper()
	t.Run("standalone", func(t *testing.T) { test(t, Start(t).Client(t)) })
	t.Run("cluster", func(t *testing.T) { test(t, StartCluster(t).Client(t)) })
}
