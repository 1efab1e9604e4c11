package client

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/redistest"
)

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	// Outage tests make go-redis log every refused dial; keep output readable.
	redis.SetLogger(quietRedis{})
	// One real redis-server for the runnable examples (they get no
	// testing.TB); tests start their own.
	s, stop, err := redistest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedRedisURL = s.URL()
	code := m.Run()
	stop()
	os.Exit(code)
}
