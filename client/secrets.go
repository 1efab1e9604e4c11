package client

import (
	"errors"
	"fmt"
	"sync"

	"github.com/allot-io/allot/registry"
)

// EnvSecretKeys is the environment variable FromEnv reads secret keys from
// (see WithSecretKeys); default none.
const EnvSecretKeys = "ALLOT_SECRET_KEYS"

// WithSecretKeys gives the node the keys that open the secret values its
// groups' documents hold sealed (encryption at rest, docs/security.md):
// "id:base64-of-32-bytes" entries, comma-separated, as `allot` and `allot
// serve` take them in ALLOT_SECRET_KEYS. Values are opened in memory only.
// A list that does not parse makes New fail with ErrInvalidOption (the
// message never shows key material). A node without the key a held value
// is sealed with fails Start with an error naming the key ID; once started,
// it keeps its last good config and logs the error: it never hands out a
// sealed value as a key. default: none (values must be stored plain).
func WithSecretKeys(spec string) Option {
	return func(o *options) { o.secretKeys, o.secretKeysSet = spec, true }
}

// secretKeysOption parses the spec of WithSecretKeys (nil when not given).
func secretKeysOption(o options) (*registry.SecretKeys, error) {
	if !o.secretKeysSet {
		return nil, nil
	}
	k, err := registry.ParseSecretKeys(o.secretKeys)
	if err != nil {
		return nil, fmt.Errorf("%w: secret keys: %w", ErrInvalidOption, err)
	}
	return k, nil
}

// secretFailure is what a read that met a value the node cannot open
// leaves: before the first assignment it fails Start; after it, the node
// keeps what it has and says so once per distinct error.
type secretFailure struct {
	once   sync.Once
	failed chan struct{} // closed when Start must fail with err
	err    error         // set before failed is closed

	mu     sync.Mutex
	logged string // the error last logged, "" after a good read
}

func newSecretFailure() *secretFailure { return &secretFailure{failed: make(chan struct{})} }

// isSecretError reports whether err is a value the node cannot open: a
// key it lacks, or a sealed value that fails authentication.
func isSecretError(err error) bool {
	return errors.Is(err, registry.ErrSecretKeyMissing) || errors.Is(err, registry.ErrSecretAuth)
}

// noteFetch records the outcome of an assignment read.
func (c *Client) noteFetch(err error) {
	s := c.secretFail
	if err == nil {
		s.mu.Lock()
		s.logged = ""
		s.mu.Unlock()
		return
	}
	if !isSecretError(err) {
		return
	}
	if !c.isReady() {
		s.once.Do(func() {
			var sv *registry.SecretValueError
			if errors.As(err, &sv) {
				err = sv // it names the group, the key and the key ID
			}
			s.err = err
			close(s.failed)
		})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logged == err.Error() {
		return
	}
	s.logged = err.Error()
	c.log.Error("allot: a held group has a secret value this node cannot open; keeping the last good config", "err", err)
}
