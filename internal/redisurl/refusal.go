package redisurl

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Refusal explains a connection that broke before Redis answered. Redis
// writes one error line to a connection it will not serve and closes it,
// before reading any command: protected mode ("DENIED Redis is running in
// protected mode …", for a client that is not on loopback while the
// default user has no password) or maxclients ("ERR max number of clients
// reached"). go-redis then reports only the broken pipe or EOF of its own
// write. Refusal opens one connection to rdb's first address the way rdb
// dials (TLS included), reads what the server says before any command,
// waiting at most wait, and returns an error wrapping ErrRefused with that
// line. It returns nil when the server says nothing in time (it is waiting
// for a command, as a healthy one does), when the connection cannot be
// made, or for a client type it does not know.
func Refusal(ctx context.Context, rdb redis.UniversalClient, wait time.Duration) error {
	var (
		addr string
		dial func(ctx context.Context, network, addr string) (net.Conn, error)
	)
	switch c := rdb.(type) {
	case *redis.Client:
		o := c.Options()
		addr, dial = o.Addr, o.Dialer
	case *redis.ClusterClient:
		o := c.Options()
		if len(o.Addrs) == 0 {
			return nil
		}
		addr, dial = o.Addrs[0], o.Dialer
	default:
		return nil
	}
	if dial == nil {
		// go-redis's own dial for a plain connection (TLS clients made by
		// Open always carry a Dialer).
		var d net.Dialer
		dial = d.DialContext
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil
	}
	defer func() { _ = conn.Close() }()
	deadline, _ := ctx.Deadline()
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil
	}
	line, err := bufio.NewReaderSize(conn, 512).ReadString('\n')
	if !strings.HasPrefix(line, "-") || (err != nil && line == "") {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRefused, strings.TrimSpace(strings.TrimPrefix(line, "-")))
}
