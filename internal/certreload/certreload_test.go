package certreload_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/certreload"
	"github.com/allot-io/allot/internal/testcert"
)

// clock is a settable time for the reloader's once-a-second check.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func serial(t *testing.T, r *certreload.Reloader) string {
	t.Helper()
	c, err := r.GetCertificate(&tls.ClientHelloInfo{})
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	require.NoError(t, err)
	return leaf.SerialNumber.String()
}

func TestReloadsARenewedPair(t *testing.T) {
	dir := t.TempDir()
	first := testcert.Write(t, dir)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	r, err := certreload.New(first.CertFile, first.KeyFile, certreload.WithClock(clk.now))
	require.NoError(t, err)
	assert.Equal(t, first.Serial.String(), serial(t, r))

	second := testcert.Write(t, dir)
	assert.Equal(t, first.Serial.String(), serial(t, r), "checked at most once per CheckEvery")
	clk.add(certreload.CheckEvery)
	assert.Equal(t, second.Serial.String(), serial(t, r), "the renewed pair is served")
	assert.NoError(t, r.Err())
}

func TestKeepsTheLastGoodPair(t *testing.T) {
	dir := t.TempDir()
	good := testcert.Write(t, dir)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	r, err := certreload.New(good.CertFile, good.KeyFile, certreload.WithClock(clk.now))
	require.NoError(t, err)

	// A renewal caught half way: the new certificate, the old key.
	other := t.TempDir()
	next := testcert.Write(t, other)
	data, err := os.ReadFile(next.CertFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(good.CertFile+".tmp", data, 0o600))
	require.NoError(t, os.Rename(good.CertFile+".tmp", good.CertFile))
	clk.add(certreload.CheckEvery)
	assert.Equal(t, good.Serial.String(), serial(t, r), "a pair that does not load leaves the old one in service")
	assert.ErrorContains(t, r.Err(), "certreload: load")

	// The key arrives: the new pair is served.
	key, err := os.ReadFile(next.KeyFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(good.KeyFile, key, 0o600))
	clk.add(certreload.CheckEvery)
	assert.Equal(t, next.Serial.String(), serial(t, r))
	assert.NoError(t, r.Err())
}

func TestNewRefusesWhatDoesNotLoad(t *testing.T) {
	dir := t.TempDir()
	p := testcert.Write(t, dir)
	_, err := certreload.New(p.CertFile, "", certreload.WithClock(time.Now))
	assert.ErrorContains(t, err, "need both")
	_, err = certreload.New(p.CertFile, filepath.Join(dir, "missing.pem"))
	assert.ErrorContains(t, err, "missing.pem")
	_, err = certreload.New(p.KeyFile, p.CertFile) // swapped
	assert.ErrorContains(t, err, "certreload: load")
}
