package forward

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// File names of grpctap's CA in its directory (DefaultCADir).
const (
	CACertName = "ca.pem"
	CAKeyName  = "ca-key.pem"
)

const (
	caLifetime = 10 * 365 * 24 * time.Hour
	// LeafLifetime is how long a certificate issued for a name is valid;
	// the CA issues a new one when less than leafRenew is left.
	LeafLifetime = 24 * time.Hour
	leafRenew    = time.Hour
	// maxLeaves bounds the cache of issued certificates; past it the
	// cache starts over.
	maxLeaves = 10000
)

// DefaultCADir is where grpctap keeps its CA unless told otherwise:
// $XDG_CONFIG_HOME/grpctap, else the system's user config directory
// (~/.config/grpctap on Linux).
func DefaultCADir() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory for grpctap's CA: %w", err)
	}
	return filepath.Join(dir, "grpctap"), nil
}

// CA is a certificate authority that issues short-lived server
// certificates for the names forward-proxy clients ask for. It is safe
// for concurrent use: a name's certificate is made once however many
// handshakes ask for it at the same time, and cached until near its end.
type CA struct {
	// CertFile and KeyFile are where the CA was read from.
	CertFile, KeyFile string
	// Created says LoadOrCreateCA made the CA just now.
	Created bool

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte

	group singleflight.Group
	mu    sync.Mutex
	cache map[string]*tls.Certificate
	now   func() time.Time
}

// LoadCA reads a CA certificate and its private key (PEM; EC, RSA or
// Ed25519 in PKCS #8, or EC in SEC 1 form: what openssl and mkcert write).
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", certFile, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", certFile, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("CA %s: the certificate is not a CA's (it may not sign certificates)", certFile)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("CA %s: the key is %T; grpctap signs with ECDSA keys only", keyFile, pair.PrivateKey)
	}
	return &CA{
		CertFile: certFile, KeyFile: keyFile,
		cert: cert, key: key,
		pem:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		cache: map[string]*tls.Certificate{},
		now:   time.Now,
	}, nil
}

// LoadOrCreateCA reads the CA in dir (CACertName, CAKeyName), making one
// first when there is none: an ECDSA P-256 key (mode 0600, in a 0700
// directory) and a certificate valid for ten years. Two processes that
// start at once end up with the same CA.
func LoadOrCreateCA(dir string) (*CA, error) {
	certFile, keyFile := filepath.Join(dir, CACertName), filepath.Join(dir, CAKeyName)
	if _, err := os.Stat(keyFile); err == nil {
		return loadWhenWritten(certFile, keyFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("CA directory: %w", err)
	}
	certPEM, keyPEM, err := newCAPEM()
	if err != nil {
		return nil, err
	}
	// The key is written under a temporary name and linked into place,
	// which fails if another process linked its own first; the
	// certificate follows it. A reader that finds the key waits for the
	// certificate (loadWhenWritten).
	tmpKey, err := writeTemp(dir, keyPEM)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmpKey)
	if err := os.Link(tmpKey, keyFile); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadWhenWritten(certFile, keyFile)
		}
		return nil, fmt.Errorf("CA key: %w", err)
	}
	tmpCert, err := writeTemp(dir, certPEM)
	if err == nil {
		err = os.Chmod(tmpCert, 0o644) // the certificate is public
		if err == nil {
			err = os.Rename(tmpCert, certFile)
		}
	}
	if err != nil {
		_ = os.Remove(keyFile)
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := LoadCA(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	ca.Created = true
	return ca, nil
}

// loadWhenWritten loads a CA whose key exists, waiting up to 2 s for the
// certificate another process is writing.
func loadWhenWritten(certFile, keyFile string) (*CA, error) {
	for i := 0; i < 40; i++ {
		if _, err := os.Stat(certFile); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return LoadCA(certFile, keyFile)
}

// writeTemp writes data to a new file of mode 0600 in dir.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-ca-*")
	if err != nil {
		return "", fmt.Errorf("CA: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("CA: %w", err)
	}
	return f.Name(), nil
}

// newCAPEM makes a CA key and its self-signed certificate.
func newCAPEM() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "grpctap CA (" + owner() + ")", Organization: []string{"grpctap"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("make CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// owner names who a new CA is for, user@host, so that a trust store
// holding several says whose each is.
func owner() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return n.Add(n, big.NewInt(1))
}

// PEM is the CA certificate, PEM-encoded, for clients to trust.
func (ca *CA) PEM() []byte { return ca.pem }

// Certificate is the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Leaf returns a certificate for name (a DNS name or an IP address)
// signed by the CA, valid for LeafLifetime, with the CA certificate as
// its chain. Certificates are cached per name; concurrent calls for the
// same name make one certificate.
func (ca *CA) Leaf(name string) (*tls.Certificate, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return nil, errors.New("no name to issue a certificate for")
	}
	if c := ca.cached(name); c != nil {
		return c, nil
	}
	v, err, _ := ca.group.Do(name, func() (any, error) {
		if c := ca.cached(name); c != nil {
			return c, nil
		}
		c, err := ca.issue(name)
		if err != nil {
			return nil, err
		}
		ca.mu.Lock()
		if len(ca.cache) >= maxLeaves {
			clear(ca.cache)
		}
		ca.cache[name] = c
		ca.mu.Unlock()
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

// cached returns name's certificate when it has more than leafRenew left.
func (ca *CA) cached(name string) *tls.Certificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	c := ca.cache[name]
	if c == nil || ca.now().Add(leafRenew).After(c.Leaf.NotAfter) {
		return nil
	}
	return c
}

func (ca *CA) issue(name string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"grpctap"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(LeafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue a certificate for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}
