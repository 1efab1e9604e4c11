package yamlguard

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrTooLarge means the input is larger than MaxBytes.
	ErrTooLarge = errors.New("yamlguard: input larger than 8 MiB")
	// ErrAlias means the input uses a YAML alias (*name).
	ErrAlias = errors.New("yamlguard: YAML aliases (*name) are not allowed; write each value out in full")
	// ErrTooManyValues means the input holds more than MaxValues values.
	ErrTooManyValues = errors.New("yamlguard: too many values (at most 1048576)")
)

// Error is a refusal at a line of the input. It unwraps to ErrAlias or
// ErrTooManyValues.
type Error struct {
	// Line is the 1-based line of the input where the refusal happened.
	Line int
	// Err is ErrAlias or ErrTooManyValues.
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("line %d: %s", e.Line, strings.TrimPrefix(e.Err.Error(), "yamlguard: "))
}

func (e *Error) Unwrap() error { return e.Err }
