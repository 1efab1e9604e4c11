package redistest

import "errors"

var (
	// errNotInstalled is the one line a test fails with when the binary is missing.
	errNotInstalled = errors.New("redistest: redis-server not found; install it (apt-get install redis-server)")
	// errPortInUse means redis-server could not bind its port (another process
	// took it between FreePort and the start); the caller picks another port.
	errPortInUse = errors.New("redistest: port already in use")
	// errNotRunning is returned by operations that need a live process.
	errNotRunning = errors.New("redistest: server not running")
)
