package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// startAPI runs a real server (real redis-server, httptest listener, the
// coordinator loop) and stops all of it at the end of the test.
func startAPI(t *testing.T, opts ...server.Option) (*server.Server, *httptest.Server) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	srv, err := server.New(rdb, opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-ran)
		assert.NoError(t, srv.Close())
		ts.Close()
	})
	return srv, ts
}

// pythonInterpreter returns the real python3 binary: a wrapper such as a
// pyenv shim would get our signals instead of the interpreter.
func pythonInterpreter(t *testing.T) string {
	t.Helper()
	shim, err := exec.LookPath("python3")
	require.NoError(t, err, "python3 is required (apt-get install python3)")
	out, err := exec.Command(shim, "-c", "import sys; print(sys.executable)").Output()
	require.NoError(t, err, "run %s", shim)
	return strings.TrimSpace(string(out))
}

// pythonPackage is the PYTHONPATH entry that makes `import allot` load
// clients/python from this tree, never an allot installed on the machine.
func pythonPackage(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs("../clients/python/src")
	require.NoError(t, err)
	return "PYTHONPATH=" + src
}

// apiNode is the node JSON of GET /v1/nodes.
type apiNode struct {
	ID     string   `json:"id"`
	IP     string   `json:"ip"`
	Groups []string `json:"groups"`
}

func listNodes(t *testing.T, ts *httptest.Server, token string) map[string]apiNode {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.URL+"/v1/nodes", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var nodes []apiNode
	require.NoError(t, json.NewDecoder(res.Body).Decode(&nodes))
	out := map[string]apiNode{}
	for _, n := range nodes {
		out[n.ID] = n
	}
	return out
}

// TestPythonNode runs examples/python-node/node.py (a program on the
// clients/python package) against a real server with tokens: it must join,
// get the only group, see a new version of it, and leave on SIGTERM (gone
// at once, not reaped: the TTL is a minute). The package's own tests are
// TestPythonClient's.
func TestPythonNode(t *testing.T) {
	python := pythonInterpreter(t)

	tokens := server.Tokens{Admin: "admin-secret", Node: "node-secret"}
	srv, ts := startAPI(t,
		server.WithTokens(tokens),
		server.WithHeartbeat(heartbeat.Config{Interval: 200 * time.Millisecond, TTL: time.Minute}))
	ctx := context.Background()
	_, err := srv.Registry().Add(ctx, "alpha", registry.Change{Set: map[string]string{"api_key": "k-123456789012"}, Secret: []string{"api_key"}}, "test")
	require.NoError(t, err)

	var out testlog.Buffer
	cmd := exec.Command(python, "-u", "../examples/python-node/node.py")
	cmd.Env = append(os.Environ(), pythonPackage(t), "PYTHONDONTWRITEBYTECODE=1",
		"ALLOT_URL="+ts.URL, "ALLOT_NODE_ID=py-1", "ALLOT_NODE_IP=10.1.2.3", "ALLOT_NODE_TOKEN="+tokens.Node)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second // never hang on the output pipe
	require.NoError(t, cmd.Start())
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	require.Eventually(t, func() bool { return strings.Contains(out.String(), "groups=alpha@v1") },
		15*time.Second, 20*time.Millisecond, "node never got alpha; output:\n%s", &out)
	n, ok := listNodes(t, ts, tokens.Admin)["py-1"]
	require.True(t, ok, "py-1 not in /v1/nodes")
	assert.Equal(t, "10.1.2.3", n.IP)
	assert.Equal(t, []string{"alpha"}, n.Groups)

	// A new version reaches the node without an epoch change being needed.
	_, err = srv.Registry().Update(ctx, "alpha", registry.Change{Set: map[string]string{"region": "eu"}}, "test")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "groups=alpha@v2") },
		15*time.Second, 20*time.Millisecond, "node never saw alpha v2; output:\n%s", &out)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-exited:
		require.NoError(t, waitErr, "node.py exit; output:\n%s", out.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("node.py did not exit on SIGTERM; output:\n%s", out.String())
	}
	assert.Contains(t, out.String(), "left")
	assert.NotContains(t, out.String(), "k-123456789012", "node.py printed a secret")
	_, ok = listNodes(t, ts, tokens.Admin)["py-1"]
	assert.False(t, ok, "py-1 still listed after leaving")
}
