package server_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/server"
)

// TestLogsNameTheNamespaceOnce: the lines the server's registry and
// heartbeat write carry ns once (they used to get a logger already tagged
// with it, and tagged it again).
func TestLogsNameTheNamespaceOnce(t *testing.T) {
	var out testlog.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := newAPI(t, server.WithLogger(log))

	r := a.do("POST", "/v1/nodes/n1/heartbeat", "", map[string]any{"ip": "10.0.0.1"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var joined string
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, "node joined") {
				joined = line
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, strings.Count(joined, "ns=default"), joined)
}
