package server

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
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

// webFile is one embedded file, ready to serve, also gzipped (nil when
// that saves nothing).
type webFile struct {
	body []byte
	gz   []byte
	typ  string
	etag string
}

// gzipped is body compressed at the best level (once, at start), or nil
// when that is not smaller.
func gzipped(body []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(body)
	_ = w.Close()
	if buf.Len() >= len(body) {
		return nil
	}
	return buf.Bytes()
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
		files["/"+strings.TrimPrefix(p, "web/")] = webFile{body: body, gz: gzipped(body), typ: typ, etag: hex.EncodeToString(sum[:8])}
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
		// The gzipped file is another representation with its own ETag.
		body, etag := f.body, `"`+f.etag+`"`
		if f.gz != nil {
			h.Set("Vary", "Accept-Encoding")
			if acceptsGzip(r.Header.Get("Accept-Encoding")) {
				body, etag = f.gz, `"`+f.etag+`-gz"`
				h.Set("Content-Encoding", "gzip")
			}
		}
		h.Set("Content-Type", f.typ)
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache") // revalidate: the ETag makes that cheap
		if etagMatch(r.Header.Get("If-None-Match"), etag) {
			h.Del("Content-Encoding")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}

// etagMatch reports whether an If-None-Match header names etag (or "*").
func etagMatch(header, etag string) bool {
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "W/")
		if part == etag || part == "*" {
			return true
		}
	}
	return false
}
