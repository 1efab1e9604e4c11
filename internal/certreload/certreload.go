// Package certreload serves a TLS certificate from a pair of PEM files and
// picks up a renewed pair without a restart: cert-manager, and any Secret
// mounted by Kubernetes, replace the files in place (an atomic symlink swap),
// and a server that read them once would serve an expired certificate.
//
// The files are checked at most once per CheckEvery, on a handshake: a stat
// of each file, and a reload when either changed (modification time, size or
// the file itself). A pair that does not load (a half-written renewal, a key
// that does not match) leaves the last good certificate in service; the error
// is kept for Err and logged once per change.
package certreload

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CheckEvery is the longest a renewed pair waits before it is served.
const CheckEvery = time.Second

// Reloader holds the certificate of one cert/key pair of files.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	seen    [2]stamp // the files as last loaded (or last failed)
	checked time.Time
	err     error // the last failed reload, nil after a good one
}

// stamp is what a stat says of a file: enough to see it replaced.
type stamp struct {
	mod  time.Time
	size int64
	file os.FileInfo
}

func (s stamp) same(o stamp) bool {
	return s.mod.Equal(o.mod) && s.size == o.size && s.file != nil && o.file != nil && os.SameFile(s.file, o.file)
}

// Option configures a Reloader.
type Option func(*Reloader)

// WithLogger logs failed reloads and each new certificate (default: none).
func WithLogger(l *slog.Logger) Option { return func(r *Reloader) { r.log = l } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(r *Reloader) { r.now = now } }

// New loads the pair: an error when it does not load now, so a server never
// starts without a certificate.
func New(certFile, keyFile string, opts ...Option) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("certreload: need both a certificate and a key file")
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, o := range opts {
		o(r)
	}
	stamps, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.seen, r.checked = cert, stamps, r.now()
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// reloaded first when the files changed since the last check.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= CheckEvery {
		r.checked = now
		r.refresh()
	}
	return r.cert, nil
}

// Err is why the files on disk are not being served, nil when they are.
func (r *Reloader) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// TLSConfig is a server configuration serving the pair (TLS 1.2 or later).
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// refresh reloads the pair when a file changed. Called with mu held.
func (r *Reloader) refresh() {
	stamps, err := r.stat()
	if err != nil {
		r.fail(err)
		return
	}
	if stamps[0].same(r.seen[0]) && stamps[1].same(r.seen[1]) {
		return
	}
	r.seen = stamps // a bad pair is tried once per change, not per handshake
	cert, err := r.load()
	if err != nil {
		r.fail(err)
		return
	}
	r.cert, r.err = cert, nil
	r.log.Info("tls certificate reloaded", "cert", r.certFile)
}

func (r *Reloader) fail(err error) {
	if r.err == nil || r.err.Error() != err.Error() {
		r.log.Warn("tls certificate not reloaded; serving the last good one", "err", err)
	}
	r.err = err
}

func (r *Reloader) stat() ([2]stamp, error) {
	var out [2]stamp
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return out, fmt.Errorf("certreload: %w", err)
		}
		out[i] = stamp{mod: fi.ModTime(), size: fi.Size(), file: fi}
	}
	return out, nil
}

func (r *Reloader) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("certreload: load %s and %s: %w", r.certFile, r.keyFile, err)
	}
	return &cert, nil
}
