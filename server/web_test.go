package server_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/server"
)

// The UI itself is driven in headless Chromium against the real
// `allot serve --dev` by cmd/allot/serve_browser_test.go.

// TestWebAssets checks how the UI is served: content types, the strict CSP,
// 404 for unknown files, and that nothing is loaded from elsewhere — for
// the page and every module it imports.
func TestWebAssets(t *testing.T) {
	_, ts := startAPI(t, server.WithTokens(server.Tokens{Admin: "admin-secret"}))
	files := map[string]string{
		"/":            "text/html; charset=utf-8",
		"/index.html":  "text/html; charset=utf-8",
		"/app.js":      "text/javascript; charset=utf-8",
		"/boot.js":     "text/javascript; charset=utf-8",
		"/style.css":   "text/css; charset=utf-8",
		"/favicon.svg": "image/svg+xml",
	}
	get := func(t *testing.T, path string) (*http.Response, string) {
		res, err := http.Get(ts.URL + path) // no token: the UI itself is public
		require.NoError(t, err)
		body, err := io.ReadAll(res.Body)
		require.NoError(t, res.Body.Close())
		require.NoError(t, err)
		return res, string(body)
	}
	// Every module app.js imports, and the modules they import.
	imports := regexp.MustCompile(`(?m)^import .* from '\./(js/)?([a-z]+\.js)';$`)
	queue := []string{"/app.js"}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		_, body := get(t, path)
		for _, m := range imports.FindAllStringSubmatch(body, -1) {
			mod := "/js/" + m[2]
			if _, seen := files[mod]; !seen {
				files[mod] = "text/javascript; charset=utf-8"
				queue = append(queue, mod)
			}
		}
	}
	require.Greater(t, len(files), 10, "app.js imports its modules")
	for path, typ := range files {
		t.Run(path, func(t *testing.T) {
			res, body := get(t, path)
			assert.Equal(t, http.StatusOK, res.StatusCode)
			assert.Equal(t, typ, res.Header.Get("Content-Type"))
			assert.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'self'")
			assert.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
			assert.NotEmpty(t, res.Header.Get("ETag"))
			// The SVG namespace is a name, not a fetch (markup and createElementNS).
			text := strings.ReplaceAll(body, `xmlns="http://www.w3.org/2000/svg"`, "")
			text = strings.ReplaceAll(text, `'http://www.w3.org/2000/svg'`, "")
			for _, external := range []string{"http://", "https://", "//fonts.", "cdn."} {
				assert.False(t, strings.Contains(text, external), "%s refers to %q: the UI must work offline", path, external)
			}
			for _, sink := range []string{".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
				assert.False(t, strings.Contains(text, sink), "%s uses %s: build the DOM from text nodes", path, sink)
			}
		})
	}
	res, err := http.Get(ts.URL + "/nope.js")
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
}
