package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/grpctap/grpctap/proxy"
)

// proxyFlags are the forwarding flags shared by 'proxy' and 'demo'.
type proxyFlags struct {
	listen          string
	tlsCert, tlsKey string
	backend         string
	routes          []string
	backendTLS      backendTLSFlags
	maxMsgSize      byteSize
	shutdownTimeout time.Duration
	logLevel        logLevel
}

func (f *proxyFlags) register(fs *pflag.FlagSet, withBackend bool) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:50050", "address the proxy listens on for gRPC (h2c, or TLS with --tls-cert)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve TLS (ALPN h2) with this PEM certificate; needs --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	if withBackend {
		fs.StringVar(&f.backend, "backend", "", "default backend address (host:port) for calls no --route matches")
		fs.StringArrayVar(&f.routes, "route", nil, "PREFIX=ADDR: send methods of service PREFIX (pkg.Service) or with full-method prefix PREFIX (/pkg.Service/Method) to ADDR; repeatable, longest match wins")
		f.backendTLS.register(fs)
	}
	f.maxMsgSize = proxy.DefaultMaxMsgSize
	fs.Var(&f.maxMsgSize, "max-msg-size", "largest message forwarded each way, in bytes (accepts KiB/MiB suffixes)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long calls in flight may take to finish before they are cancelled")
	f.logLevel.Level = slog.LevelInfo
	fs.Var(&f.logLevel, "log-level", "log level: debug (one line per call), info, warn or error")
}

// options turns the flags into proxy options.
func (f *proxyFlags) options(log *slog.Logger) (proxy.Options, error) {
	opts := proxy.Options{Backend: f.backend, MaxMsgSize: int(f.maxMsgSize), Logger: log}
	for _, r := range f.routes {
		rt, err := proxy.ParseRoute(r)
		if err != nil {
			return opts, err
		}
		opts.Routes = append(opts.Routes, rt)
	}
	cfg, err := f.backendTLS.config(log)
	if err != nil {
		return opts, err
	}
	opts.BackendTLS = cfg
	return opts, nil
}

// backendTLSFlags are the flags for TLS from grpctap to backends, shared by
// every command that dials them (proxy, replay).
type backendTLSFlags struct {
	on         bool
	ca         string
	cert, key  string
	serverName string
	insecure   bool
}

func (f *backendTLSFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.on, "backend-tls", false, "dial backends over TLS (implied by the other --backend-* TLS flags)")
	fs.StringVar(&f.ca, "backend-ca", "", "PEM CA bundle to verify backends with (default: system roots)")
	fs.StringVar(&f.cert, "backend-cert", "", "PEM client certificate for mTLS to backends; needs --backend-key")
	fs.StringVar(&f.key, "backend-key", "", "PEM client key for --backend-cert")
	fs.StringVar(&f.serverName, "backend-server-name", "", "name to verify in the backend's certificate (default: the host of its address)")
	fs.BoolVar(&f.insecure, "backend-insecure", false, "dial backends over TLS WITHOUT verifying their certificate (logged as a warning)")
}

// config returns the TLS config the flags ask for, or nil for plaintext.
func (f *backendTLSFlags) config(log *slog.Logger) (*tls.Config, error) {
	if !f.on && f.ca == "" && f.cert == "" && f.key == "" && f.serverName == "" && !f.insecure {
		return nil, nil
	}
	bt := proxy.BackendTLS{CAFile: f.ca, CertFile: f.cert, KeyFile: f.key, ServerName: f.serverName, Insecure: f.insecure}
	cfg, err := bt.Config()
	if err != nil {
		return nil, err
	}
	if f.insecure {
		log.Warn("--backend-insecure: backend certificates are NOT verified; anyone on the path can read and change this traffic")
	}
	return cfg, nil
}

// serverOptions returns the gRPC server options for the listener.
func (f *proxyFlags) serverOptions() ([]grpc.ServerOption, error) {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if f.tlsCert == "" {
		return nil, nil
	}
	creds, err := credentials.NewServerTLSFromFile(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("listener TLS: %w", err)
	}
	return []grpc.ServerOption{grpc.Creds(creds)}, nil
}

func newProxyCmd() *cobra.Command {
	var f proxyFlags
	cmd := &cobra.Command{
		Use:   "proxy --backend ADDR [flags]",
		Short: "Forward gRPC calls to backends, recording every one",
		Long: `proxy listens for gRPC and forwards every method of every service to a
backend, unchanged: all four RPC kinds, metadata, trailers, status and
details, deadlines, cancellation and compression. It needs no schema.

Point clients at --listen instead of the backend. Calls are routed by
--route PREFIX=ADDR (longest prefix wins), else to --backend.`,
		Example: `  grpctap proxy --backend 127.0.0.1:9000
  grpctap proxy --listen :50050 --backend api.internal:443 --backend-tls
  grpctap proxy --route billing.v1.Billing=127.0.0.1:9001 --backend 127.0.0.1:9000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.backend == "" && len(f.routes) == 0 {
				return fmt.Errorf("proxy needs --backend ADDR or at least one --route PREFIX=ADDR (try 'grpctap demo' for a built-in backend)")
			}
			return runProxy(cmd.Context(), cmd, &f)
		},
	}
	f.register(cmd.Flags(), true)
	return cmd
}

func runProxy(ctx context.Context, cmd *cobra.Command, f *proxyFlags) error {
	log := newLogger(cmd.ErrOrStderr(), f.logLevel.Level)
	opts, err := f.options(log)
	if err != nil {
		return err
	}
	srvOpts, err := f.serverOptions()
	if err != nil {
		return err
	}
	p, err := proxy.New(opts)
	if err != nil {
		return err
	}
	defer p.Close()
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := p.NewServer(srvOpts...)
	log.Info("grpctap proxy listening", "addr", lis.Addr().String(), "backends", p.Backends(), "tls", f.tlsCert != "")
	return serveGRPC(ctx, srv, lis, f.shutdownTimeout, log)
}
