// Package testcert writes short-lived self-signed TLS certificates for tests
// of allot's TLS listener: real certificates, made in-process, so no test
// needs openssl or a checked-in key.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Pair is one certificate written to disk.
type Pair struct {
	CertFile, KeyFile string
	// Serial identifies this certificate among the ones a test made.
	Serial *big.Int
	// Pool trusts this certificate (it is its own CA).
	Pool *x509.CertPool
	// PEM is the certificate, for a CA bundle file.
	PEM []byte
}

// Write makes a self-signed certificate for hosts (names or IPs; default
// 127.0.0.1 and localhost) and writes it as tls.crt and tls.key in dir (the names of a Kubernetes TLS Secret),
// replacing any pair there by rename, as cert-manager's volume swap does.
func Write(t testing.TB, dir string, hosts ...string) Pair {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testcert: key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("testcert: serial: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "allot test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testcert: certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testcert: key encoding: %v", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	p := Pair{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Serial: serial, PEM: certPEM}
	replace(t, p.KeyFile, keyPEM)
	replace(t, p.CertFile, certPEM)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testcert: parse: %v", err)
	}
	p.Pool = x509.NewCertPool()
	p.Pool.AddCert(cert)
	return p
}

// replace writes data to a temporary file beside name and renames it over
// name, so a reader sees the old file or the new one, never half of it.
func replace(t testing.TB, name string, data []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatalf("testcert: %v", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatalf("testcert: %v", err)
	}
}
