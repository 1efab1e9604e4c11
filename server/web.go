package server

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// webFiles is the web UI: static files, no build step, nothing loaded from
// another origin.
//
//go:embed web
var webFiles embed.FS

// webCSP confines the UI to its own origin: no inline script or style, no
// third-party anything, no framing.
const webCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; " +
	"form-action 'none'; frame-ancestors 'none'"

// webTypes are the content types of the files the UI is made of, set here
// rather than taken from the host's mime tables, which differ between systems.
var webTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
}

// webFile is one embedded file, ready to serve.
type webFile struct {
	body []byte
	typ  string
	etag string
}

// webHandler serves the embedded UI at / (index.html) and /<file>. Unknown
// paths answer 404; only GET and HEAD are allowed.
func webHandler() http.Handler {
	files := map[string]webFile{}
	err := fs.WalkDir(webFiles, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := webFiles.ReadFile(p)
		if err != nil {
			return err
		}
		typ, ok := webTypes[path.Ext(p)]
		if !ok {
			typ = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		files["/"+strings.TrimPrefix(p, "web/")] = webFile{body: body, typ: typ, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("server: embedded web UI unreadable: " + err.Error()) // the embed is part of the binary
	}
	files["/"] = files["/index.html"]

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", webCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", f.typ)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache") // revalidate: the ETag makes that cheap
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}
