package redisurl

import (
	"errors"
	"fmt"
)

var (
	// ErrCAFile is returned when ca_file cannot be read or holds no PEM
	// certificate.
	ErrCAFile = errors.New("redisurl: bad ca_file")

	// ErrCAFileWithoutTLS is returned for ca_file on a redis:// URL (use
	// rediss:// for TLS).
	ErrCAFileWithoutTLS = errors.New("redisurl: ca_file needs a rediss:// URL")

	// ErrTLSHandshake is returned by the dial of a TLS client whose server
	// did not complete a TLS handshake within the dial timeout: most often
	// a rediss:// URL pointing at a plain (non-TLS) port.
	ErrTLSHandshake = errors.New("redisurl: TLS handshake failed (is that a TLS port? rediss:// needs one)")

	// ErrRefused is returned by Refusal when the server refused a new
	// connection with an error line of its own (protected mode,
	// maxclients); the line follows it.
	ErrRefused = errors.New("redisurl: redis refused the connection")
	// ErrPasswordEscape is returned for a password holding a '%' that is
	// not followed by two hex digits: a password is percent-decoded, so a
	// literal '%' must be written %25 (other characters may stay raw).
	ErrPasswordEscape = errors.New("redisurl: the password holds a '%' not followed by two hex digits (write a literal % as %25)")
)

// ParseError is returned for a URL that cannot be used. URL is already
// masked, so the error can be printed and logged as is.
type ParseError struct {
	URL string // masked
	Err error
}

// Error is one line: redisurl: parse "redis://user:xxxxx@host": cause.
func (e *ParseError) Error() string {
	return fmt.Sprintf("redisurl: parse %q: %v", e.URL, e.Err)
}

// Unwrap returns the cause.
func (e *ParseError) Unwrap() error { return e.Err }
