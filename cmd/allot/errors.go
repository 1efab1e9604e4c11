package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

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
	// Cobra reports an unknown top-level command as a plain error.
	if strings.HasPrefix(err.Error(), "unknown command ") {
		return exitUsage
	}
	if isInvalidInput(err) {
		return exitUsage
	}
	return exitFailure
}

// isInvalidInput reports registry validation errors: the user asked for
// something the registry's rules forbid, which is a usage error.
func isInvalidInput(err error) bool {
	for _, target := range []error{
		registry.ErrInvalidName, registry.ErrInvalidWeight, registry.ErrInvalidMaxNodes,
		registry.ErrInvalidQuota, registry.ErrConfigTooLarge, registry.ErrInvalidConfig,
		registry.ErrInvalidSchedule,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// isConnError reports errors that mean Redis could not be talked to.
func isConnError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &oe) || errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
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
		return fmt.Errorf("group %q: %w (see 'allot group get %s')", name, err, name)
	case errors.Is(err, allocator.ErrLocked):
		return errLocked
	}
	return err
}

// describe renders err as the one line printed after "allot: ".
func (a *app) describe(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from redis at %s within %v (raise --timeout)", a.maskedURL(), a.timeout)
	case isConnError(err) && !strings.Contains(err.Error(), "cannot reach redis"):
		return fmt.Sprintf("cannot reach redis at %s (%s)", a.maskedURL(), oneLine(err.Error()))
	}
	return oneLine(err.Error())
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
