package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// binary is the allot binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	redis.SetLogger(quietLogger{})
	dir, err := os.MkdirTemp("", "allot-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "allot")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build allot:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// testEnv is the environment of in-process runs.
func testEnv(k string) string {
	if k == "USER" {
		return "tester"
	}
	return ""
}

// runCLI runs the command tree in-process against the Redis at url.
func runCLI(t testing.TB, url string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLIContext(t.Context(), url, "", args...)
}

// runCLIStdin is runCLI with stdin.
func runCLIContext(ctx context.Context, url, stdin string, args ...string) (string, string, int) {
	var out, errb testlog.Buffer
	full := append([]string{"--redis", url}, args...)
	code := execute(ctx, full, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: testEnv})
	return out.String(), errb.String(), code
}

// mustRun runs args and fails the test unless they exit 0.
func mustRun(t testing.TB, url string, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, url, args...)
	require.Equal(t, exitOK, code, "allot %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), out, errOut)
	return out
}

// dumpKeys snapshots every key of the Redis behind rdb (DUMP payloads).
func dumpKeys(t testing.TB, rdb redis.UniversalClient) map[string]string {
	t.Helper()
	ctx := t.Context()
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	sort.Strings(keys)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		v, err := rdb.Dump(ctx, k).Result()
		require.NoError(t, err)
		out[k] = v
	}
	return out
}

// runBinary runs the built allot with args and env (added to a clean one).
func runBinary(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "USER=bin-tester"}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run allot: %v", err)
	}
	return out.String(), errb.String(), code
}

// oneStderrLine checks the contract for failures: exactly one line on stderr.
func oneStderrLine(t *testing.T, stderr string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	require.Len(t, lines, 1, "stderr: %q", stderr)
	assert.True(t, strings.HasPrefix(lines[0], "allot: "), "stderr: %q", stderr)
	return lines[0]
}

func TestBinaryExitCodes(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()

	out, errOut, code := runBinary(t, nil, "version")
	assert.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "allot ")

	// The environment supplies the Redis URL and the user of updated_by.
	out, errOut, code = runBinary(t, []string{"ALLOT_REDIS_URL=" + url}, "group", "add", "bin-1", "--set", "k=v", "-o", "json")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, `"updated_by": "cli:bin-tester@`)

	// ALLOT_NAMESPACE selects another pool: the group is not there.
	_, errOut, code = runBinary(t, []string{"ALLOT_REDIS_URL=" + url, "ALLOT_NAMESPACE=other"}, "group", "get", "bin-1")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, `allot: group "bin-1" not found (see 'allot group list')`, oneStderrLine(t, errOut))

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"group", "list", "--bogus"}, "unknown flag: --bogus (see 'allot group list --help')"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate" for "allot"`},
		{"unknown subcommand", []string{"group", "frobnicate"}, `unknown command "frobnicate" for "allot group"`},
		{"bad flag value", []string{"group", "add", "g", "--weight", "heavy"}, `invalid argument "heavy" for "--weight"`},
		{"invalid weight", []string{"group", "add", "g", "--weight", "-1"}, "weight must be a finite number > 0"},
		{"bad output", []string{"-o", "xml", "status"}, `invalid --output "xml"`},
		{"missing name", []string{"group", "get"}, "missing NAME"},
		{"past --at", []string{"group", "update", "bin-1", "--set", "a=b", "--at", "2001-01-01T00:00:00Z"}, "is in the past"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runBinary(t, []string{"ALLOT_REDIS_URL=" + url}, tc.args...)
			assert.Equal(t, exitUsage, code)
			assert.Contains(t, oneStderrLine(t, errOut), tc.want)
		})
	}

	t.Run("unreachable redis", func(t *testing.T) {
		_, errOut, code := runBinary(t, []string{"ALLOT_REDIS_URL=redis://admin:hunter2@127.0.0.1:1"}, "status")
		assert.Equal(t, exitFailure, code)
		line := oneStderrLine(t, errOut)
		assert.True(t, strings.HasPrefix(line, "allot: cannot reach redis at redis://admin:"), line)
		assert.Contains(t, line, "127.0.0.1:1 (")
		assert.Contains(t, line, "connection refused")
		assert.NotContains(t, line, "hunter2")
	})
}

// TestRefusedConnectionSaysWhy: Redis writes one error line to a connection
// it will not serve (maxclients here; protected mode alike) and closes it,
// and go-redis then reports only its own broken write. The user sees the
// server's words.
func TestRefusedConnectionSaysWhy(t *testing.T) {
	rs := redistest.Start(t, redistest.WithArgs("--maxclients", "1"))
	// Hold the only connection the server allows.
	held, err := net.Dial("tcp", rs.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = held.Close() })
	require.Eventually(t, func() bool {
		_, errOut, _ := runCLI(t, rs.URL(), "status")
		return strings.Contains(errOut, "max number of clients reached")
	}, 10*time.Second, 50*time.Millisecond)
	_, errOut, code := runCLI(t, rs.URL(), "status")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, "allot: cannot reach redis at "+rs.URL()+" (redis refused the connection: ERR max number of clients reached)",
		oneStderrLine(t, errOut))
}

func TestBinaryWatchStopsOnSIGINT(t *testing.T) {
	url := redistest.Start(t).URL()
	cmd := exec.Command(binary, "watch", "--redis", url)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "USER=bin-tester"}
	var out, errb testlog.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	require.Eventually(t, func() bool {
		mustRun(t, url, "group", "add", fmt.Sprintf("g%d", time.Now().UnixNano()))
		return strings.Contains(out.String(), "group.added")
	}, 10*time.Second, 200*time.Millisecond, errb.String())

	start := time.Now()
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	select {
	case err := <-done:
		assert.NoError(t, err, "exit 0 on SIGINT; stderr %q", errb.String())
	case <-time.After(5 * time.Second):
		t.Fatal("watch ignored SIGINT")
	}
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Empty(t, errb.String())
}
