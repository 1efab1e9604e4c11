package perf

import "errors"

// ErrInvalidConfig is what Run and Config.Validate return for a Config that
// cannot be run; the message names the field.
var ErrInvalidConfig = errors.New("perf: invalid config")

// errNotSettled is a wait that timed out; it never leaves the package.
var errNotSettled = errors.New("did not settle")

// errKilled is what a killed node's Redis calls fail with.
var errKilled = errors.New("perf: node killed")
