package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/forward"
	"github.com/grpctap/grpctap/proxy"
)

// forwardFlags configure forward-proxy mode (HTTP CONNECT on --listen).
type forwardFlags struct {
	resolve       []string
	allow         []string
	ports         string
	noIntercept   []string
	caCert, caKey string
}

func (f *forwardFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.resolve, "resolve", nil, "HOST=ADDR or HOST=ADDR:PORT: a CONNECT to HOST dials ADDR instead (keeping the port asked for unless PORT is given), as curl --resolve; repeatable")
	fs.StringArrayVar(&f.allow, "forward-allow", nil, "CIDR: accept CONNECT (forward-proxy mode) from this network too; by default only loopback clients may CONNECT; repeatable")
	fs.StringVar(&f.ports, "forward-ports", "any", "ports CONNECT may ask for: ports and ranges (443,8443,9000-9100) or any; others are refused with 403")
	fs.StringArrayVar(&f.noIntercept, "no-intercept", nil, "GLOB: never intercept CONNECT tunnels to hosts matching GLOB (*.example.com): copy their bytes blind, unrecorded; repeatable")
	fs.StringVar(&f.caCert, "ca-cert", "", "PEM CA certificate that signs the certificates of intercepted TLS (default: grpctap's own CA, see 'grpctap ca'); needs --ca-key")
	fs.StringVar(&f.caKey, "ca-key", "", "PEM private key (ECDSA) of --ca-cert")
}

// listen wraps the proxy's listener so that it takes CONNECT too; the
// listener returned owns lis.
func (f *forwardFlags) listen(lis net.Listener, log *slog.Logger) (*forward.Listener, error) {
	opts := forward.Options{Resolve: forward.Resolve{}, NoIntercept: f.noIntercept, Logger: log}
	var errs []error
	for _, r := range f.resolve {
		if err := opts.Resolve.Parse(r); err != nil {
			errs = append(errs, fmt.Errorf("--resolve: %w", err))
		}
	}
	for _, a := range f.allow {
		p, err := forward.ParseAllow(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("--forward-allow: %w", err))
			continue
		}
		opts.Allow = append(opts.Allow, p)
	}
	ports, err := forward.ParsePorts(f.ports)
	if err != nil {
		errs = append(errs, fmt.Errorf("--forward-ports: %w", err))
	}
	opts.Ports = ports
	for _, g := range f.noIntercept {
		if err := forward.CheckGlob(g); err != nil {
			errs = append(errs, fmt.Errorf("--no-intercept: %w", err))
		}
	}
	ca, err := f.ca(log)
	if err != nil {
		errs = append(errs, err)
	}
	opts.CA = ca
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return forward.Listen(lis, opts), nil
}

// ca returns how the listener gets its CA: the one --ca-cert names, read
// now so that a bad file stops the start; else grpctap's own, read (or
// made) at the first interception.
func (f *forwardFlags) ca(log *slog.Logger) (func() (*forward.CA, error), error) {
	if (f.caCert == "") != (f.caKey == "") {
		return nil, errors.New("--ca-cert and --ca-key go together")
	}
	if f.caCert != "" {
		ca, err := forward.LoadCA(f.caCert, f.caKey)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		return func() (*forward.CA, error) { return ca, nil }, nil
	}
	return func() (*forward.CA, error) {
		ca, err := loadOwnCA()
		if err != nil {
			return nil, err
		}
		if ca.Created {
			log.Info("forward proxy: made grpctap's CA; clients must trust it to be intercepted (see 'grpctap ca')", "cert", ca.CertFile)
		}
		return ca, nil
	}, nil
}

// loadOwnCA reads grpctap's own CA, making it first if there is none.
func loadOwnCA() (*forward.CA, error) {
	dir, err := forward.DefaultCADir()
	if err != nil {
		return nil, err
	}
	return forward.LoadOrCreateCA(dir)
}

// hook sets how the proxy verifies the servers of intercepted TLS
// tunnels: with --backend-ca or without verification
// (--backend-insecure), as for backends; else the system roots.
func (f *forwardFlags) hook(bt *backendTLSFlags) optionHook {
	return func(o *proxy.Options) (func(), error) {
		if bt.ca == "" && !bt.insecure {
			return func() {}, nil
		}
		cfg, err := (&proxy.BackendTLS{CAFile: bt.ca, Insecure: bt.insecure}).Config()
		if err != nil {
			return nil, err
		}
		o.ForwardTLS = cfg
		return func() {}, nil
	}
}

// logForwardMode says how to use the proxy as a forward proxy; noBackend:
// direct calls have nowhere to go.
func logForwardMode(log *slog.Logger, addr net.Addr, noBackend bool) {
	proxyURL := "http://" + dialAddr(addr)
	if noBackend {
		log.Info("no --backend or --route: direct calls fail with UNIMPLEMENTED; forward-proxy calls are served", "HTTPS_PROXY", proxyURL)
		return
	}
	log.Info("forward proxy on the same port", "HTTPS_PROXY", proxyURL)
}
