package redistest

import (
	"fmt"
	"os"
	"os/exec"
)

// StartMain runs a standalone redis-server for a whole test binary — from
// TestMain, so runnable Example functions (which get no testing.TB) can talk
// to a real server. stop kills the server and removes its directory; call it
// after m.Run.
func StartMain() (s *Server, stop func(), err error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, nil, errNotInstalled
	}
	dir, err := os.MkdirTemp("", "redistest-main-")
	if err != nil {
		return nil, nil, fmt.Errorf("redistest: temp dir: %w", err)
	}
	s = &Server{dir: dir, confPath: dir + "/redis.conf"}
	stop = func() {
		s.cleanup()
		_ = os.RemoveAll(dir)
	}
	if err := s.startFresh(freePort); err != nil {
		stop()
		return nil, nil, err
	}
	return s, stop, nil
}
