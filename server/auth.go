package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"unicode"
)

// Tokens are the bearer tokens of the roles. An empty token disables its
// role. When none is given every route is open.
type Tokens struct {
	// Admin may do everything, including reading secret values (?reveal=true).
	Admin string
	// Read may call every GET route of the API except the node protocol,
	// with secrets masked.
	Read string
	// Node may call the node protocol only (heartbeat, assignment, report,
	// leave), for any node ID: the pattern "*" (ALLOT_NODE_TOKEN). Whoever
	// holds it can join under any free ID and so receive the config,
	// secrets included, of whatever groups that ID is assigned; prefer
	// Nodes, which bind each token to the IDs of its nodes.
	Node string
	// Nodes are node tokens bound to node ID patterns (ALLOT_NODE_TOKENS,
	// --node-tokens): each may call the node protocol only for the IDs its
	// pattern matches.
	Nodes []NodeToken
}

// NodeToken is a node token bound to the node IDs it may act for.
type NodeToken struct {
	// Token is the bearer token.
	Token string
	// Pattern selects the node IDs, in path.Match syntax: '*' matches any
	// run of characters but '/', '?' one character but '/', [a-z] a class,
	// '\' escapes. "api-*" matches api-1 and api-eu-2. The pattern "*"
	// alone matches every ID, even one holding '/'.
	Pattern string
}

// AnyNode is the pattern of a node token that may act for every node ID:
// ALLOT_NODE_TOKEN's.
const AnyNode = "*"

// TokensFromEnv reads the tokens from the process environment (see
// TokensFrom).
func TokensFromEnv() (Tokens, error) { return TokensFrom(os.Getenv) }

// TokensFrom reads ALLOT_ADMIN_TOKEN, ALLOT_READ_TOKEN, ALLOT_NODE_TOKEN and
// ALLOT_NODE_TOKENS through getenv, trimming surrounding space (a token
// pasted with a newline is still the token). ALLOT_NODE_TOKENS is a
// comma-separated list of TOKEN=PATTERN (see ParseNodeTokens). `allot
// serve` reads its tokens here. The error never quotes a token.
func TokensFrom(getenv func(string) string) (Tokens, error) {
	t := Tokens{
		Admin: strings.TrimSpace(getenv("ALLOT_ADMIN_TOKEN")),
		Read:  strings.TrimSpace(getenv("ALLOT_READ_TOKEN")),
		Node:  strings.TrimSpace(getenv("ALLOT_NODE_TOKEN")),
	}
	nodes, err := ParseNodeTokens(getenv("ALLOT_NODE_TOKENS"))
	if err != nil {
		return Tokens{}, fmt.Errorf("ALLOT_NODE_TOKENS: %w", err)
	}
	t.Nodes = nodes
	return t, nil
}

// ParseNodeTokens reads node tokens written TOKEN=PATTERN, comma-separated
// ("tok1=api-*,tok2=worker-?"; space around entries is ignored, an empty
// text is no token). The token ends at the last '=', so a token may hold
// '=' (base64 padding) and a pattern may not. The error names the entry by
// position and never quotes a token. Validity (empty, duplicate, bad
// pattern) is checked by New.
func ParseNodeTokens(text string) ([]NodeToken, error) {
	var out []NodeToken
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	for i, e := range strings.Split(text, ",") {
		e = strings.TrimSpace(e)
		at := strings.LastIndex(e, "=")
		if at < 0 {
			return nil, fmt.Errorf("%w: entry %d: want TOKEN=PATTERN", ErrInvalidTokens, i+1)
		}
		out = append(out, NodeToken{Token: strings.TrimSpace(e[:at]), Pattern: strings.TrimSpace(e[at+1:])})
	}
	return out, nil
}

// ReadNodeTokens reads a node tokens file (`allot serve --node-tokens`):
// one "TOKEN PATTERN" per line, separated by spaces or tabs; blank lines
// and lines starting with '#' are ignored, and so is a third field that
// starts with '#'. The error names the line and never quotes a token.
func ReadNodeTokens(r io.Reader) ([]NodeToken, error) {
	var out []NodeToken
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
			continue
		case len(f) == 2, len(f) > 2 && strings.HasPrefix(f[2], "#"):
			out = append(out, NodeToken{Token: f[0], Pattern: f[1]})
		default:
			return nil, fmt.Errorf("%w: line %d: want TOKEN PATTERN", ErrInvalidTokens, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTokens, err)
	}
	return out, nil
}

// Open reports whether no token is configured, leaving every route open.
func (t Tokens) Open() bool {
	return t.Admin == "" && t.Read == "" && t.Node == "" && len(t.Nodes) == 0
}

// credentials lists every configured token with its role and pattern.
func (t Tokens) credentials() []credential {
	var cs []credential
	add := func(tok string, c credential) {
		if tok != "" {
			c.hash = sha256.Sum256([]byte(tok))
			cs = append(cs, c)
		}
	}
	add(t.Admin, credential{role: roleAdmin, name: "the admin token"})
	add(t.Read, credential{role: roleRead, name: "the read token"})
	add(t.Node, credential{role: roleNode, pattern: AnyNode, name: "ALLOT_NODE_TOKEN"})
	for i, n := range t.Nodes {
		add(n.Token, credential{role: roleNode, pattern: n.Pattern, name: fmt.Sprintf("node token %d (pattern %q)", i+1, n.Pattern)})
	}
	return cs
}

// Validate refuses tokens a server cannot tell apart (two the same) or a
// node token that could never work (empty, holding white space, without a
// pattern, or with a pattern path.Match refuses or that holds a comma,
// space or control character, which no node ID holds). New calls it; a
// command may call it before it connects anywhere. The error wraps
// ErrInvalidTokens and names tokens by role and position, never by value.
func (t Tokens) Validate() error {
	seen := map[[sha256.Size]byte]string{}
	for _, c := range t.credentials() {
		if prev, ok := seen[c.hash]; ok {
			return fmt.Errorf("%w: %s is the same as %s", ErrInvalidTokens, c.name, prev)
		}
		seen[c.hash] = c.name
	}
	for i, n := range t.Nodes {
		name := fmt.Sprintf("node token %d", i+1)
		switch {
		case n.Token == "":
			return fmt.Errorf("%w: %s (pattern %q) is empty", ErrInvalidTokens, name, n.Pattern)
		case strings.ContainsFunc(n.Token, unicode.IsSpace):
			return fmt.Errorf("%w: %s (pattern %q) holds white space", ErrInvalidTokens, name, n.Pattern)
		case n.Pattern == "":
			return fmt.Errorf("%w: %s has no node ID pattern", ErrInvalidTokens, name)
		case strings.ContainsFunc(n.Pattern, func(r rune) bool { return r == ',' || unicode.IsSpace(r) || unicode.IsControl(r) }):
			return fmt.Errorf("%w: %s: pattern %q holds a comma, space or control character, which no node ID holds", ErrInvalidTokens, name, n.Pattern)
		}
		if _, err := path.Match(n.Pattern, ""); err != nil {
			return fmt.Errorf("%w: %s: pattern %q: %w", ErrInvalidTokens, name, n.Pattern, err)
		}
	}
	return nil
}

// credential is what one token lets a request do.
type credential struct {
	role role
	hash [sha256.Size]byte
	// pattern is the node IDs a node token may act for (AnyNode: all).
	pattern string
	// name says which token this is in errors, never its value.
	name string
}

// mayActFor reports whether the credential may use the node protocol for
// node id: a node token only within its pattern, admin for every node.
func (c credential) mayActFor(id string) bool {
	if c.role != roleNode || c.pattern == AnyNode {
		return true
	}
	ok, err := path.Match(c.pattern, id)
	return ok && err == nil
}

// joinKey names the credential in the join limit's keys: the first 16 hex
// digits of the token's SHA-256 (never the token).
func (c credential) joinKey() string { return hex.EncodeToString(c.hash[:8]) }

// tokenTable finds a request's credential: a map from the SHA-256 of each
// token, then a constant-time compare of the hashes, so the time taken
// depends on neither the position of a differing byte nor the length.
type tokenTable map[[sha256.Size]byte]credential

func newTokenTable(t Tokens) tokenTable {
	tt := tokenTable{}
	for _, c := range t.credentials() {
		tt[c.hash] = c
	}
	return tt
}

// match returns the credential of token (ok false when it matches none).
func (tt tokenTable) match(token string) (credential, bool) {
	h := sha256.Sum256([]byte(token))
	c, ok := tt[h]
	if !ok || subtle.ConstantTimeCompare(h[:], c.hash[:]) != 1 {
		return credential{}, false
	}
	return c, true
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

// authorize finds the request's credential and checks it against need. A
// node token acting for a node ID outside its pattern is refused here,
// before any handler runs and so before any Redis write.
func (s *Server) authorize(r *http.Request, need access) (credential, *apiError) {
	if s.tokens.Open() {
		return credential{role: roleAdmin}, nil
	}
	if need == public {
		return credential{}, nil
	}
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return credential{}, &apiError{status: http.StatusUnauthorized, code: CodeUnauthorized,
			message: "missing bearer token (Authorization: Bearer …)"}
	}
	got, ok := s.tokenTable.match(token)
	if !ok {
		return credential{}, &apiError{status: http.StatusUnauthorized, code: CodeUnauthorized, message: "unknown token"}
	}
	if !need.allows(got.role) {
		return got, &apiError{status: http.StatusForbidden, code: CodeForbidden,
			message: "the " + got.role.String() + " token may not use this route"}
	}
	if need == nodeAccess {
		if id := r.PathValue("id"); !got.mayActFor(id) {
			return got, &apiError{status: http.StatusForbidden, code: CodeForbidden,
				message: fmt.Sprintf("this node token may act only for node IDs matching %q; %q does not match", got.pattern, id)}
		}
	}
	return got, nil
}

type roleKey struct{}

func withCredential(ctx context.Context, c credential) context.Context {
	return context.WithValue(ctx, roleKey{}, c)
}

func credentialOf(ctx context.Context) credential {
	c, _ := ctx.Value(roleKey{}).(credential)
	return c
}

func roleOf(ctx context.Context) role { return credentialOf(ctx).role }
