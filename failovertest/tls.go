package failovertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority made for a test: it signs the
// certificates of the TLS servers the kit starts (WithTLS) and of the
// client (ClientConfig). Its key never leaves the process; the files it
// writes are in the servers' own directories.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	client  tls.Certificate
}

// NewCA makes a CA and a client certificate signed by it, valid for a day.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failovertest: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "failovertest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("failovertest: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	certPEM, keyPEM, err := ca.issue("failovertest client", x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	if ca.client, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("failovertest: client certificate: %w", err)
	}
	return ca, nil
}

// CertPEM is the CA's certificate, PEM-encoded (what a CA file holds).
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// ClientConfig returns a TLS configuration that trusts only this CA and
// presents a client certificate it signed: what a test's client uses to
// reach a server started WithTLS(ca). The server name is taken from the
// address dialled (127.0.0.1, which the server certificates carry).
func (ca *CA) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{ca.client}, MinVersion: tls.VersionTLS12}
}

// WriteFiles writes the CA certificate, a client certificate and its key
// into dir (ca.crt, client.crt, client.key) and returns their paths, for
// configurations that name files (config's tls section, redis-cli).
func (ca *CA) WriteFiles(dir string) (caFile, certFile, keyFile string, err error) {
	certPEM, keyPEM, err := ca.issue("failovertest client", x509.ExtKeyUsageClientAuth)
	if err != nil {
		return "", "", "", err
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	for _, f := range []struct {
		path string
		data []byte
	}{{caFile, ca.certPEM}, {certFile, certPEM}, {keyFile, keyPEM}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return "", "", "", err
		}
	}
	return caFile, certFile, keyFile, nil
}

// issue returns a certificate (for 127.0.0.1 and localhost) and its key,
// PEM-encoded, signed by the CA.
func (ca *CA) issue(name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("failovertest: certificate for %s: %w", name, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// serverFiles writes a server certificate, its key and the CA certificate
// into dir and returns the redis-server arguments that use them.
func (ca *CA) serverArgs(dir string) ([]string, error) {
	certPEM, keyPEM, err := ca.issue("failovertest server", x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"server.crt": certPEM, "server.key": keyPEM, "ca.crt": ca.certPEM}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return []string{
		"--tls-cert-file", filepath.Join(dir, "server.crt"),
		"--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.crt"),
		"--tls-auth-clients", "optional",
	}, nil
}
