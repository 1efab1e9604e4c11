package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
)

// startWatch runs `allot watch args...` in-process until the returned stop
// is called; stop returns the exit code and fails if watch does not end.
func startWatch(t *testing.T, url string, args ...string) (stdout, stderr *testlog.Buffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stdout, stderr = &testlog.Buffer{}, &testlog.Buffer{}
	done := make(chan int, 1)
	go func() {
		full := append([]string{"--redis", url, "watch"}, args...)
		done <- execute(ctx, full, env{stdout: stdout, stderr: stderr, getenv: testEnv})
	}()
	stop = func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(5 * time.Second):
			t.Fatal("watch did not stop within 5s of cancellation")
			return -1
		}
	}
	t.Cleanup(func() { cancel() })
	return stdout, stderr, stop
}

func TestWatchStreamsAndSurvivesRestart(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	mustRun(t, url, "group", "add", "before") // not shown: watch starts with new events

	out, errOut, stop := startWatch(t, url)
	// watch resolves its starting point before it blocks; retry the write until it shows.
	// Each retry must be a real change: an update that changes nothing logs nothing.
	n := 0
	require.Eventually(t, func() bool {
		n++
		mustRun(t, url, "group", "update", "before", "--set", "n="+strconv.Itoa(n))
		return strings.Contains(out.String(), "group.updated")
	}, 10*time.Second, 100*time.Millisecond)
	assert.NotContains(t, out.String(), "group.added")
	assert.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d group.updated\s+group=before version=\d+ by=cli:tester@`, out.String())

	s.Kill(t)
	require.Eventually(t, func() bool { return strings.Contains(errOut.String(), "lost redis at "+url) },
		10*time.Second, 20*time.Millisecond, errOut.String())
	s.Restart(t)
	mustRun(t, url, "group", "add", "after")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "group=after") },
		20*time.Second, 20*time.Millisecond, "stdout %s\nstderr %s", out, errOut)
	assert.Regexp(t, `group\.added\s+group=after version=1`, out.String())
	assert.Contains(t, errOut.String(), "reconnected to redis at "+url)

	start := time.Now()
	assert.Equal(t, exitOK, stop())
	assert.Less(t, time.Since(start), 2*time.Second, "an interrupted watch ends at once")
}

func TestWatchFromJSON(t *testing.T) {
	url := redistest.Start(t).URL()
	mustRun(t, url, "group", "add", "a")
	mustRun(t, url, "group", "update", "a", "--weight", "2")
	mustRun(t, url, "group", "delete", "a")

	out, _, stop := startWatch(t, url, "--from", "0", "-o", "json")
	require.Eventually(t, func() bool { return strings.Count(out.String(), "\n") >= 3 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, exitOK, stop())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var types []string
	var ids []string
	for _, l := range lines {
		var ev registry.Event
		require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
		types = append(types, ev.Type)
		ids = append(ids, ev.ID)
		assert.Equal(t, "a", ev.Group)
	}
	assert.Equal(t, []string{registry.EventGroupAdded, registry.EventGroupUpdated, registry.EventGroupDeleted}, types)

	// Resuming after the first event's ID replays the rest.
	out, _, stop = startWatch(t, url, "--from", ids[0], "-o", "json")
	require.Eventually(t, func() bool { return strings.Count(out.String(), "\n") >= 2 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, exitOK, stop())
	assert.NotContains(t, out.String(), registry.EventGroupAdded)
	assert.Contains(t, out.String(), `"id":"`+ids[2]+`"`)
}
