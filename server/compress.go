package server

import (
	"compress/gzip"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// minGzip is the smallest answer worth compressing: below it gzip's own
// header and trailer (18 bytes) and the extra header line eat the gain.
const minGzip = 1024

// gzipWriters reuses compressors: each holds about 256 KB of state.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	return w
}}

// compress gzips the answers a client accepts gzip for (Accept-Encoding)
// when they are text (JSON, YAML, plain text) of at least minGzip bytes:
// GET /v1/status of a pool of 1,000 nodes is 130 KB as JSON and about a
// tenth of that compressed. It leaves alone event streams (each event must
// reach the browser when written), answers that are already encoded (the
// web UI's files, compressed once at start; /metrics, which promhttp
// compresses) and HEAD requests.
func compress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead || !acceptsGzip(r.Header.Get("Accept-Encoding")) {
			next.ServeHTTP(w, r)
			return
		}
		gw := &gzipResponse{ResponseWriter: w}
		defer gw.finish()
		next.ServeHTTP(gw, r)
	})
}

// acceptsGzip reports whether an Accept-Encoding header takes gzip (or
// anything, "*") with a quality above 0.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				continue
			}
		}
		return true
	}
	return false
}

// compressible reports whether an answer of this Content-Type is worth
// compressing: text of any kind but an event stream.
func compressible(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case mt == "text/event-stream":
		return false
	case strings.HasPrefix(mt, "text/"), mt == "application/json", mt == "application/yaml",
		mt == "image/svg+xml", strings.HasSuffix(mt, "+json"):
		return true
	}
	return false
}

// gzipResponse holds an answer back until it knows whether to compress
// it: at the first write of minGzip bytes (compress), or at the end of a
// shorter one, or at a flush (send as it is).
type gzipResponse struct {
	http.ResponseWriter
	status  int
	buf     []byte
	decided bool
	gz      *gzip.Writer // nil: passing through
}

func (g *gzipResponse) WriteHeader(code int) {
	if g.decided || g.status != 0 {
		if g.decided && g.gz == nil {
			g.ResponseWriter.WriteHeader(code)
		}
		return
	}
	g.status = code
	// Informational and bodiless answers, and those another layer encoded
	// or that must stream, pass through at once.
	h := g.Header()
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified ||
		h.Get("Content-Encoding") != "" || !compressible(h.Get("Content-Type")) {
		g.passThrough()
	}
}

func (g *gzipResponse) Write(b []byte) (int, error) {
	if !g.decided {
		if g.status == 0 {
			g.WriteHeader(http.StatusOK)
		}
		if !g.decided {
			g.buf = append(g.buf, b...)
			if len(g.buf) >= minGzip {
				g.startGzip()
			}
			return len(b), nil
		}
	}
	if g.gz != nil {
		return g.gz.Write(b)
	}
	return g.ResponseWriter.Write(b)
}

// Flush sends what is held (compressed or not) and flushes the connection.
func (g *gzipResponse) Flush() {
	if !g.decided {
		if g.status == 0 {
			g.status = http.StatusOK
		}
		g.passThrough()
	}
	if g.gz != nil {
		_ = g.gz.Flush()
	}
	if f, ok := g.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (g *gzipResponse) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// passThrough sends the status and anything held, uncompressed; what
// follows goes through as written.
func (g *gzipResponse) passThrough() {
	g.decided = true
	if compressible(g.Header().Get("Content-Type")) {
		g.Header().Add("Vary", "Accept-Encoding")
	}
	g.ResponseWriter.WriteHeader(g.status)
	if len(g.buf) > 0 {
		_, _ = g.ResponseWriter.Write(g.buf)
		g.buf = nil
	}
}

// startGzip sends the status with the gzip headers and starts compressing
// what is held.
func (g *gzipResponse) startGzip() {
	g.decided = true
	h := g.Header()
	h.Set("Content-Encoding", "gzip")
	h.Add("Vary", "Accept-Encoding")
	h.Del("Content-Length")
	g.ResponseWriter.WriteHeader(g.status)
	g.gz = gzipWriters.Get().(*gzip.Writer)
	g.gz.Reset(g.ResponseWriter)
	_, _ = g.gz.Write(g.buf)
	g.buf = nil
}

// finish ends the answer: a short one goes out as it is, a compressed one
// gets its gzip trailer.
func (g *gzipResponse) finish() {
	if !g.decided && g.status != 0 {
		g.passThrough()
	}
	if g.gz != nil {
		_ = g.gz.Close()
		gzipWriters.Put(g.gz)
		g.gz = nil
	}
}
