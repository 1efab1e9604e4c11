package client

import (
	"context"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	// Outage tests make go-redis log every refused dial; keep output readable.
	redis.SetLogger(quietRedis{})
	os.Exit(m.Run())
}
