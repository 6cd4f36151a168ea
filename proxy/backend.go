package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// BackendTLS configures TLS from the proxy to its backends.
type BackendTLS struct {
	CAFile     string // PEM roots to trust; "" uses the system pool
	CertFile   string // client certificate for mTLS; with KeyFile
	KeyFile    string
	ServerName string // overrides the name checked in the backend's certificate
	// Insecure skips verification of the backend's certificate.
	Insecure bool
}

// Config builds the tls.Config these settings describe.
func (b *BackendTLS) Config() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         b.ServerName,
		InsecureSkipVerify: b.Insecure, //nolint:gosec // the user asked for it and is warned.
	}
	if b.CAFile != "" {
		pem, err := os.ReadFile(b.CAFile)
		if err != nil {
			return nil, fmt.Errorf("backend CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend CA %s: no PEM certificates found", b.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (b.CertFile == "") != (b.KeyFile == "") {
		return nil, errors.New("backend client certificate needs both a cert file and a key file")
	}
	if b.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("backend client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// pool keeps one client connection per backend address, made on first use
// and shared by every call to that backend.
type pool struct {
	opts []grpc.DialOption

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

var errPoolClosed = errors.New("proxy is shutting down")

func newPool(tlsCfg *tls.Config, maxMsg int, extra []grpc.DialOption) *pool {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMsg),
			grpc.MaxCallSendMsgSize(maxMsg),
		),
		// A proxy should notice a dead backend in seconds and pick up a
		// restarted one just as fast, not after grpc-go's 2-minute backoff.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   3 * time.Second,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
		// Messages can be as large as the client's; window sizes for
		// throughput on fast links.
		grpc.WithInitialWindowSize(1 << 20),
		grpc.WithInitialConnWindowSize(4 << 20),
	}
	opts = append(opts, extra...)
	return &pool{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

func (p *pool) get(addr string) (*grpc.ClientConn, error) {
	return p.getWith(addr, addr, addr)
}

// getWith returns the connection kept under key, made first by dialling
// target with the pool's options and then extra; name is the backend for
// errors.
func (p *pool) getWith(key, target, name string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPoolClosed
	}
	if cc, ok := p.conns[key]; ok {
		return cc, nil
	}
	opts := p.opts
	if len(extra) > 0 {
		opts = append(append([]grpc.DialOption(nil), p.opts...), extra...)
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	p.conns[key] = cc
	return cc, nil
}

func (p *pool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for addr, cc := range p.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close backend %s: %w", addr, err))
		}
		delete(p.conns, addr)
	}
	return errors.Join(errs...)
}
