package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/webbridge"
)

// webFlags are the gRPC-Web bridge flags of 'proxy' and 'demo'.
type webFlags struct {
	addr       string
	origins    []string
	hosts      []string
	websockets bool
	tlsCert    string
	tlsKey     string
}

// register adds the flags; def is --web's default ("" is off).
func (f *webFlags) register(fs *pflag.FlagSet, def string) {
	usage := "serve gRPC-Web (for browsers) on this address, in front of the same routing and recording; a bare port (8080) binds 127.0.0.1, \":8080\" binds every interface"
	if def == "" {
		usage += " (default: off)"
	} else {
		usage += "; '' turns it off"
	}
	fs.StringVar(&f.addr, "web", def, usage)
	fs.StringArrayVar(&f.origins, "web-origin", nil, "origin (scheme://host[:port]) whose pages may call through --web; repeatable; \"*\" allows any origin (default: same-origin requests only)")
	fs.StringArrayVar(&f.hosts, "web-host", nil, "host name (no port) --web also answers to, besides loopback names (and IP addresses when --web is reached from the network); repeatable; \"*\" allows any Host header. Other names get 403, against DNS rebinding (default: none)")
	fs.BoolVar(&f.websockets, "web-websockets", false, "also accept improbable-eng's grpc-websockets transport on --web (client and bidi streaming from browsers over HTTP/1.1)")
	fs.StringVar(&f.tlsCert, "web-tls-cert", "", "serve --web over TLS (ALPN h2 and http/1.1) with this PEM certificate; needs --web-tls-key (default: plaintext HTTP/1.1 and h2c)")
	fs.StringVar(&f.tlsKey, "web-tls-key", "", "PEM private key for --web-tls-cert")
}

// webAddr turns the --web value into a listen address: a bare port means
// loopback, like the proxy's own default listener.
func webAddr(s string) string {
	if s != "" && !strings.Contains(s, ":") {
		return net.JoinHostPort("127.0.0.1", s)
	}
	return s
}

// listenSpec is where the bridge listens ("" when --web is unset).
func (f *webFlags) listenSpec() listenSpec {
	return listenSpec{flag: "web", addr: webAddr(f.addr), what: "gRPC-Web bridge",
		advice: "choose another address with --web, or --web '' to turn the bridge off"}
}

// webConfig is what the bridge's flags ask for; off when addr is "".
type webConfig struct {
	addr       string
	origins    []string
	hosts      []string
	websockets bool
	tls        *tls.Config // nil: plaintext HTTP/1.1 and h2c
}

// config checks the flags and reads them, with the TLS files loaded.
func (f *webFlags) config() (webConfig, error) {
	if f.addr == "" {
		if len(f.origins) > 0 || len(f.hosts) > 0 || f.websockets || f.tlsCert != "" || f.tlsKey != "" {
			return webConfig{}, fmt.Errorf("--web-origin, --web-host, --web-websockets and --web-tls-* need --web ADDR")
		}
		return webConfig{}, nil
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return webConfig{}, fmt.Errorf("--web-tls-cert and --web-tls-key go together")
	}
	c := webConfig{addr: f.addr, origins: f.origins, hosts: f.hosts, websockets: f.websockets}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return webConfig{}, fmt.Errorf("gRPC-Web TLS: %w", err)
		}
		c.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return c, nil
}

// webService is the bridge on lis (from webFlags.listenSpec) as c says
// (nil when off), with its own grpc.Server from p, so calls are routed,
// forwarded and recorded like native ones; addr is where it listens. When
// stopped, requests in flight get grace to finish before they are cut.
// dec, when not nil, gives the bridge the schemas it needs to translate
// JSON calls. The caller closes lis when webService fails.
func webService(c webConfig, p *proxy.Proxy, dec *decode.Decoder, lis net.Listener, grace time.Duration, log *slog.Logger) (_ *service, addr string, err error) {
	if c.addr == "" {
		return nil, "", nil
	}
	srv := p.NewServer()
	opts := webbridge.Options{AllowedOrigins: c.origins, Hosts: c.hosts, Websockets: c.websockets}
	if dec != nil {
		opts.Schemas = webbridge.DecoderSchemas(dec, p.Route)
	}
	h, err := webbridge.New(srv, opts)
	if err != nil {
		srv.Stop()
		return nil, "", fmt.Errorf("--web-origin or --web-host: %w", err)
	}
	hs := webbridge.NewHTTPServer(h, c.tls, log)
	addr = lis.Addr().String()
	origins := c.origins
	if len(origins) == 0 {
		origins = []string{"(same origin only)"}
	}
	log.Info("grpctap gRPC-Web bridge listening", "addr", addr, "tls", c.tls != nil, "origins", origins, "extra_hosts", c.hosts, "websockets", c.websockets)
	// srv stops after Serve: nothing is left in flight, Serve waited for
	// every handler.
	s := ctxService("gRPC-Web bridge", func(ctx context.Context) error {
		return webbridge.Serve(ctx, hs, lis, grace)
	}, srv.Stop)
	return &s, addr, nil
}
