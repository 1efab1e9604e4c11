package proxy

import "errors"

var (
	// ErrInvalidOption is returned by New for an option that cannot work:
	// no client, an upstream that is not an absolute http(s) URL, a bad
	// auth template, a limit or timeout not above 0.
	ErrInvalidOption = errors.New("proxy: invalid option")

	// ErrUnknownConfigKey is returned by Check when an auth template names
	// a config key that no group of the pool has: a typo would fail every
	// call, so the proxy refuses to start.
	ErrUnknownConfigKey = errors.New("proxy: unknown config key")

	// errUpstreamTimeout is the cause of a call the upstream did not
	// answer within the upstream timeout.
	errUpstreamTimeout = errors.New("proxy: upstream timeout")

	// errMisconfigured says the lease's group cannot fill an auth
	// template (the key is missing, or its value cannot go in a header).
	errMisconfigured = errors.New("proxy: group cannot fill the auth templates")
)
