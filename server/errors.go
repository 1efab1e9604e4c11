package server

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

var (
	// ErrDevNodeNotFound is returned by a DevController for an unknown demo node.
	ErrDevNodeNotFound = errors.New("server: no such demo node")
	// ErrInvalidTokens means the tokens cannot be used: two are the same (a
	// request could not tell which role it has), or a node token is empty,
	// lacks a pattern or has a bad one, or a node tokens list is malformed.
	// Its messages name tokens by role and position, never by value.
	ErrInvalidTokens = errors.New("server: invalid tokens")
	// ErrClosed is returned by Run after Close.
	ErrClosed = errors.New("server: closed")
)

// Error codes of the JSON API: {"error":{"code":..., "message":...}}. They are
// stable; clients switch on them.
const (
	CodeBadRequest      = "bad_request"       // 400: malformed request
	CodeInvalid         = "invalid"           // 422: well-formed but fails validation
	CodeNotFound        = "not_found"         // 404
	CodeConflict        = "conflict"          // 409: exists, version mismatch, wrong state
	CodeUnauthorized    = "unauthorized"      // 401: no or unknown token
	CodeForbidden       = "forbidden"         // 403: the token's role may not do this
	CodeTooLarge        = "too_large"         // 413: request body over the limit
	CodeTooManyRequests = "too_many_requests" // 429: over a rate limit (node joins, a node's reports); see Retry-After
	CodeInternal        = "internal"          // 500
	CodeUnavailable     = "unavailable"       // 503: Redis unreachable
)

// Error codes of the browser-safety checks (see browserSafe).
const (
	CodeUnsupportedMedia = "unsupported_media_type" // 415: a write whose body is not JSON (import: or YAML)
	CodeMisdirected      = "misdirected"            // 421: the Host names no host this server answers for
	CodeCrossOrigin      = "cross_origin"           // 403: a request from another web site's page
)

// apiError is an error with the HTTP status and code it is answered with.
type apiError struct {
	status  int
	code    string
	message string
	err     error // the cause, logged for internal errors; never sent
	// retryAfter is sent as Retry-After (whole seconds, at least 1) when
	// set; a 503 without it says 1 s.
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.message }

func (e *apiError) Unwrap() error { return e.err }

func errBadRequest(format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: CodeBadRequest, message: fmt.Sprintf(format, a...)}
}

func errInvalid(format string, a ...any) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, code: CodeInvalid, message: fmt.Sprintf(format, a...)}
}

func errNotFound(format string, a ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: CodeNotFound, message: fmt.Sprintf(format, a...)}
}

func errConflict(format string, a ...any) *apiError {
	return &apiError{status: http.StatusConflict, code: CodeConflict, message: fmt.Sprintf(format, a...)}
}

func errTooLarge(limit int64) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: CodeTooLarge,
		message: fmt.Sprintf("request body larger than %d bytes", limit)}
}

// toAPIError maps a package error to the answer the API gives for it.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errTooLarge(mbe.Limit)
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, ErrDevNodeNotFound):
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, message: err.Error(), err: err}
	case errors.Is(err, registry.ErrExists), errors.Is(err, registry.ErrVersionMismatch),
		errors.Is(err, registry.ErrInvalidState), errors.Is(err, registry.ErrConflict),
		errors.Is(err, registry.ErrStaleEpoch), errors.Is(err, allocator.ErrLocked),
		errors.Is(err, allocator.ErrRetireTimeout):
		return &apiError{status: http.StatusConflict, code: CodeConflict, message: err.Error(), err: err}
	case registry.IsInvalidInput(err), errors.Is(err, heartbeat.ErrInvalidNode), errors.Is(err, heartbeat.ErrInvalidConfig):
		return &apiError{status: http.StatusUnprocessableEntity, code: CodeInvalid, message: err.Error(), err: err}
	case errors.Is(err, heartbeat.ErrTooManyNodes):
		// The namespace has its max_live_nodes: the join may succeed later.
		return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: err.Error(), err: err}
	case registry.IsUnavailable(err):
		return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: "redis unavailable", err: err}
	case errors.Is(err, registry.ErrSecretKeyMissing), errors.Is(err, registry.ErrSecretAuth):
		// A secret value serve cannot open: the message names the group,
		// the config key and the key ID, never the value.
		return &apiError{status: http.StatusInternalServerError, code: CodeInternal, message: err.Error(), err: err}
	}
	return &apiError{status: http.StatusInternalServerError, code: CodeInternal, message: "internal error", err: err}
}
