package server

import "github.com/allot-io/allot/registry"

// revealable refuses a reveal of groups holding a value serve cannot open
// (its key is not in serve's key list): reveal answers plain text or an
// error naming the key ID, never a sealed value.
func revealable(show bool, groups ...registry.Group) error {
	if !show {
		return nil
	}
	return registry.RequireOpen(groups...)
}
