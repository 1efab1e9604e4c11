package killswitch_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/killswitch"
	"github.com/allot-io/allot/internal/redistest"
)

func TestSwitchCommands(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	errDead := errors.New("node crashed")
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"own error", errDead, errDead},
		{"default error", nil, killswitch.ErrKilled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			t.Cleanup(func() { _ = rdb.Close() })
			sw := killswitch.New(tc.err)
			rdb.AddHook(sw)
			require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
			assert.False(t, sw.Killed())

			sw.Kill()
			assert.True(t, sw.Killed())
			assert.ErrorIs(t, rdb.Get(ctx, "k").Err(), tc.want)
			pipe := rdb.Pipeline()
			get := pipe.Get(ctx, "k")
			_, err := pipe.Exec(ctx)
			assert.ErrorIs(t, err, tc.want)
			assert.ErrorIs(t, get.Err(), tc.want, "every command of a pipeline fails")
			_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { return p.Get(ctx, "k").Err() })
			assert.ErrorIs(t, err, tc.want)

			sw.Revive()
			assert.False(t, sw.Killed())
			v, err := rdb.Get(ctx, "k").Result()
			require.NoError(t, err)
			assert.Equal(t, "v", v)
		})
	}
}

func TestSwitchDial(t *testing.T) {
	dials := 0
	next := func(context.Context, string, string) (net.Conn, error) {
		dials++
		return nil, nil
	}
	sw := killswitch.New(nil)
	dial := sw.DialHook(next)
	_, err := dial(context.Background(), "tcp", "127.0.0.1:1")
	require.NoError(t, err)
	sw.Kill()
	_, err = dial(context.Background(), "tcp", "127.0.0.1:1")
	assert.ErrorIs(t, err, killswitch.ErrKilled)
	assert.Equal(t, 1, dials, "a killed switch dials nothing")
	sw.Revive()
	_, err = dial(context.Background(), "tcp", "127.0.0.1:1")
	require.NoError(t, err)
	assert.Equal(t, 2, dials)
}
