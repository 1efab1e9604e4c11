package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// beatNodes makes live nodes n1..nN in the default namespace.
func beatNodes(t *testing.T, s *redistest.Server, held map[string][]string, ids ...string) *heartbeat.Tracker {
	t.Helper()
	hb, err := heartbeat.New(s.Client(t), "default", heartbeat.DefaultConfig())
	require.NoError(t, err)
	for i, id := range ids {
		_, err := hb.Beat(t.Context(), heartbeat.Beat{Node: id, IP: "10.0.0." + string(rune('1'+i)), Held: held[id], Session: "test"})
		require.NoError(t, err)
	}
	return hb
}

func TestStatusNodeListRebalance(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	mustRun(t, url, "group", "add", "big", "--weight", "2", "--quota", "600/m")
	mustRun(t, url, "group", "add", "small")
	mustRun(t, url, "group", "add", "solo", "--max-nodes", "1")
	beatNodes(t, s, nil, "n1", "n2", "n3", "n4", "n5")

	var res allocator.Summary
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "rebalance", "-o", "json")), &res))
	assert.True(t, res.Changed)
	assert.Equal(t, int64(1), res.Epoch)
	assert.Equal(t, 5, res.Moved)
	out := mustRun(t, url, "rebalance")
	assert.Regexp(t, `^epoch 1: unchanged \(took [0-9.]+ms\)\n$`, out)

	var st allocator.Status
	raw := mustRun(t, url, "status", "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(raw), &st))
	assert.Equal(t, int64(1), st.Epoch)
	assert.True(t, st.Balanced)
	require.Len(t, st.Groups, 3)
	byName := map[string]allocator.GroupStatus{}
	for _, g := range st.Groups {
		byName[g.Name] = g
		assert.Len(t, g.Nodes, g.Target, g.Name)
	}
	// 5 nodes, weights 2/1/1 with solo capped at 1: one each, then big
	// (2/2 > 1/2) and big again (2/3 > 1/2).
	assert.Equal(t, 3, byName["big"].Target)
	assert.Equal(t, 1, byName["small"].Target)
	assert.Equal(t, 1, byName["solo"].Target)
	assert.Empty(t, st.Standby)
	var fields map[string]any
	require.NoError(t, json.Unmarshal([]byte(raw), &fields))
	for _, k := range []string{"epoch", "balanced", "groups", "nodes", "standby"} {
		assert.Contains(t, fields, k)
	}
	group0 := fields["groups"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "state", "weight", "max_nodes", "target", "nodes", "share", "demand", "wanted"} {
		assert.Contains(t, group0, k)
	}

	table := mustRun(t, url, "status")
	assert.Contains(t, table, "epoch 1  balanced yes  nodes 5  standby 0\n")
	assert.Regexp(t, `big\s+active\s+2\s+-\s+3/3\s+0%\s+0%\s+200/m\n`, table)
	assert.Regexp(t, `solo\s+active\s+1\s+1\s+1/1\s+-\s+-\s+1/1\n`, table)

	// node list: every node with its group.
	var nodes []allocator.NodeStatus
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "node", "list", "-o", "json")), &nodes))
	require.Len(t, nodes, 5)
	assert.Equal(t, "n1", nodes[0].ID)
	assert.Equal(t, "10.0.0.1", nodes[0].IP)
	assert.Len(t, nodes[0].Groups, 1)
	assert.WithinDuration(t, time.Now(), nodes[0].LastSeen, time.Minute)
	table = mustRun(t, url, "node", "list")
	assert.Regexp(t, `^ID\s+IP\s+GROUPS\s+DEMAND\s+LAST SEEN\nn1\s+10\.0\.0\.1\s+\S+\s+-\s+(now|\d+s ago)\n`, table)

	// group get names the holders.
	var view allocator.GroupView
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "group", "get", "big", "-o", "json")), &view))
	assert.ElementsMatch(t, byName["big"].Nodes, view.Nodes)

	// A sixth node joins: a new epoch.
	beatNodes(t, s, nil, "n1", "n2", "n3", "n4", "n5", "n6")
	mustRun(t, url, "rebalance")
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "status", "-o", "json")), &st))
	assert.Equal(t, int64(2), st.Epoch)
	assert.Contains(t, mustRun(t, url, "status"), "nodes 6")
}

func TestStatusStandbyAndEmpty(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	const plain = "secrets: stored in plain text in Redis (ALLOT_SECRET_KEYS encrypts them)\n"
	assert.Equal(t, "epoch 0  balanced yes  nodes 0  standby 0\nno groups (add one with 'allot group add NAME')\n"+plain, mustRun(t, url, "status"))
	assert.Equal(t, "no live nodes\n", mustRun(t, url, "node", "list"))
	assert.Equal(t, "no groups (add one with 'allot group add NAME')\n", mustRun(t, url, "group", "list"))
	assert.Equal(t, "[]\n", mustRun(t, url, "group", "list", "-o", "json"))

	mustRun(t, url, "group", "add", "only", "--max-nodes", "1")
	// Active groups and no node: "balanced" says nothing, unserved does.
	out := mustRun(t, url, "status")
	assert.Contains(t, out, "unserved: 1 active group(s) held by no node (no live nodes: start one, see 'allot node list'): only\n")
	var st allocator.Status
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "status", "-o", "json")), &st))
	assert.Equal(t, []string{"only"}, st.Unserved)

	beatNodes(t, s, nil, "a", "b")
	mustRun(t, url, "rebalance")
	out = mustRun(t, url, "status")
	assert.NotContains(t, out, "unserved")
	assert.Contains(t, out, "standby 1")
	assert.True(t, strings.HasSuffix(out, "standby: b\n"+plain) || strings.HasSuffix(out, "standby: a\n"+plain), out)
}

func TestGroupRetireWaitDrainTimeout(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	mustRun(t, url, "group", "add", "g")
	beatNodes(t, s, nil, "n1")
	mustRun(t, url, "rebalance")
	// The node reports it uses g and never releases it: only the drain
	// timeout retires g.
	beatNodes(t, s, map[string][]string{"n1": {"g"}}, "n1")
	start := time.Now()
	out := mustRun(t, url, "group", "retire", "g", "--wait", "--drain-timeout", "1s")
	assert.Contains(t, out, `group "g" retired`)
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
	assert.Equal(t, registry.Retired, getGroup(t, url, "g", false).State)
}

func TestClusterURL(t *testing.T) {
	c := redistest.StartCluster(t)
	url := c.URL()
	require.Contains(t, url, "addr=", "a cluster URL")
	seedPool(t, url)
	hb, err := heartbeat.New(c.Client(t), "default", heartbeat.DefaultConfig())
	require.NoError(t, err)
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		_, err := hb.Beat(t.Context(), heartbeat.Beat{Node: id, IP: "10.1.0.1", Session: "test"})
		require.NoError(t, err)
	}
	out := mustRun(t, url, "--namespace", "other", "group", "add", "elsewhere")
	assert.Contains(t, out, "added")
	mustRun(t, url, "rebalance")
	assert.Contains(t, mustRun(t, url, "status"), "epoch 1  balanced yes  nodes 4  standby 0")
	exported := mustRun(t, url, "export")
	assert.Equal(t, "no changes (3 groups unchanged)\n", mustRun(t, url, "import", writeFile(t, exported)))
	assert.Contains(t, mustRun(t, url, "--namespace", "other", "group", "list"), "elsewhere")
	assert.NotContains(t, mustRun(t, url, "group", "list"), "elsewhere")

	out2, _, stop := startWatch(t, url, "--from", "0", "-o", "json")
	require.Eventually(t, func() bool { return strings.Contains(out2.String(), `"type":"group.retiring"`) }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, exitOK, stop())
}
