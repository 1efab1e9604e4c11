package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"os"
	"strings"
)

// Tokens are the bearer tokens of the three roles. An empty token disables
// its role. When all three are empty every route is open.
type Tokens struct {
	// Admin may do everything, including reading secret values (?reveal=true).
	Admin string
	// Read may call every GET route of the API except the node protocol,
	// with secrets masked.
	Read string
	// Node may call the node protocol only (heartbeat, assignment, leave).
	Node string
}

// TokensFromEnv reads ALLOT_ADMIN_TOKEN, ALLOT_READ_TOKEN and ALLOT_NODE_TOKEN
// from the process environment (see TokensFrom).
func TokensFromEnv() Tokens { return TokensFrom(os.Getenv) }

// TokensFrom reads ALLOT_ADMIN_TOKEN, ALLOT_READ_TOKEN and ALLOT_NODE_TOKEN
// through getenv, trimming surrounding space (a token pasted with a newline
// is still the token). `allot serve` reads its tokens here.
func TokensFrom(getenv func(string) string) Tokens {
	return Tokens{
		Admin: strings.TrimSpace(getenv("ALLOT_ADMIN_TOKEN")),
		Read:  strings.TrimSpace(getenv("ALLOT_READ_TOKEN")),
		Node:  strings.TrimSpace(getenv("ALLOT_NODE_TOKEN")),
	}
}

// Open reports whether no token is configured, leaving every route open.
func (t Tokens) Open() bool { return t.Admin == "" && t.Read == "" && t.Node == "" }

func (t Tokens) validate() error {
	if (t.Admin != "" && (t.Admin == t.Read || t.Admin == t.Node)) || (t.Read != "" && t.Read == t.Node) {
		return ErrInvalidTokens
	}
	return nil
}

// role is what a request's token lets it do.
type role int

const (
	roleNone role = iota
	roleNode
	roleRead
	roleAdmin
)

func (r role) String() string {
	switch r {
	case roleAdmin:
		return "admin"
	case roleRead:
		return "read"
	case roleNode:
		return "node"
	}
	return "none"
}

// access is what a route requires.
type access int

const (
	public      access = iota // anyone
	readAccess                // read or admin
	nodeAccess                // node or admin
	adminAccess               // admin
)

func (a access) allows(r role) bool {
	switch a {
	case public:
		return true
	case readAccess:
		return r == roleRead || r == roleAdmin
	case nodeAccess:
		return r == roleNode || r == roleAdmin
	}
	return r == roleAdmin
}

// match returns the role of token (roleNone when it matches none). Every
// configured token is compared, in constant time over hashes, so neither the
// position of the first differing byte nor the length leaks.
func (t Tokens) match(token string) role {
	h := sha256.Sum256([]byte(token))
	found := roleNone
	for _, c := range []struct {
		tok  string
		role role
	}{{t.Admin, roleAdmin}, {t.Read, roleRead}, {t.Node, roleNode}} {
		if c.tok == "" {
			continue
		}
		ch := sha256.Sum256([]byte(c.tok))
		if subtle.ConstantTimeCompare(h[:], ch[:]) == 1 {
			found = c.role
		}
	}
	return found
}

// authorize finds the request's role and checks it against need.
func (s *Server) authorize(r *http.Request, need access) (role, *apiError) {
	if s.tokens.Open() {
		return roleAdmin, nil
	}
	if need == public {
		return roleNone, nil
	}
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return roleNone, &apiError{status: http.StatusUnauthorized, code: CodeUnauthorized,
			message: "missing bearer token (Authorization: Bearer …)"}
	}
	got := s.tokens.match(token)
	if got == roleNone {
		return roleNone, &apiError{status: http.StatusUnauthorized, code: CodeUnauthorized, message: "unknown token"}
	}
	if !need.allows(got) {
		return got, &apiError{status: http.StatusForbidden, code: CodeForbidden,
			message: "the " + got.String() + " token may not use this route"}
	}
	return got, nil
}

type roleKey struct{}

func withRole(ctx context.Context, r role) context.Context {
	return context.WithValue(ctx, roleKey{}, r)
}

func roleOf(ctx context.Context) role {
	r, _ := ctx.Value(roleKey{}).(role)
	return r
}
