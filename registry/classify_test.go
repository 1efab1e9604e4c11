package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAt(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{in: "+10m", want: now.Add(10 * time.Minute)},
		{in: "10m", want: now.Add(10 * time.Minute)},
		{in: " 1h30m ", want: now.Add(90 * time.Minute)},
		{in: "2026-03-01T14:00:00+01:00", want: now.Add(time.Hour)},
		{in: "2027-03-01T12:00:00Z", want: now.Add(365 * 24 * time.Hour)},
		{in: "2026-03-01T12:00:00Z", err: "is in the past"},
		{in: "2020-01-01T00:00:00Z", err: "is in the past"},
		{in: "+0s", err: "not in the future"},
		{in: "-5m", err: "not in the future"},
		{in: "2062-03-01T12:00:00Z", err: "more than a year ahead"},
		{in: "+9000h", err: "more than a year ahead"},
		{in: "soon", err: "want an RFC 3339 time"},
		{in: "", err: "no time given"},
	} {
		got, err := ParseAt(tc.in, now)
		if tc.err != "" {
			require.Error(t, err, tc.in)
			assert.ErrorIs(t, err, ErrInvalidSchedule, tc.in)
			assert.Contains(t, err.Error(), tc.err, tc.in)
			assert.True(t, IsInvalidInput(err), tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.True(t, tc.want.Equal(got), "%s: %v != %v", tc.in, tc.want, got)
	}
}

// replyError is an error reply from Redis, as go-redis returns it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func TestIsUnavailable(t *testing.T) {
	for _, err := range []error{
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
		fmt.Errorf("ping: %w", syscall.ECONNRESET),
		io.EOF, io.ErrUnexpectedEOF, redis.ErrClosed, redis.ErrPoolTimeout,
		fmt.Errorf("x: %w", context.DeadlineExceeded),
		replyError("LOADING Redis is loading the dataset in memory"),
		fmt.Errorf("limiter: %w", replyError("CLUSTERDOWN The cluster is down")),
		replyError("TRYAGAIN Multiple keys request during rehashing of slot"),
		replyError("MASTERDOWN Link with MASTER is down"),
		replyError("READONLY You can't write against a read only replica."),
	} {
		assert.True(t, IsUnavailable(err), "%v", err)
	}
	for _, err := range []error{
		nil, ErrNotFound, errors.New("ERR unknown command"), redis.Nil,
		replyError("ERR quota: bad limit 1"), replyError("LOADINGX not a state"),
		fmt.Errorf("quota: unexpected limiter reply: string"),
		&os.PathError{Op: "open", Path: "nofile.yaml", Err: syscall.ENOENT},
		fmt.Errorf("read nofile.yaml: %w", syscall.ENOENT),
		wrap(ErrInvalidWeight, "update group %q", "x"),
	} {
		assert.False(t, IsUnavailable(err), "%v", err)
	}
}

func TestIsInvalidInputAndReason(t *testing.T) {
	err := wrap(ErrInvalidWeight, "update group %q", "x")
	assert.True(t, IsInvalidInput(err))
	assert.False(t, IsInvalidInput(wrap(ErrNotFound, "get group %q", "x")))
	assert.Equal(t, `registry: update group "x": weight must be a finite number > 0`, err.Error())
	assert.Equal(t, "weight must be a finite number > 0", Reason(err))
	assert.Equal(t, "not found", Reason(ErrNotFound))
	assert.Equal(t, "plain", Reason(errors.New("plain")))
}
