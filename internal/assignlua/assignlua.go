// Package assignlua holds the Lua text that edits the committed assignment
// from outside registry.
//
// The committed assignment — the :assign, :revoked and :holders hashes — is
// registry's: its commit script writes them and its format is registry's
// (comma-joined sorted group names per node; `group@epoch` revoke entries;
// holder counts per group). heartbeat must drop a departed node from them in
// the same script that removes the node (reap, leave), so a node that comes
// back can never read its old groups; registry and heartbeat never import
// each other. This package is that seam: the one copy of the script text,
// written to registry's format, which heartbeat prepends to its reap and
// leave scripts. A change to the format in registry's scripts changes this
// file in the same commit (registry's tests run it against a real commit).
package assignlua

import _ "embed"

// Forget is a Lua prelude defining `forget(id)`: it removes node id's entries
// from :assign (KEYS[5]) and :revoked (KEYS[6]), decrements the holder
// counts in :holders (KEYS[7]) of the groups it was assigned, and marks the
// assignment dirty in :state (KEYS[2]). It returns true when the node had a
// committed entry. The including script must use that KEYS layout.
//
//go:embed forget.lua
var Forget string
