package redistest

import (
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

// fatalRecorder is a testing.TB whose Fatal records the message and ends
// the calling goroutine, so a test can check how Start fails.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.mu.Lock()
	f.msg = fmtArgs(args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func fmtArgs(args ...any) string {
	if len(args) == 1 {
		if err, ok := args[0].(error); ok {
			return err.Error()
		}
	}
	return "unexpected Fatal arguments"
}

// Not parallel: it changes PATH for the whole process.
func TestStartWithoutRedisServerFailsWithInstallHint(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f)
	}()
	<-done
	assert.Equal(t, "redistest: redis-server not found; install it (apt-get install redis-server)", f.msg)
}
