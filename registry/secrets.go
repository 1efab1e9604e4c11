package registry

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// A secret mark is sticky. Once a config key is secret, its values stay
// masked in every output that shows a kept version: History views mask the
// keys secret in any kept version (a value stored before the key was
// marked is as secret as the ones after), Rollback keeps the marks of the
// current version, and only Change.Unsecret — an explicit act of an admin,
// recorded as a version of its own — removes a mark.

// SecretUnion returns the config keys secret in any of versions, sorted.
func SecretUnion(versions []Group) []string {
	var keys []string
	for _, g := range versions {
		for _, k := range g.SecretKeys {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// MaskHistory returns copies of versions (as History returns them) whose
// values are masked for every key secret in any of them. Each copy keeps
// its own SecretKeys, so a diff still shows when a mark was set.
func MaskHistory(versions []Group) []Group {
	secret := SecretUnion(versions)
	out := make([]Group, len(versions))
	for i, g := range versions {
		out[i] = g.MaskedKeys(secret)
	}
	return out
}

// MaskedKeys is Masked for the secret keys of g and keys besides.
func (g Group) MaskedKeys(keys []string) Group {
	m := g.Masked()
	for _, k := range keys {
		if v, ok := g.Config[k]; ok && !g.IsSecret(k) {
			m.Config[k] = maskValue(v)
		}
	}
	return m
}

// keepMarks is the secret keys of a rollback from cur to old's settings:
// old's marks and cur's, for the keys old's config holds.
func keepMarks(cur, old Group) []string {
	keys := []string{}
	for _, k := range SecretUnion([]Group{cur, old}) {
		if _, ok := old.Config[k]; ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// validUTF8 refuses a config whose keys or values are not valid UTF-8:
// JSON would silently turn such bytes into U+FFFD, storing a value that is
// not the one given.
func validUTF8(config map[string]string) error {
	for k, v := range config {
		if !utf8.ValidString(k) {
			return fmt.Errorf("%w: key %q is not valid UTF-8", ErrInvalidConfig, k)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: value of %q is not valid UTF-8", ErrInvalidConfig, k)
		}
	}
	return nil
}
