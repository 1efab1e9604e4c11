package server

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// browserSafe guards every route against other web sites, which matters
// most in open mode (no tokens), where any page the user visits could
// otherwise drive the API through the user's browser:
//
//   - Host (421): only a loopback name, the listen address or an allowed
//     host, so a DNS-rebinding page (evil.example resolving to 127.0.0.1)
//     is refused although the browser thinks it is same-origin. Checked in
//     open mode, and whenever WithAllowedHosts names hosts.
//   - Origin (403): a browser request from another origin (Origin not this
//     server, or Sec-Fetch-Site: cross-site) is refused, so a page elsewhere
//     can neither write nor read. A top-level navigation to the UI (a link
//     from another site) is still allowed: it only loads the page.
//   - Content-Type (415): a write with a body must be application/json
//     (import also YAML). A cross-site form or no-cors fetch can only send
//     text/plain, form or multipart bodies without a CORS preflight, so
//     this refuses them even from a browser that sends no Origin.
func (s *Server) browserSafe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkBrowser(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkBrowser returns the refusal of r, or nil.
func (s *Server) checkBrowser(r *http.Request) *apiError {
	if s.checkHost && !s.hostAllowed(r.Host) {
		return &apiError{status: http.StatusMisdirectedRequest, code: CodeMisdirected,
			message: "host " + quoteHeader(r.Host) + " is not served here: use localhost, the listen address, or allow it with --allowed-host"}
	}
	navigation := (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		r.Header.Get("Sec-Fetch-Mode") == "navigate"
	if origin := r.Header.Get("Origin"); origin != "" && !sameOrigin(origin, r.Host) && !s.originAllowed(origin) {
		return &apiError{status: http.StatusForbidden, code: CodeCrossOrigin,
			message: "cross-origin request refused: Origin " + quoteHeader(origin) + " is not this server"}
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" && !navigation {
		return &apiError{status: http.StatusForbidden, code: CodeCrossOrigin,
			message: "cross-site request refused (Sec-Fetch-Site: cross-site)"}
	}
	if writes(r.Method) && hasBody(r) && !acceptedType(r) {
		want := "application/json"
		if r.URL.Path == "/v1/import" {
			want += " or application/yaml"
		}
		return &apiError{status: http.StatusUnsupportedMediaType, code: CodeUnsupportedMedia,
			message: "Content-Type " + quoteHeader(r.Header.Get("Content-Type")) + " not accepted: send " + want}
	}
	return nil
}

// writes reports whether method may change state.
func writes(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// hasBody reports whether r carries a body. A write without one (curl -X
// POST …/rebalance, DELETE) needs no Content-Type: a browser sends Origin
// with it, which is checked above.
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody) ||
		r.Header.Get("Content-Type") != ""
}

// acceptedType reports whether r's Content-Type is one its route takes:
// application/json everywhere, also YAML for the import.
func acceptedType(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	switch mt {
	case "application/json":
		return true
	case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
		return r.URL.Path == "/v1/import"
	}
	return false
}

// sameOrigin reports whether origin (scheme://host[:port]) names the host
// the request was sent to. The scheme is not compared: behind a TLS proxy
// the page is https while this server sees plain HTTP.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes "null" (sandboxed frames, file:// pages)
	}
	return strings.EqualFold(u.Host, host) || strings.EqualFold(withDefaultPort(u), host)
}

// originAllowed reports whether origin names an allowed host that is not a
// loopback name. Behind a proxy that rewrites Host, the page's origin is
// the public name, given with --allowed-host; loopback names never qualify,
// or a dev server on another local port would pass.
func (s *Server) originAllowed(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	host := normalizeHost(u.Hostname())
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return false
	}
	return slices.Contains(s.allowedHosts, host)
}

// withDefaultPort is u's host with the scheme's port made explicit.
func withDefaultPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// hostAllowed reports whether the Host header names this server: a
// loopback name, or one of the allowed hosts (the listen address among
// them), with any port.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return false
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	return slices.Contains(s.allowedHosts, host)
}

// normalizeHost turns an allowed host as given ("Example.com",
// "10.0.0.5:7070", "[::1]") into the form hostAllowed compares.
func normalizeHost(h string) string {
	h = strings.TrimSpace(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
}

// quoteHeader quotes a header value for an error message, cut short so a
// hostile header cannot fill the log.
func quoteHeader(v string) string {
	const limit = 100
	if len(v) > limit {
		v = v[:limit] + "…"
	}
	return strconv.Quote(v)
}
