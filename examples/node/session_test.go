package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
)

// exampleNode is one running example binary.
type exampleNode struct {
	cmd    *exec.Cmd
	stdout *testlog.Buffer
	stderr *testlog.Buffer
	done   chan error
}

func runExample(t *testing.T, bin string, env ...string) *exampleNode {
	t.Helper()
	n := &exampleNode{cmd: exec.Command(bin), stdout: &testlog.Buffer{}, stderr: &testlog.Buffer{}, done: make(chan error, 1)}
	n.cmd.Env = append(os.Environ(), env...)
	out, err := n.cmd.StdoutPipe()
	require.NoError(t, err)
	n.cmd.Stderr = n.stderr
	require.NoError(t, n.cmd.Start())
	t.Cleanup(func() { _ = n.cmd.Process.Kill() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			_, _ = n.stdout.Write(append(sc.Bytes(), '\n'))
		}
		n.done <- n.cmd.Wait()
	}()
	return n
}

// The attack of issue 10: two example nodes started with one ALLOT_NODE_ID
// (a copied config, a reused pod name) for a max_nodes=1 group. Only one may
// use the key; the other waits, says why, and takes over when it leaves.
func TestSameNodeIDTwoProcesses(t *testing.T) {
	s := redistest.Start(t)
	reg := registry.New(s.Client(t))
	_, err := reg.Add(context.Background(), "solo", registry.Change{Set: map[string]string{"api_key": "sk-only-one"}, MaxNodes: new(1)}, "test")
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "node")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	env := []string{"ALLOT_REDIS_URL=" + s.URL(), "ALLOT_NODE_ID=copied", "ALLOT_NODE_IP=10.0.0.1",
		"ALLOT_HEARTBEAT_INTERVAL=100ms", "ALLOT_HEARTBEAT_TTL=300ms"}

	first := runExample(t, bin, env...)
	require.Eventually(t, func() bool { return strings.Contains(first.stdout.String(), "groups=solo@v1") },
		10*time.Second, 10*time.Millisecond, "first never got solo")
	second := runExample(t, bin, env...)
	require.Eventually(t, func() bool { return strings.Contains(second.stderr.String(), "node id in use by another process") },
		10*time.Second, 10*time.Millisecond, "second never said why it waits; stderr:\n%s", second.stderr)
	assert.NotContains(t, second.stdout.String(), "solo", "both processes used the exclusive key")

	require.NoError(t, first.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-first.done)
	require.Eventually(t, func() bool { return strings.Contains(second.stdout.String(), "groups=solo@v1") },
		10*time.Second, 10*time.Millisecond, "second never took over; stderr:\n%s", second.stderr)
	assert.Equal(t, 1, strings.Count(second.stderr.String(), "node id in use"), "said once")
	require.NoError(t, second.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-second.done)
}
