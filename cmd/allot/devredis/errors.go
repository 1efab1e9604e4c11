package devredis

import "errors"

var (
	// ErrUnknownNode is returned for a demo node ID the fleet does not have.
	ErrUnknownNode = errors.New("devredis: no such demo node")
	// ErrClosed is returned by a Fleet after Close.
	ErrClosed = errors.New("devredis: fleet closed")
	// errCrashed is what a stopped node's Redis connection answers: the node
	// is gone as if its process died.
	errCrashed = errors.New("devredis: demo node stopped")
)
