package redistest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the sentinel monitors its master under.
const MasterName = "mymaster"

// Sentinel is a master redis-server watched by one `redis-server --sentinel`
// (quorum 1). There is no replica, so it never fails over; it exists to test
// clients that discover their master through Sentinel.
type Sentinel struct {
	master   *Server
	sentinel *Server
}

// StartSentinel starts a master and a sentinel monitoring it as MasterName,
// and returns once the sentinel reports the master's address.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	master := Start(t)
	s := newServer(t, config{sentinelOf: master.Addr()})
	if err := s.startFresh(freePort); err != nil {
		t.Fatal(err)
	}
	sn := &Sentinel{master: master, sentinel: s}
	if err := sn.waitMaster(); err != nil {
		t.Fatal(err)
	}
	return sn
}

// waitMaster polls until the sentinel names the master and sees it as up.
func (sn *Sentinel) waitMaster() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), MaxRetries: -1})
	defer c.Close()
	want := sn.master.Addr()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		addr, err := c.GetMasterAddrByName(ctx, MasterName).Result()
		switch {
		case err != nil:
			last = err
		case len(addr) != 2 || net.JoinHostPort(addr[0], addr[1]) != want:
			last = fmt.Errorf("sentinel names master %v, want %s", addr, want)
		default:
			m, err := c.Master(ctx, MasterName).Result()
			if err == nil && m["flags"] == "master" {
				return nil
			}
			last = fmt.Errorf("sentinel master state %v: %v", m, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: sentinel on %s not ready after %s: %w", sn.Addr(), readyTimeout, last)
		case <-tick.C:
		}
	}
}

// Addr is the sentinel's host:port.
func (sn *Sentinel) Addr() string { return sn.sentinel.Addr() }

// Master is the monitored master; Kill/Restart it to test reconnection.
func (sn *Sentinel) Master() *Server { return sn.master }

// URL is redis://127.0.0.1:SENTINELPORT?master_name=mymaster, the form
// go-redis's ParseFailoverURL reads.
func (sn *Sentinel) URL() string {
	return "redis://" + sn.Addr() + "?master_name=" + MasterName
}

// Client returns a go-redis failover client (a *redis.Client that finds the
// master through the sentinel), closed when the test ends.
func (sn *Sentinel) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    MasterName,
		SentinelAddrs: []string{sn.Addr()},
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
