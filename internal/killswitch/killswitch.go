package killswitch

import (
	"context"
	"net"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Switch is a go-redis hook (add it with AddHook) that fails every dial and
// command of its client while killed. It is safe for concurrent use.
type Switch struct {
	killed atomic.Bool
	err    error
}

// New returns a live Switch whose killed client's calls fail with err
// (nil: ErrKilled).
func New(err error) *Switch {
	if err == nil {
		err = ErrKilled
	}
	return &Switch{err: err}
}

// Kill makes every later dial and command fail. Commands already sent are
// not interrupted.
func (s *Switch) Kill() { s.killed.Store(true) }

// Revive lets dials and commands through again, as for a restarted process.
func (s *Switch) Revive() { s.killed.Store(false) }

// Killed reports whether the switch is killed.
func (s *Switch) Killed() bool { return s.killed.Load() }

// DialHook fails new connections while killed.
func (s *Switch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if s.killed.Load() {
			return nil, s.err
		}
		return next(ctx, network, addr)
	}
}

// ProcessHook fails commands while killed.
func (s *Switch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if s.killed.Load() {
			cmd.SetErr(s.err)
			return s.err
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook fails pipelines and transactions, every command of
// them, while killed.
func (s *Switch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if s.killed.Load() {
			for _, c := range cmds {
				c.SetErr(s.err)
			}
			return s.err
		}
		return next(ctx, cmds)
	}
}
