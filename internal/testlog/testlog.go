// Package testlog holds what tests use to read what a process logs.
package testlog

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is a bytes.Buffer that a logger (or a child process's output) may
// write while a test reads it: every method takes the same lock.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Count is how many times s was written so far (strings.Count).
func (b *Buffer) Count(s string) int { return strings.Count(b.String(), s) }
