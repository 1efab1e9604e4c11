package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/internal/redisacl"
	"github.com/allot-io/allot/internal/redistest"
)

// aclUsers creates the node and serve users of docs/security.md on s (the
// default user keeps every right, for the test's own checks) and returns
// their URLs.
func aclUsers(t *testing.T, s *redistest.Server, ns string) (nodeURL, serveURL string) {
	t.Helper()
	admin := redis.NewClient(s.Options())
	t.Cleanup(func() { _ = admin.Close() })
	ctx := t.Context()
	for user, rule := range map[string]string{"allot-node": redisacl.NodeRule(ns), "allot-serve": redisacl.ServeRule()} {
		args := []any{"acl", "setuser", user, ">" + user + "-pass"}
		for _, f := range strings.Fields(rule) {
			args = append(args, f)
		}
		require.NoError(t, admin.Do(ctx, args...).Err(), "ACL SETUSER %s %s", user, rule)
	}
	require.NoError(t, admin.Do(ctx, "acl", "log", "reset").Err())
	as := func(user string) string {
		u, err := url.Parse(s.URL())
		require.NoError(t, err)
		u.User = url.UserPassword(user, user+"-pass")
		return u.String()
	}
	return as("allot-node"), as("allot-serve")
}

// TestLeastPrivilegeRedisUsers: a Go node under the node user of
// docs/security.md (its namespace's keys and channels, the commands the
// client sends) and the CLI under the serve user do their whole job, Redis
// refuses nothing they send (ACL LOG stays empty), and the node user is
// refused every key and channel outside its namespace.
func TestLeastPrivilegeRedisUsers(t *testing.T) {
	s := redistest.Start(t)
	nodeURL, serveURL := aclUsers(t, s, "default")
	ctx := t.Context()

	// The CLI, as serve's user: groups, status, namespaces, history.
	mustRun(t, serveURL, "group", "add", "g1", "--set", "api_key=sk-acl-test-000000000001", "--secret", "api_key", "--quota", "600/m burst 10")
	mustRun(t, serveURL, "group", "add", "g2", "--set", "api_key=sk-acl-test-000000000002", "--secret", "api_key", "--eject-after", "1/1m")
	mustRun(t, serveURL, "namespace", "list")

	// Two Go nodes, as the node user: join, plan, limit, report, leave.
	hb := heartbeat.Config{Interval: 100 * time.Millisecond, TTL: 300 * time.Millisecond}
	node := func(id string) *client.Client {
		opt, err := redis.ParseURL(nodeURL)
		require.NoError(t, err)
		rdb := redis.NewClient(opt)
		t.Cleanup(func() { _ = rdb.Close() })
		c, err := client.New(rdb, client.WithNodeID(id), client.WithHeartbeat(hb))
		require.NoError(t, err)
		require.NoError(t, c.Start(ctx))
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	n1, n2 := node("n1"), node("n2")
	require.Eventually(t, func() bool {
		return len(n1.Assignment().Groups) == 1 && len(n2.Assignment().Groups) == 1
	}, 10*time.Second, 10*time.Millisecond, "each node gets a group")
	for _, n := range []*client.Client{n1, n2} {
		l, err := n.Acquire(ctx, 0)
		require.NoError(t, err)
		require.NoError(t, l.Settle(ctx, 0))
		require.NoError(t, l.Observe(ctx, &http.Response{StatusCode: http.StatusOK}, nil))
	}
	require.NoError(t, n1.ObserveHTTP(ctx, "g1", &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"1"}}}, nil))

	// A change made by the CLI reaches the nodes; a leave moves its groups.
	mustRun(t, serveURL, "group", "update", "g1", "--set", "api_key=sk-acl-test-000000000003")
	mustRun(t, serveURL, "status")
	require.NoError(t, n2.Close(ctx))
	require.Eventually(t, func() bool { return len(n1.Assignment().Groups) == 2 }, 10*time.Second, 10*time.Millisecond,
		"n1 takes n2's group after its leave")
	mustRun(t, serveURL, "group", "delete", "g2", "--yes")
	require.Eventually(t, func() bool { return len(n1.Assignment().Groups) == 1 }, 10*time.Second, 10*time.Millisecond)

	// Encryption at rest, as serve's user: a rotation seals the plain
	// values in place (documents, kept versions), status counts them.
	keys := keyFile(t, newKey(t, "k1"))
	assert.Contains(t, mustRun(t, serveURL, "--secret-keys", keys, "secrets", "rotate"), "rotated: 3 values")
	assert.Contains(t, mustRun(t, serveURL, "--secret-keys", keys, "secrets", "status"), "total      0          3")

	admin := redis.NewClient(s.Options())
	defer admin.Close()
	entries, err := admin.Do(ctx, "acl", "log").Slice()
	require.NoError(t, err)
	assert.Empty(t, entries, "Redis refused a command a node or the CLI sent: add it to redisacl (ACL LOG: %v)", entries)

	// Outside the namespace, the node user is refused.
	opt, err := redis.ParseURL(nodeURL)
	require.NoError(t, err)
	nodeRDB := redis.NewClient(opt)
	defer nodeRDB.Close()
	for name, cmd := range map[string][]any{
		"a key outside allot":     {"get", "session:42"},
		"another namespace's key": {"get", "{allot:other}:groups"},
		"a write outside allot":   {"set", "session:42", "x"},
		"a foreign channel":       {"publish", "cache-invalidation", "x"},
		"flushall":                {"flushall"},
		"keys":                    {"keys", "*"},
		"config":                  {"config", "get", "*"},
	} {
		err := nodeRDB.Do(ctx, cmd...).Err()
		require.Error(t, err, name)
		assert.True(t, strings.HasPrefix(err.Error(), "NOPERM"), "%s: %v", name, err)
	}
}

// TestCheckRedis: `allot check redis` says that the node user has what a
// node needs and nothing more, that full credentials have much more (and
// prints the rule to fix it), and fails when a node could not work.
func TestCheckRedis(t *testing.T) {
	s := redistest.Start(t)
	nodeURL, _ := aclUsers(t, s, "default")

	var res checkRedisResult
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, nodeURL, "check", "redis", "-o", "json")), &res))
	assert.Equal(t, "allot-node", res.User)
	assert.Empty(t, res.Beyond, "the node rule grants nothing beyond a node's needs")
	assert.Empty(t, res.Missing)

	out := mustRun(t, s.URL(), "check", "redis")
	assert.Contains(t, out, "user default")
	for _, beyond := range []string{"flushall", "config set", "get a key outside allot", "acl setuser"} {
		assert.Regexp(t, beyond+`.*yes\s+no\s+BEYOND A NODE`, out)
	}
	assert.Contains(t, out, "ACL SETUSER allot-node >PASSWORD "+redisacl.NodeRule("default"))

	// The node user of another namespace cannot serve this one.
	_, errOut, code := runCLI(t, nodeURL, "--namespace", "payments", "check", "redis")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, `a node of "payments" cannot work with these credentials`)
}

// TestSecurityDocACLLines: the ACL SETUSER lines of docs/security.md are
// the rules the tests above run under.
func TestSecurityDocACLLines(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	require.NoError(t, err)
	assert.Contains(t, string(doc), "ACL SETUSER allot-node >NODE_PASSWORD "+redisacl.NodeRule("default")+"\n")
	assert.Contains(t, string(doc), "ACL SETUSER allot-serve >SERVE_PASSWORD "+redisacl.ServeRule()+"\n")
}
