//go:build unix

package perf

import "syscall"

// openFileLimit is the soft RLIMIT_NOFILE of this process (Go raised it to
// the hard limit at start).
func openFileLimit() (uint64, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, false
	}
	return uint64(l.Cur), true
}
