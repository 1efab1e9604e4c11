package proxy

import (
	"fmt"
	"net/http"
	"strings"
)

// template is a header or query value with {key} placeholders filled from
// a group's config.
type template struct {
	text  string // as given, for messages
	parts []part
}

// part is a literal, or (key != "") a config key to fill in.
type part struct {
	lit string
	key string
}

// parseTemplate reads "Bearer {api_key}": {key} names a config key (any
// text but braces), {{ and }} are literal braces, and any other brace is
// an error.
func parseTemplate(s string) (template, error) {
	t := template{text: s}
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '{' && strings.HasPrefix(s[i:], "{{"), c == '}' && strings.HasPrefix(s[i:], "}}"):
			lit.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexAny(s[i+1:], "{}")
			if end < 0 || s[i+1+end] != '}' {
				return template{}, fmt.Errorf("%q: unclosed { at byte %d (write {{ for a literal brace)", s, i)
			}
			key := s[i+1 : i+1+end]
			if key == "" {
				return template{}, fmt.Errorf("%q: empty {} at byte %d", s, i)
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, part{lit: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, part{key: key})
			i += 1 + end
		case c == '}':
			return template{}, fmt.Errorf("%q: stray } at byte %d (write }} for a literal brace)", s, i)
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, part{lit: lit.String()})
	}
	return t, nil
}

// keys lists the config keys the template names.
func (t template) keys() []string {
	var ks []string
	for _, p := range t.parts {
		if p.key != "" {
			ks = append(ks, p.key)
		}
	}
	return ks
}

// fill renders the template with config; missing is the first key config
// lacks ("" when every key was there).
func (t template) fill(config func(string) (string, bool)) (v, missing string) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.key == "" {
			b.WriteString(p.lit)
			continue
		}
		val, ok := config(p.key)
		if !ok {
			return "", p.key
		}
		b.WriteString(val)
	}
	return b.String(), ""
}

// authHeader is one WithAuthHeader: a canonical header name and its value.
type authHeader struct {
	name  string
	value template
}

// authParam is one WithAuthQuery: a query parameter and its value.
type authParam struct {
	name  string
	value template
}

// notAuthHeaders are headers an auth template may not set: the transport
// writes them, or they describe the connection, not the call.
var notAuthHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Keep-Alive": true, "Upgrade": true, "Te": true, "Trailer": true,
	"Proxy-Connection": true, "Content-Type": true,
}

// parseAuthHeader reads "Name: value".
func parseAuthHeader(spec string) (authHeader, error) {
	name, value, ok := strings.Cut(spec, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return authHeader{}, fmt.Errorf("auth header %q: want \"Name: value\", e.g. \"Authorization: Bearer {api_key}\"", spec)
	}
	if !validHeaderName(name) {
		return authHeader{}, fmt.Errorf("auth header %q: %q is not a header name", spec, name)
	}
	name = http.CanonicalHeaderKey(name)
	if notAuthHeaders[name] {
		return authHeader{}, fmt.Errorf("auth header %q: %s is not a header the proxy may set", spec, name)
	}
	t, err := parseTemplate(strings.TrimSpace(value))
	if err != nil {
		return authHeader{}, fmt.Errorf("auth header %s: %w", name, err)
	}
	return authHeader{name: name, value: t}, nil
}

// parseAuthParam reads "name=value".
func parseAuthParam(spec string) (authParam, error) {
	name, value, ok := strings.Cut(spec, "=")
	if !ok || name == "" || strings.ContainsAny(name, "&#{} ") {
		return authParam{}, fmt.Errorf("auth query %q: want \"name=value\", e.g. \"key={api_key}\"", spec)
	}
	t, err := parseTemplate(value)
	if err != nil {
		return authParam{}, fmt.Errorf("auth query %s: %w", name, err)
	}
	return authParam{name: name, value: t}, nil
}

// validHeaderName reports whether s is an RFC 9110 field name (a token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v can be sent as a header value: no
// control characters but tab (a config value with a newline would split
// the header).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
