package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/grpctap/grpctap/forward"
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
	// forward: the listener takes CONNECT too (forward.Listener), and the
	// server's credentials pass its intercepted tunnels through.
	forward bool
}

// listenSpec is where the proxy listens for gRPC.
func (f *proxyFlags) listenSpec() listenSpec {
	return listenSpec{flag: "listen", addr: f.listen, what: "proxy", advice: "choose another address with --listen"}
}

func (f *proxyFlags) register(fs *pflag.FlagSet, withBackend bool) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:50050", "address the proxy listens on for gRPC (h2c, or TLS with --tls-cert)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve TLS (ALPN h2) with this PEM certificate; needs --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	if withBackend {
		fs.StringVar(&f.backend, "backend", "", "default backend for calls no --route matches: host:port, unix:/path/to.sock or dns:///host:port")
		fs.StringArrayVar(&f.routes, "route", nil, "PREFIX=ADDR: send methods of service PREFIX (pkg.Service) or with full-method prefix PREFIX (/pkg.Service/Method) to ADDR; repeatable, longest match wins")
		f.backendTLS.register(fs)
	}
	f.maxMsgSize = proxy.DefaultMaxMsgSize
	fs.Var(&f.maxMsgSize, "max-msg-size", "largest message forwarded each way, in bytes (accepts KiB/MiB suffixes)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long calls in flight may take to finish before they are cancelled")
	f.logLevel.register(fs, "debug")
}

// options turns the flags into proxy options.
func (f *proxyFlags) options(log *slog.Logger) (proxy.Options, error) {
	opts := proxy.Options{Backend: f.backend, MaxMsgSize: int(f.maxMsgSize), Logger: log}
	var errs []error
	if f.backend != "" {
		errs = append(errs, checkTarget("--backend", f.backend))
	}
	for _, r := range f.routes {
		rt, err := proxy.ParseRoute(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, checkTarget("--route "+r, rt.Backend))
		opts.Routes = append(opts.Routes, rt)
	}
	if err := errors.Join(errs...); err != nil {
		return opts, err
	}
	cfg, err := f.backendTLS.config(log)
	if err != nil {
		return opts, err
	}
	opts.BackendTLS = cfg
	return opts, nil
}

// readForwarderConfig reads the flags 'proxy' and 'demo' share into what
// startForwarder builds; hooks adjust the proxy's options further.
func readForwarderConfig(log *slog.Logger, pf *proxyFlags, rf *recordFlags, df *decodeFlags, hooks ...optionHook) (forwarderConfig, error) {
	opts, err := pf.options(log)
	if err != nil {
		return forwarderConfig{}, err
	}
	srvOpts, err := pf.serverOptions()
	if err != nil {
		return forwarderConfig{}, err
	}
	rc, err := rf.config(log)
	if err != nil {
		return forwarderConfig{}, err
	}
	so := df.options(nil)
	so.Reflection = !df.noReflection
	return forwarderConfig{proxy: opts, server: srvOpts, record: rc, schemas: so, hooks: hooks}, nil
}

// readFrontDoors reads the flags of the gRPC-Web bridge and the inspector
// that 'proxy' and 'demo' share; their listeners are the caller's to set.
func readFrontDoors(wf *webFlags, uf *uiFlags) (frontDoors, error) {
	web, err := wf.config()
	if err != nil {
		return frontDoors{}, err
	}
	inspector, err := uf.config()
	if err != nil {
		return frontDoors{}, err
	}
	return frontDoors{web: web, ui: inspector}, nil
}

// checkTarget checks a backend address given with flag; the error says
// what to give instead.
func checkTarget(flag, addr string) error {
	err := proxy.CheckTarget(addr)
	if err == nil {
		return nil
	}
	if u, ok := strings.CutPrefix(strings.ToLower(addr), "https://"); ok && u != "" {
		return fmt.Errorf("%s: %w (and --backend-tls)", flag, err)
	}
	return fmt.Errorf("%s: %w", flag, err)
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
	if !f.forward {
		return listenerTLS(f.tlsCert, f.tlsKey)
	}
	creds, err := listenerCreds(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(forward.Credentials(creds))}, nil
}

// listenerTLS returns the server options that serve TLS (ALPN h2) with the
// --tls-cert and --tls-key files, or none when both are empty.
func listenerTLS(certFile, keyFile string) ([]grpc.ServerOption, error) {
	creds, err := listenerCreds(certFile, keyFile)
	if err != nil || creds == nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(creds)}, nil
}

// listenerCreds returns the TLS credentials (ALPN h2) of the --tls-cert and
// --tls-key files, or nil when both are empty.
func listenerCreds(certFile, keyFile string) (credentials.TransportCredentials, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if certFile == "" {
		return nil, nil
	}
	creds, err := credentials.NewServerTLSFromFile(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("listener TLS: %w", err)
	}
	return creds, nil
}

func newProxyCmd() *cobra.Command {
	var f struct {
		proxy   proxyFlags
		forward forwardFlags
		record  recordFlags
		decode  decodeFlags
		web     webFlags
		ui      uiFlags
		mock    mockOnUnavailableFlags
		pprof   string
	}
	cmd := &cobra.Command{
		Use:   "proxy [--backend ADDR] [flags]",
		Short: "Forward gRPC calls to backends, recording every one",
		Long: `proxy listens for gRPC and forwards every method of every service to a
backend, unchanged: all four RPC kinds, metadata, trailers, status and
details, deadlines, cancellation and compression. It needs no schema.

Point clients at --listen instead of the backend. Calls are routed by
--route PREFIX=ADDR (longest prefix wins), else to --backend. Every call is
recorded in --db (see 'grpctap calls'); schemas are learned from backends by
server reflection and kept in the capture, or given with --proto/--protoset.

Server reflection (grpcurl list/describe) is answered by grpctap itself,
with the services of every backend merged; --route
grpc.reflection.v1.ServerReflection=ADDR forwards it to ADDR instead, and
with --no-reflection it is forwarded like any other call.

The same port is a forward proxy too: a client started with
HTTPS_PROXY=http://ADDR (grpc-go, grpcurl; grpc-js and grpc-core read
grpc_proxy or https_proxy, in lower case) keeps its own target and sends
HTTP CONNECT; grpctap intercepts its gRPC (TLS with a
certificate from grpctap's CA, which the client must trust: see 'grpctap
ca'; or cleartext h2c), forwards and records it with the CONNECT target as
the backend, and copies any other tunnel blind. Only loopback clients may
CONNECT unless --forward-allow says otherwise. See docs/forward.md.

With --listen 127.0.0.1:0 a free port is picked: the log line
"grpctap proxy listening" names it (addr=...).`,
		Example: `  grpctap proxy --backend 127.0.0.1:9000
  grpctap proxy --listen :50050 --backend api.internal:443 --backend-tls
  grpctap proxy --route billing.v1.Billing=127.0.0.1:9001 --backend 127.0.0.1:9000
  grpctap proxy --backend 127.0.0.1:9000 --web 8080 --web-origin http://localhost:3000
  grpctap proxy --backend 127.0.0.1:9000 --web :8080 --web-host devbox.lan
  grpctap proxy --resolve api.example.com=127.0.0.1   # then HTTPS_PROXY=http://127.0.0.1:50050 my-client`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger(cmd.ErrOrStderr(), f.proxy.logLevel.Level)
			ctx := cmd.Context()
			// Every address is taken before anything starts, so that all
			// that are in use are reported at once.
			ls, err := listenAll(cmd.Flags(), log, f.proxy.listenSpec(), f.web.listenSpec(), f.ui.listenSpec(!f.record.noRecord))
			if err != nil {
				return err
			}
			defer closeListeners(ls)
			fl, err := f.forward.listen(ls[0], log)
			if err != nil {
				return err
			}
			ls[0] = fl
			f.proxy.forward = true
			g := newRunGroup(f.proxy.shutdownTimeout, log)
			mockHook := func(o *proxy.Options) (func(), error) { return f.mock.apply(o, f.record.db, log) }
			cfg, err := readForwarderConfig(log, &f.proxy, &f.record, &f.decode, mockHook, f.forward.hook(&f.proxy.backendTLS))
			if err != nil {
				return err
			}
			doors, err := readFrontDoors(&f.web, &f.ui)
			if err != nil {
				return err
			}
			doors.webLn, doors.uiLn, doors.out = ls[1], ls[2], cmd.OutOrStdout()
			fw, err := startForwarder(ctx, g, log, cfg, ls[0])
			if err != nil {
				return err
			}
			pp, err := pprofService(f.pprof, log)
			if err != nil {
				return g.abort(err)
			}
			if pp != nil {
				g.add(*pp)
			}
			if _, _, err := fw.serveIn(ctx, g, doors, f.proxy.tlsCert, f.proxy.shutdownTimeout, log); err != nil {
				return g.abort(err)
			}
			log.Info("grpctap proxy listening", "addr", fw.lis.Addr().String(), "backends", fw.proxy.Backends(), "tls", f.proxy.tlsCert != "")
			logForwardMode(log, fw.lis.Addr(), f.proxy.backend == "" && len(f.proxy.routes) == 0)
			return g.run(ctx)
		},
	}
	f.proxy.register(cmd.Flags(), true)
	f.forward.register(cmd.Flags())
	f.record.register(cmd.Flags())
	f.decode.register(cmd.Flags(), true)
	f.web.register(cmd.Flags(), "")
	f.ui.register(cmd.Flags(), true)
	f.mock.register(cmd.Flags())
	cmd.Flags().StringVar(&f.pprof, "pprof", "", pprofUsage)
	return cmd
}
