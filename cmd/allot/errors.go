package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/registry"
)

// Exit codes of the allot binary.
const (
	exitOK      = 0 // success
	exitFailure = 1 // the command ran and failed (not found, Redis down, conflict…)
	exitUsage   = 2 // the command line was wrong (unknown flag, bad value, invalid argument)
)

// exitError carries the exit code of a failed command. Errors without one
// exit with exitFailure.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf returns an error that exits with exitUsage.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// usage marks err as a usage error (exit 2), keeping its chain.
func usage(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.code == exitUsage {
		return err
	}
	return &exitError{code: exitUsage, err: err}
}

var (
	errNothingToChange = errors.New("nothing to change (give --set, --unset, --secret, --weight, --max-nodes or --quota)")
	errWeightSyntax    = errors.New("want a number > 0 or auto")
	errLocked          = errors.New("another planner is rebalancing right now; its result will show in 'allot status'")
)

// exitCode maps an error returned by the command tree to the process exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if registry.IsInvalidInput(err) {
		return exitUsage
	}
	return exitFailure
}

// groupError turns a registry error about group name into a line that
// names the problem and the way out.
func groupError(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, registry.ErrNotFound):
		return fmt.Errorf("group %q not found (see 'allot group list')", name)
	case errors.Is(err, registry.ErrExists):
		return fmt.Errorf("group %q already exists (change it with 'allot group update %s')", name, name)
	case errors.Is(err, registry.ErrVersionMismatch):
		return fmt.Errorf("group %q was changed by someone else meanwhile; nothing written (check 'allot group get %s' and retry)", name, name)
	case errors.Is(err, registry.ErrConflict):
		return fmt.Errorf("group %q: too many concurrent writers; nothing written (retry)", name)
	case errors.Is(err, registry.ErrInvalidState):
		return &shownError{msg: fmt.Sprintf("group %q: %s (see 'allot group get %s')", name, registry.Reason(err), name), err: err}
	case errors.Is(err, allocator.ErrLocked):
		return errLocked
	}
	return err
}

// describe renders err as the one line printed after "allot: ".
func (a *app) describe(err error) string {
	switch {
	case errors.As(err, new(*unreachableError)):
		// Already says where and why.
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from redis at %s within %v (raise --timeout)", a.maskedURL(), a.timeout)
	case registry.IsUnavailable(err):
		return (&unreachableError{url: a.maskedURL(), err: err}).Error()
	}
	return oneLine(trimPackage(err))
}

// shownError is an error with the line a user sees instead of its cause's
// message; errors.Is/As still reach the cause.
type shownError struct {
	msg string
	err error
}

func (e *shownError) Error() string { return e.msg }
func (e *shownError) Unwrap() error { return e.err }

// unreachableError says Redis could not be reached at url; it keeps the cause.
type unreachableError struct {
	url string
	err error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach redis at %s (%s)", e.url, oneLine(trimPackage(e.err)))
}

func (e *unreachableError) Unwrap() error { return e.err }

// trimPackage drops the package prefix of a library error ("allocator: ",
// "heartbeat: ") from a message shown to a user: it names the code, not the
// problem. Registry errors lose their operation context too (the user typed
// the operation): see registry.Reason.
func trimPackage(err error) string {
	msg := registry.Reason(err)
	for _, pkg := range []string{"allocator: ", "heartbeat: ", "redisurl: ", "proxy: ", "client: ", "simulate: "} {
		msg = strings.TrimPrefix(msg, pkg)
	}
	return msg
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	parts := strings.Split(s, "\n")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, "; ")
}
