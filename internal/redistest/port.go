package redistest

import (
	"fmt"
	"net"
	"strconv"
	"testing"
)

// reservedPort is the default Redis port; tests never use it so they can
// never touch a system Redis.
const reservedPort = 6379

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago
// (never 6379). Another process may still take it before you bind it.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("redistest: find free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if p != reservedPort {
			return p, nil
		}
	}
	return 0, fmt.Errorf("redistest: find free port: kept getting %d", reservedPort)
}

// clusterBusOffset is how far above its client port a cluster node listens
// for the cluster bus (Redis default).
const clusterBusOffset = 10000

// freeClusterPort returns a free port p whose bus port p+10000 is free too.
func freeClusterPort() (int, error) {
	for range 50 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		bus := p + clusterBusOffset
		if bus > 65535 || bus == reservedPort {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bus)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("redistest: find free cluster port: no port p with p and p+%d free", clusterBusOffset)
}
