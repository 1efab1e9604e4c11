package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
)

// liveNodes is `allot node list -o json` against url.
func liveNodes(t *testing.T, url string) []allocator.NodeStatus {
	t.Helper()
	var nodes []allocator.NodeStatus
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "node", "list", "-o", "json")), &nodes))
	return nodes
}

// TestNodeSimulate: `allot node simulate` runs real nodes that take every
// group and spend from their limits until its context ends (SIGINT in the
// binary); then they leave, and the pool has no node left at once — a
// leave, not a reap after the TTL.
func TestNodeSimulate(t *testing.T) {
	url := redistest.Start(t).URL()
	mustRun(t, url, "group", "add", "search", "--quota", "600/m")
	mustRun(t, url, "group", "add", "maps", "--quota", "600/m")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testlog.Buffer
	code := make(chan int, 1)
	go func() {
		code <- execute(ctx, []string{"--redis", url, "node", "simulate", "--count", "12", "--spend", "20/s", "--prefix", "t-"},
			env{stdout: &out, stderr: &errb, getenv: testEnv})
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "12 nodes running") }, 30*time.Second, 20*time.Millisecond, errb.String())
	assert.Equal(t, "allot node simulate: 12 nodes running in namespace default, spending 20/s; Ctrl-C makes them leave\n", out.String())

	nodes := liveNodes(t, url)
	require.Len(t, nodes, 12)
	assert.Equal(t, "t-01", nodes[0].ID)
	held := map[string]int{}
	for _, n := range nodes {
		for _, g := range n.Groups {
			held[g]++
		}
	}
	assert.Equal(t, map[string]int{"search": 6, "maps": 6}, held)
	// They spend: calls show up in the groups' usage.
	require.Eventually(t, func() bool {
		var u []struct {
			Requests int64 `json:"requests"`
		}
		require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "group", "usage", "search", "-o", "json")), &u))
		return len(u) > 0 && u[len(u)-1].Requests > 0
	}, 10*time.Second, 50*time.Millisecond)

	cancel()
	select {
	case c := <-code:
		assert.Equal(t, exitOK, c, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("simulate did not stop")
	}
	assert.Contains(t, out.String(), "allot node simulate: 12 nodes left;")
	assert.Empty(t, liveNodes(t, url), "every node left")
	opts, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	evs, err := registry.New(rdb).RecentEvents(context.Background(), 100, "")
	require.NoError(t, err)
	left := 0
	for _, e := range evs {
		if e.Type == registry.EventNodeLeft {
			left++
		}
	}
	assert.Equal(t, 12, left, "12 node.left events, no reaps")
}

// TestNodeSimulateFlags: bad flags are usage errors that start nothing.
func TestNodeSimulateFlags(t *testing.T) {
	url := redistest.Start(t).URL()
	for args, want := range map[string]string{
		"--count 0":                   "invalid --count 0: want 1..10000",
		"--count 10001":               "invalid --count 10001: want 1..10000",
		"--count 2 --spend 5":         `invalid --spend "5": want a rate of calls like 50/s or 600/m`,
		"--count 2 --spend 5/s,6/m":   `invalid --spend "5/s,6/m": want a rate of calls like 50/s or 600/m`,
		"--count 2 --spend 5tokens/s": `invalid --spend "5tokens/s": want a rate of calls like 50/s or 600/m`,
		"--count 2 --tokens -1":       "invalid --tokens -1: want 0..1000000000",
	} {
		_, errOut, code := runCLI(t, url, append([]string{"node", "simulate"}, strings.Fields(args)...)...)
		assert.Equal(t, exitUsage, code, args)
		assert.Equal(t, "allot: "+want, oneStderrLine(t, errOut), args)
	}
	_, errOut, code := runCLI(t, url, "node", "simulate")
	assert.Equal(t, exitUsage, code)
	assert.Equal(t, "allot: --count is required: how many nodes to run", oneStderrLine(t, errOut))
	assert.Empty(t, liveNodes(t, url))
}

// TestBinaryNodeSimulateLeavesOnSIGINT: the binary's nodes leave on SIGINT
// and it exits 0.
func TestBinaryNodeSimulateLeavesOnSIGINT(t *testing.T) {
	url := redistest.Start(t).URL()
	mustRun(t, url, "group", "add", "g")
	cmd := exec.Command(binary, "node", "simulate", "--count", "5", "--redis", url)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "USER=bin-tester"}
	var out, errb testlog.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "5 nodes running") }, 30*time.Second, 20*time.Millisecond, errb.String())
	require.Len(t, liveNodes(t, url), 5)

	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	select {
	case err := <-done:
		assert.NoError(t, err, "exit 0 on SIGINT; stderr %q", errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("simulate ignored SIGINT")
	}
	assert.Empty(t, liveNodes(t, url), "the nodes left")
	assert.Contains(t, out.String(), "5 nodes left")
}
