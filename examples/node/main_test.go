package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// TestNodePrintsChangesAndLeavesOnSIGTERM builds the example, runs it against
// a real Redis with only ALLOT_* set, and checks its output and exit code.
func TestNodePrintsChangesAndLeavesOnSIGTERM(t *testing.T) {
	s := redistest.Start(t)
	reg := registry.New(s.Client(t))
	ctx := context.Background()
	_, err := reg.Add(ctx, "alpha", registry.Change{Set: map[string]string{"api_key": "sk-secret-value"}}, "test")
	require.NoError(t, err)

	bin := filepath.Join(t.TempDir(), "node")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"ALLOT_REDIS_URL="+s.URL(), "ALLOT_NODE_ID=example-1", "ALLOT_NODE_IP=10.0.0.1",
		"ALLOT_HEARTBEAT_INTERVAL=100ms", "ALLOT_HEARTBEAT_TTL=300ms")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no output line")
			return ""
		}
	}

	assert.Regexp(t, `^epoch=\d+ groups=alpha@v1$`, next())
	_, err = reg.Update(ctx, "alpha", registry.Change{Set: map[string]string{"api_key": "sk-rotated"}}, "test")
	require.NoError(t, err)
	assert.Regexp(t, `^epoch=\d+ groups=alpha@v2$`, next())

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.Regexp(t, `^epoch=\d+ groups=$`, next(), "leaving drops every group")
	for l := range lines {
		assert.NotContains(t, l, "sk-")
	}
	require.NoError(t, cmd.Wait(), "exit 0")
	n, err := s.Client(t).ZCard(ctx, "{allot:default}:nodes").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "the node left the pool")
}
