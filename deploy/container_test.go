//go:build container

// The container test needs podman (and runc); `make test` and CI set the
// tag, so it runs there, while a plain `go test ./...` on a machine without
// podman still passes.

package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testcert"
)

const (
	// maxImageBytes is the size limit of the issue (40 MB), as build-image.sh
	// checks it.
	maxImageBytes = 40_000_000
	// buildTimeout bounds `make image`. A cold Go build of cmd/allot
	// (CGO_ENABLED=0 shares no compiled package with the race build of the
	// suite) takes about a minute on two idle cores and took 3.5 minutes with
	// the rest of the suite compiling beside it; go test's own limit is 10m.
	buildTimeout = 8 * time.Minute
	// commandTimeout bounds one podman command that is not a build.
	commandTimeout = time.Minute
	podmanOverhead = 5 * time.Second
	// containerLimit is the nofile and nproc limit given to every container:
	// podman's defaults raise them above what this machine's sandbox allows,
	// which runc reports as "error setting rlimit ... operation not permitted".
	containerLimit = 4096
)

// podmanGlobal are podman's settings that work on this machine (CI's is
// alike): runc (crun is refused here) with the cgroupfs manager (no systemd).
var podmanGlobal = []string{"--runtime", "runc", "--cgroup-manager", "cgroupfs"}

// runFlags are the `podman run` flags of every container of the test: the
// host network, so the container reaches redistest's 127.0.0.1 and the test
// reaches the container's port; and limits no higher than the test's own
// hard limits, since raising one is refused.
func runFlags(t *testing.T) []string {
	t.Helper()
	nofile := limitAtMost(t, syscall.RLIMIT_NOFILE, containerLimit)
	nproc := limitAtMost(t, 6 /* RLIMIT_NPROC */, containerLimit)
	return []string{"--network", "host",
		"--ulimit", fmt.Sprintf("nofile=%d:%d", nofile, nofile),
		"--ulimit", fmt.Sprintf("nproc=%d:%d", nproc, nproc)}
}

func limitAtMost(t *testing.T, resource int, want uint64) uint64 {
	t.Helper()
	var l syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(resource, &l))
	return min(want, l.Max)
}

// result is one finished podman command.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// podman runs one podman command (with podmanGlobal) and returns its output
// and exit code; a podman that cannot be started fails the test.
func podman(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	bin, err := exec.LookPath("podman")
	require.NoError(t, err, "podman is missing: run `bash .ci/install-deps` (installs podman and runc)")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(append([]string{}, podmanGlobal...), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		require.NoError(t, err, "podman %s", strings.Join(args, " "))
	}
	require.NoError(t, ctx.Err(), "podman %s did not finish in %v", strings.Join(args, " "), timeout)
	return r
}

// mustPodman is podman for a command that must succeed.
func mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	r := podman(t, commandTimeout, args...)
	require.Equal(t, 0, r.code, "podman %s: %s%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r.stdout
}

// built is one image built once per test process.
type built struct {
	once sync.Once
	ref  string
	err  error
}

var (
	allotImage built // allot:VERSION, `make image`
	nodeImage  built // allot-node:VERSION, `make image-node`
)

// image builds the allot image once per test process the way `make image`
// does (deploy/build-image.sh) and returns its reference, allot:VERSION.
func image(t *testing.T) string {
	t.Helper()
	return allotImage.build(t, "allot")
}

func (b *built) build(t *testing.T, what string) string {
	t.Helper()
	_, err := exec.LookPath("podman")
	require.NoError(t, err, "podman is missing: run `bash .ci/install-deps` (installs podman and runc)")
	b.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "build-image.sh", what)
		cmd.Env = append(os.Environ(), "ENGINE=podman")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("build-image.sh %s: %w: %s", what, err, stderr.String())
			return
		}
		b.ref = strings.TrimSpace(stdout.String())
		t.Logf("%s(build-image.sh %s took %v)", stderr.String(), what, time.Since(start).Round(time.Second))
	})
	require.NoError(t, b.err)
	require.Regexp(t, `^allot(-node)?:[A-Za-z0-9_.-]+$`, b.ref)
	return b.ref
}

// container names one container of the test and removes it when the test
// ends, whatever state it is in.
func container(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "allot-test-" + hex.EncodeToString(b)
	t.Cleanup(func() { podman(t, commandTimeout, "rm", "--force", "--time", "0", "--ignore", name) })
	return name
}

func TestImage(t *testing.T) {
	img := image(t)

	var inspect []struct {
		Size   int64
		Config struct {
			User       string
			Entrypoint []string
			Labels     map[string]string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(mustPodman(t, "image", "inspect", img)), &inspect))
	require.Len(t, inspect, 1)
	got := inspect[0]
	t.Logf("image %s: %.1f MB", img, float64(got.Size)/1e6)
	assert.LessOrEqual(t, got.Size, int64(maxImageBytes), "image size")
	assert.Equal(t, "65532:65532", got.Config.User)
	assert.Equal(t, []string{"/allot"}, got.Config.Entrypoint)
	assert.Equal(t, "https://github.com/allot-io/allot", got.Config.Labels["org.opencontainers.image.source"])
	version := strings.TrimPrefix(img, "allot:")
	assert.Equal(t, version, got.Config.Labels["org.opencontainers.image.version"])
	assert.Equal(t, mustPodman(t, "image", "inspect", "--format", "{{.Id}}", img),
		mustPodman(t, "image", "inspect", "--format", "{{.Id}}", "allot:latest"), "allot:latest is the image just built")

	// The version is stamped into the binary, and the binary runs as 65532
	// on an empty base (static: no libc to load).
	out := mustPodman(t, append(append([]string{"run", "--rm"}, runFlags(t)...), img, "version", "-o", "json")...)
	var v struct{ Version string }
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	assert.Equal(t, version, v.Version)

	// The CA bundle for rediss:// is where Go looks for it.
	name := container(t)
	mustPodman(t, "create", "--name", name, img)
	dir := t.TempDir()
	mustPodman(t, "cp", name+":/etc/ssl/certs/ca-certificates.crt", dir)
	bundle, err := os.ReadFile(filepath.Join(dir, "ca-certificates.crt"))
	require.NoError(t, err)
	assert.Greater(t, bytes.Count(bundle, []byte("BEGIN CERTIFICATE")), 10, "CA certificates in the image")
}

// TestServeInContainer runs allot serve in the image the way the Kubernetes
// Deployment does (every interface, TLS from a mounted Secret at the image's
// default paths, tokens from the environment, Redis from ALLOT_REDIS_URL),
// checks its probes, UI and API over HTTPS, runs a CLI command in a second
// container, and stops it with SIGTERM.
func TestServeInContainer(t *testing.T) {
	img := image(t)
	rs := redistest.Start(t, redistest.WithPassword("allot", "redis-pass"))
	port := redistest.FreePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	const admin = "admin-token-for-the-container-test"

	// The image runs as 65532: the test key must be readable by it.
	tlsDir := t.TempDir()
	cert := testcert.Write(t, tlsDir)
	for _, f := range []string{cert.CertFile, cert.KeyFile} {
		require.NoError(t, os.Chmod(f, 0o644))
	}
	require.NoError(t, os.Chmod(tlsDir, 0o755))

	name := container(t)
	args := append([]string{"run", "--detach", "--name", name}, runFlags(t)...)
	args = append(args, "--env", "ALLOT_REDIS_URL="+rs.URL(), "--env", "ALLOT_ADMIN_TOKEN="+admin,
		"--volume", tlsDir+":/etc/allot/tls:ro",
		img, "serve", "--listen", fmt.Sprintf("0.0.0.0:%d", port), "--log-format", "json",
		"--tls-cert", "/etc/allot/tls/tls.crt", "--tls-key", "/etc/allot/tls/tls.key")
	mustPodman(t, args...)
	logs := func() string {
		r := podman(t, commandTimeout, "logs", name)
		return r.stdout + r.stderr
	}

	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.Pool}}
	client := &http.Client{Timeout: 5 * time.Second, Transport: transport}
	get := func(path, token string) (int, string, string) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	require.Eventually(t, func() bool {
		code, _, _ := get("/healthz", "")
		return code == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "GET /healthz never answered 200; container log:\n%s", logs())

	code, _, body := get("/readyz", "")
	assert.Equal(t, http.StatusOK, code, body)
	code, ctype, body := get("/", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, ctype, "text/html")
	assert.Contains(t, body, "<title>allot</title>")
	code, _, _ = get("/v1/groups", "")
	assert.Equal(t, http.StatusUnauthorized, code, "the API needs a token")

	// A group added through the container's API is seen by the CLI run in a
	// second container, its secret masked.
	const secret = "sk-container-secret-4f9a0c1d"
	payload := `{"name":"search-a","config":{"api_key":"` + secret + `","model":"m1"},"secret_keys":["api_key"]}`
	req, err := http.NewRequest(http.MethodPost, base+"/v1/groups", strings.NewReader(payload))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	created, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(created))

	cli := append(append([]string{"run", "--rm"}, runFlags(t)...), img, "--redis", rs.URL(), "group", "list", "-o", "json")
	out := mustPodman(t, cli...)
	assert.Contains(t, out, `"search-a"`)
	assert.NotContains(t, out, secret, "group list masks secrets")

	// An open event stream, as the UI keeps one: shutdown must end it, not
	// wait for it.
	req, err = http.NewRequest(http.MethodGet, base+"/v1/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+admin)
	stream, err := (&http.Client{Transport: transport}).Do(req)
	require.NoError(t, err)
	defer stream.Body.Close()
	require.Equal(t, http.StatusOK, stream.StatusCode)
	streamEnded := make(chan struct{})
	go func() {
		defer close(streamEnded)
		_, _ = io.Copy(io.Discard, stream.Body)
	}()

	// SIGTERM (podman stop) ends it gracefully: exit 0 within its shutdown
	// timeout, not podman's SIGKILL after --time.
	stop := podman(t, commandTimeout, "stop", "--time", "60", name)
	require.Equal(t, 0, stop.code, stop.stderr)
	t.Logf("podman stop (SIGTERM) of allot serve took %v", stop.took.Round(time.Millisecond))
	assert.Less(t, stop.took, serveShutdownTimeout+podmanOverhead, "podman stop took %v", stop.took)
	select {
	case <-streamEnded:
	case <-time.After(podmanOverhead):
		assert.Fail(t, "the event stream is still open after serve stopped")
	}
	assert.Equal(t, "0", strings.TrimSpace(mustPodman(t, "inspect", "--format", "{{.State.ExitCode}}", name)),
		"exit code after SIGTERM; log:\n%s", logs())
	l := logs()
	assert.Regexp(t, fmt.Sprintf(`allot serve: listening on https://(0\.0\.0\.0|\[::\]):%d\n`, port), l)
	assert.Contains(t, l, "shutting down")
	assert.NotContains(t, l, "redis-pass", "the Redis password is never logged")
	assert.NotContains(t, l, secret)
}

// TestServeInContainerBadInput: what serve refuses in the container, it
// refuses with one line and a non-zero exit, promptly.
func TestServeInContainerBadInput(t *testing.T) {
	img := image(t)

	// A port nothing listens on, and one that accepts connections but never
	// answers (a Redis that hangs): both end within --timeout.
	refused := redistest.FreePort(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	held := make(chan struct{})
	go func() { defer close(held); holdConnections(silent) }()
	t.Cleanup(func() { silent.Close(); <-held })
	silentPort := silent.Addr().(*net.TCPAddr).Port

	const timeout = 2 * time.Second
	for _, tc := range []struct {
		name string
		port int
	}{{"refused", refused}, {"silent", silentPort}} {
		t.Run("unreachable redis "+tc.name, func(t *testing.T) {
			url := fmt.Sprintf("redis://allot:hunter2@127.0.0.1:%d/0", tc.port)
			args := append(append([]string{"run", "--rm"}, runFlags(t)...), "--env", "ALLOT_REDIS_URL="+url,
				img, "serve", "--timeout", timeout.String(), "--listen", "127.0.0.1:"+strconv.Itoa(redistest.FreePort(t)))
			r := podman(t, commandTimeout, args...)
			assert.Equal(t, 1, r.code, "exit code; stderr: %s", r.stderr)
			// go-redis alone would take its 5s dial timeout on the silent one.
			assert.Less(t, r.took, timeout+2*time.Second)
			assert.Empty(t, r.stdout)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			require.Len(t, lines, 1, "one line on stderr: %q", r.stderr)
			assert.Contains(t, lines[0], fmt.Sprintf("cannot reach redis at redis://allot:xxxxx@127.0.0.1:%d/0", tc.port))
			assert.NotContains(t, r.stderr, "hunter2")
		})
	}

	// The image's default command listens on every interface, so without
	// ALLOT_ADMIN_TOKEN it is refused before Redis is even dialled.
	t.Run("open API beyond loopback", func(t *testing.T) {
		args := append(append([]string{"run", "--rm"}, runFlags(t)...),
			"--env", "ALLOT_REDIS_URL=redis://127.0.0.1:"+strconv.Itoa(refused), "--env", "ALLOT_READ_TOKEN=read-only", img)
		r := podman(t, commandTimeout, args...)
		assert.Equal(t, 2, r.code, "exit code; stderr: %s", r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		require.Len(t, lines, 1, "one line on stderr: %q", r.stderr)
		assert.Contains(t, lines[0], "refusing to listen on 0.0.0.0:7070 without ALLOT_ADMIN_TOKEN")
	})

	// The default command serves TLS from the mounted Secret: without it,
	// one line names the missing file, before Redis is dialled.
	t.Run("no certificate mounted", func(t *testing.T) {
		args := append(append([]string{"run", "--rm"}, runFlags(t)...),
			"--env", "ALLOT_REDIS_URL=redis://127.0.0.1:"+strconv.Itoa(refused), "--env", "ALLOT_ADMIN_TOKEN=admin-token-for-the-container-test", img)
		r := podman(t, commandTimeout, args...)
		assert.Equal(t, 2, r.code, "exit code; stderr: %s", r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		require.Len(t, lines, 1, "one line on stderr: %q", r.stderr)
		assert.Contains(t, lines[0], "/etc/allot/tls/tls.crt")
	})
}

// holdConnections accepts connections on l and never answers, until l is
// closed.
func holdConnections(l net.Listener) {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		conns = append(conns, c)
	}
}

// TestCLIInContainerOverTLS: rediss:// in the container verifies the server
// against the image's CA bundle at /etc/ssl/certs/ca-certificates.crt. With
// the test CA mounted there it connects; with the public CAs it ships, the
// test's self-made CA is unknown and the command fails with one line.
func TestCLIInContainerOverTLS(t *testing.T) {
	img := image(t)
	rs := redistest.Start(t, redistest.WithTLS())
	ca, err := os.ReadFile(rs.CAFile())
	require.NoError(t, err)
	bundle := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(bundle, ca, 0o644)) // readable by user 65532
	require.NoError(t, os.Chmod(filepath.Dir(bundle), 0o755))

	base := append([]string{"run", "--rm"}, runFlags(t)...)
	trusted := append(append([]string{}, base...), "--volume", bundle+":/etc/ssl/certs/ca-certificates.crt:ro",
		img, "--redis", rs.URL(), "--timeout", "5s", "group", "list", "-o", "json")
	out := mustPodman(t, trusted...)
	assert.JSONEq(t, "[]", out)

	r := podman(t, commandTimeout, append(append([]string{}, base...), img, "--redis", rs.URL(), "--timeout", "5s", "group", "list")...)
	assert.Equal(t, 1, r.code, "exit code; stderr: %s", r.stderr)
	assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	assert.Contains(t, r.stderr, "cannot reach redis at "+rs.URL())
	assert.Contains(t, r.stderr, "certificate")
}

// TestNodeInContainerLeavesOnSIGTERM: the example node image, as the
// Kubernetes node Deployment runs it, takes a group, and on SIGTERM (a pod
// deleted, podman stop) leaves at once: exit 0 and gone from the live
// nodes right away, not after the heartbeat TTL.
func TestNodeInContainerLeavesOnSIGTERM(t *testing.T) {
	img := image(t)
	node := nodeImage.build(t, "node")
	rs := redistest.Start(t)
	cli := func(args ...string) string {
		t.Helper()
		return mustPodman(t, append(append(append([]string{"run", "--rm"}, runFlags(t)...), img, "--redis", rs.URL()), args...)...)
	}
	type liveNode struct {
		ID     string
		Groups []string
	}
	nodes := func() []liveNode {
		t.Helper()
		var n []liveNode
		out := cli("node", "list", "-o", "json")
		require.NoError(t, json.Unmarshal([]byte(out), &n), out)
		return n
	}
	cli("group", "add", "alpha", "--set", "model=m1")

	name := container(t)
	id := "pod-" + name
	args := append([]string{"run", "--detach", "--name", name}, runFlags(t)...)
	mustPodman(t, append(args, "--env", "ALLOT_REDIS_URL="+rs.URL(), "--env", "ALLOT_NODE_ID="+id, node)...)
	require.Eventually(t, func() bool {
		n := nodes()
		return len(n) == 1 && n[0].ID == id && len(n[0].Groups) == 1 && n[0].Groups[0] == "alpha"
	}, 30*time.Second, 100*time.Millisecond, "the node never held alpha")

	stop := podman(t, commandTimeout, "stop", "--time", "60", name)
	require.Equal(t, 0, stop.code, stop.stderr)
	assert.Less(t, stop.took, podmanOverhead, "podman stop took %v", stop.took)
	assert.Equal(t, "0", strings.TrimSpace(mustPodman(t, "inspect", "--format", "{{.State.ExitCode}}", name)))
	assert.Empty(t, nodes(), "the node left on SIGTERM")
	logs := podman(t, commandTimeout, "logs", name)
	// examples/node prints its assignment: alpha, then nothing once it left.
	assert.Regexp(t, `^epoch=\d+ groups=alpha@v1\nepoch=\d+ groups=\n$`, logs.stdout, "stderr: %s", logs.stderr)
}
