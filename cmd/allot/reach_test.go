package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSilentRedisEndsWithinTimeout: a Redis that accepts connections but
// never answers ends a command within --timeout (go-redis's own 5s dial
// timeout would otherwise decide), with one line naming the masked URL.
func TestSilentRedisEndsWithinTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	held := make(chan struct{})
	go func() {
		defer close(held)
		var conns []net.Conn
		for {
			c, err := l.Accept()
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-held })

	url := fmt.Sprintf("redis://allot:hunter2@%s/0", l.Addr())
	for _, args := range [][]string{
		{"--timeout", "500ms", "group", "list"},
		{"--timeout", "500ms", "serve", "--listen", "127.0.0.1:0"},
	} {
		start := time.Now()
		out, errOut, code := runCLI(t, url, args...)
		took := time.Since(start)
		assert.Equal(t, exitFailure, code, "%v: %s", args, errOut)
		assert.Less(t, took, 2*time.Second, "%v took %v", args, took)
		assert.Empty(t, out)
		assert.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
		assert.Contains(t, errOut, "cannot reach redis at redis://allot:xxxxx@"+l.Addr().String()+"/0")
		assert.NotContains(t, errOut, "hunter2")
	}
}
