package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// pyNode is one running examples/python-node/node.py.
type pyNode struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *testlog.Buffer
	exited chan struct{}
	err    error
}

func startPyNode(t *testing.T, env ...string) *pyNode {
	t.Helper()
	p := &pyNode{t: t, out: &testlog.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(pythonInterpreter(t), "-u", "../examples/python-node/node.py")
	p.cmd.Env = append(append(os.Environ(), pythonPackage(t), "PYTHONDONTWRITEBYTECODE=1"), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.WaitDelay = 5 * time.Second
	require.NoError(t, p.cmd.Start())
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func (p *pyNode) waitOutput(what string) {
	p.t.Helper()
	require.Eventually(p.t, func() bool { return strings.Contains(p.out.String(), what) },
		15*time.Second, 20*time.Millisecond, "no %q in the output:\n%s", what, p.out)
}

func (p *pyNode) stop() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
		require.NoError(p.t, p.err, "node.py exit; output:\n%s", p.out)
	case <-time.After(15 * time.Second):
		p.t.Fatalf("node.py did not exit on SIGTERM; output:\n%s", p.out)
	}
}

// Two node.py processes started with one ALLOT_NODE_ID (a copied config):
// the second waits (409, said once) and never holds the exclusive group
// until the first leaves; then it joins at once.
func TestPythonNodeSameID(t *testing.T) {
	tokens := server.Tokens{Admin: "admin-secret", Node: "node-secret"}
	srv, ts := startAPI(t, server.WithTokens(tokens),
		server.WithHeartbeat(heartbeat.Config{Interval: 200 * time.Millisecond, TTL: time.Minute}))
	_, err := srv.Registry().Add(context.Background(), "solo", registry.Change{Set: map[string]string{"api_key": "k-solo-0123456789"}, MaxNodes: new(1)}, "test")
	require.NoError(t, err)
	env := []string{"ALLOT_URL=" + ts.URL, "ALLOT_NODE_ID=py-1", "ALLOT_NODE_IP=10.1.2.3", "ALLOT_NODE_TOKEN=" + tokens.Node}

	first := startPyNode(t, env...)
	first.waitOutput("groups=solo@v1")
	second := startPyNode(t, env...)
	second.waitOutput("HTTP 409")
	// A second refused beat is not logged again.
	refused := regexp.MustCompile(`allot_http_requests_total\{code="409",route="POST /v1/nodes/\{id\}/heartbeat"\} (\d+)`)
	require.Eventually(t, func() bool {
		req, err := http.NewRequest(http.MethodGet, ts.URL+"/metrics", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tokens.Admin)
		res, err := ts.Client().Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		m := refused.FindSubmatch(body)
		if m == nil {
			return false
		}
		n, err := strconv.Atoi(string(m[1]))
		require.NoError(t, err)
		return n >= 2 // node.py waits its default interval (2 s) between tries
	}, 15*time.Second, 50*time.Millisecond, "the second node kept trying")
	assert.Len(t, listNodes(t, ts, tokens.Admin)["py-1"].Groups, 1, "still the first's")
	assert.NotContains(t, second.out.String(), "groups=solo")

	first.stop()
	second.waitOutput("groups=solo@v1")
	assert.Equal(t, 1, strings.Count(second.out.String(), "HTTP 409"), "the wait is said once:\n%s", second.out)
	second.stop()
	assert.Contains(t, second.out.String(), "left")
	_, ok := listNodes(t, ts, tokens.Admin)["py-1"]
	assert.False(t, ok, "py-1 still listed after leaving")
}

// While the server is down, node.py backs off exponentially to its cap
// instead of retrying every half second.
func TestPythonNodeBacksOff(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now

	p := startPyNode(t, "ALLOT_URL="+url, "ALLOT_NODE_ID=py-down", "ALLOT_NODE_IP=10.1.2.3")
	p.waitOutput("retrying in 4.0s")
	re := regexp.MustCompile(`retrying in ([0-9.]+)s`)
	var delays []string
	for _, m := range re.FindAllStringSubmatch(p.out.String(), -1) {
		delays = append(delays, m[1])
	}
	require.GreaterOrEqual(t, len(delays), 4)
	assert.Equal(t, []string{"0.5", "1.0", "2.0", "4.0"}, delays[:4])
	p.stop()
}

// A node.py whose session is gone (an operator evicted it and another
// process took its ID) stops using its groups at its next request, waits
// while the ID is taken, and joins again with a new session once it is free.
func TestPythonNodeDisplaced(t *testing.T) {
	tokens := server.Tokens{Admin: "admin-secret", Node: "node-secret"}
	srv, ts := startAPI(t, server.WithTokens(tokens),
		server.WithHeartbeat(heartbeat.Config{Interval: 200 * time.Millisecond, TTL: time.Minute}))
	_, err := srv.Registry().Add(context.Background(), "solo", registry.Change{Set: map[string]string{"api_key": "k-solo-0123456789"}, MaxNodes: new(1)}, "test")
	require.NoError(t, err)
	p := startPyNode(t, "ALLOT_URL="+ts.URL, "ALLOT_NODE_ID=py-1", "ALLOT_NODE_IP=10.1.2.3", "ALLOT_NODE_TOKEN="+tokens.Node)
	p.waitOutput("groups=solo@v1")

	send := func(method, path, token, session string) (int, server.NodeAssignment) {
		t.Helper()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{"ip":"10.9.9.9"}`)
		}
		req, err := http.NewRequest(method, ts.URL+path, body)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if session != "" {
			req.Header.Set(server.SessionHeader, session)
		}
		res, err := ts.Client().Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		var a server.NodeAssignment
		if res.StatusCode == http.StatusOK {
			require.NoError(t, json.NewDecoder(res.Body).Decode(&a))
		}
		return res.StatusCode, a
	}
	// The operator evicts py-1 and, at once, another process takes the ID.
	var intruder string
	require.Eventually(t, func() bool {
		code, _ := send(http.MethodDelete, "/v1/nodes/py-1", tokens.Admin, "")
		require.Equal(t, http.StatusNoContent, code)
		code, a := send(http.MethodPost, "/v1/nodes/py-1/heartbeat", tokens.Node, "")
		intruder = a.Session
		return code == http.StatusOK // else node.py re-joined first: evict again
	}, 10*time.Second, 10*time.Millisecond)

	p.waitOutput("session lost")
	p.waitOutput("groups=-")
	p.waitOutput("HTTP 409")
	code, _ := send(http.MethodDelete, "/v1/nodes/py-1", tokens.Node, intruder)
	require.Equal(t, http.StatusNoContent, code)
	require.Eventually(t, func() bool { return strings.Count(p.out.String(), "groups=solo@v1") == 2 },
		15*time.Second, 20*time.Millisecond, "node.py never re-joined:\n%s", p.out)
	p.stop()
}

// A node.py that cannot reach the server stops using its capped group once
// a TTL has passed since its last successful beat (the server may have
// handed the group on), as a Go client does; uncapped groups keep serving.
func TestPythonNodeDropsCappedGroupsWhenTheLeaseLapses(t *testing.T) {
	srv, ts := startAPI(t, server.WithHeartbeat(heartbeat.Config{Interval: 200 * time.Millisecond, TTL: time.Second}))
	_, err := srv.Registry().Add(context.Background(), "solo", registry.Change{Set: map[string]string{"api_key": "k"}, MaxNodes: new(1)}, "test")
	require.NoError(t, err)

	p := startPyNode(t, "ALLOT_URL="+ts.URL, "ALLOT_NODE_ID=py-capped", "ALLOT_NODE_IP=10.1.2.3")
	p.waitOutput("groups=solo@v1")
	ts.CloseClientConnections()
	ts.Close() // the server is gone: every request fails from now on
	p.waitOutput("lease lapsed: capped groups dropped")
	p.waitOutput("groups=-")
	p.stop()
}

// A node.py whose long polls are refused (the server's --max-long-polls
// are taken) waits for its next heartbeat instead of polling again at
// once, says so once, and still follows its assignment through its beats.
func TestPythonNodeLongPollsFull(t *testing.T) {
	tokens := server.Tokens{Admin: "admin-secret", Node: "node-secret"}
	srv, ts := startAPI(t, server.WithTokens(tokens), server.WithMaxLongPolls(1),
		server.WithHeartbeat(heartbeat.Config{Interval: 200 * time.Millisecond, TTL: time.Minute}))
	request := func(ctx context.Context, method, path, session string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, ts.URL+path, strings.NewReader("{}"))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tokens.Node)
		req.Header.Set("Content-Type", "application/json")
		if session != "" {
			req.Header.Set(server.SessionHeader, session)
		}
		return ts.Client().Do(req)
	}
	res, err := request(context.Background(), http.MethodPost, "/v1/nodes/holder/heartbeat", "")
	require.NoError(t, err)
	var a server.NodeAssignment
	require.NoError(t, json.NewDecoder(res.Body).Decode(&a))
	res.Body.Close()

	// The holder's poll takes the one slot until the test ends (a 503: the
	// python node held it for a moment; poll again).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			res, err := request(ctx, http.MethodGet, "/v1/nodes/holder/assignment?after=999999&wait=60s", a.Session)
			if err == nil {
				res.Body.Close()
			}
		}
	}()
	p := startPyNode(t, "ALLOT_URL="+ts.URL, "ALLOT_NODE_ID=py-1", "ALLOT_NODE_IP=10.1.2.3", "ALLOT_NODE_TOKEN="+tokens.Node)
	p.waitOutput("long poll refused")
	_, err = srv.Registry().Add(context.Background(), "late", registry.Change{}, "test")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(p.out.String(), "late@v1")
	}, 15*time.Second, 20*time.Millisecond, "the beats did not bring the new group:\n%s", p.out)
	p.stop()
	assert.Equal(t, 1, strings.Count(p.out.String(), "long poll refused"), "said more than once:\n%s", p.out)
}
