package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
)

// defaultUIAddr is where the inspector listens unless --ui says otherwise.
const defaultUIAddr = "127.0.0.1:7070"

// uiFlags are the web inspector's flags, shared by 'proxy', 'demo' and 'ui'.
type uiFlags struct {
	addr          string
	token         string
	readOnly      bool
	readOnlyToken string
	tlsCert       string
	tlsKey        string
	// canOff: --ui '' turns the inspector off (not in 'grpctap ui', which
	// is the inspector).
	canOff bool
}

// register adds the flags; canOff says whether --ui ” may turn the
// inspector off.
func (f *uiFlags) register(fs *pflag.FlagSet, canOff bool) {
	f.canOff = canOff
	usage := "address of the web inspector (HTTP, or HTTPS with --ui-tls-cert); off loopback it requires a token"
	if canOff {
		usage = "address of the web inspector (HTTP, or HTTPS with --ui-tls-cert); '' turns it off. Off loopback it requires a token"
	}
	fs.StringVar(&f.addr, "ui", defaultUIAddr, usage)
	fs.StringVar(&f.token, "ui-token", "", "token the inspector requires, granting everything it does (default: none on loopback, a random one printed at start otherwise)")
	fs.BoolVar(&f.readOnly, "ui-read-only", false, "the inspector shows everything but sends no calls and changes nothing: composer, replay and collection writes get 403, whatever the token")
	fs.StringVar(&f.readOnlyToken, "ui-read-only-token", "", "a second token, granting read access only (composer, replay and collection writes get 403); with it every request needs a token (default: none on loopback, a random one printed at start otherwise)")
	fs.StringVar(&f.tlsCert, "ui-tls-cert", "", "serve the inspector over HTTPS with this PEM certificate; needs --ui-tls-key (default: plain HTTP)")
	fs.StringVar(&f.tlsKey, "ui-tls-key", "", "PEM private key for --ui-tls-cert")
}

// access checks the access flags and returns the inspector's full and
// read-only tokens. Off loopback both are made up when not given (only the
// full one with --ui-read-only, where every token reads only); a read-only
// token without a full one gets a made-up full one, so that reading with
// no token at all is never what the read-only token was meant to limit.
func (f *uiFlags) access() (token, readOnlyToken string, err error) {
	token, readOnlyToken = f.token, f.readOnlyToken
	if token != "" && token == readOnlyToken {
		return "", "", errors.New("--ui-token and --ui-read-only-token must differ")
	}
	offLoopback := !ui.IsLoopback(f.addr)
	if token == "" && (offLoopback || readOnlyToken != "") {
		token = ui.NewToken()
	}
	if readOnlyToken == "" && offLoopback && !f.readOnly {
		readOnlyToken = ui.NewToken()
	}
	return token, readOnlyToken, nil
}

// tlsConfig is the inspector's TLS from --ui-tls-cert and --ui-tls-key;
// nil when neither is given.
func (f *uiFlags) tlsConfig() (*tls.Config, error) {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--ui-tls-cert and --ui-tls-key go together")
	}
	if f.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("inspector TLS (--ui-tls-cert, --ui-tls-key): %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// uiDeps are what the inspector shows and uses. Store is required; the
// others may be nil (no live feed, no composer, a decoder opened here).
type uiDeps struct {
	Store      *store.Store
	Recorder   *recorder.Recorder
	Proxy      *proxy.Proxy
	Decoder    *decode.Decoder
	BackendTLS *tls.Config
	Logger     *slog.Logger
	// GRPC is the proxy's gRPC listener; zero when there is none.
	GRPC ui.GRPCListener
	// Out is where the URL is printed ("inspector  http://…"); nil: not printed.
	Out io.Writer
}

// listenSpec is where the inspector listens; on is false when there is
// nothing for it to show (not recording).
func (f *uiFlags) listenSpec(on bool) listenSpec {
	s := listenSpec{flag: "ui", addr: f.addr, what: "web inspector", advice: "choose another address with --ui"}
	if f.canOff {
		s.advice += ", or --ui '' to turn the inspector off"
	}
	if !on {
		s.addr = ""
	}
	return s
}

// uiConfig is what the inspector's flags ask for; off when addr is "".
type uiConfig struct {
	addr                 string
	token, readOnlyToken string
	readOnly             bool
	tls                  *tls.Config // nil: plain HTTP
}

// config checks the flags and reads them, with tokens made up where the
// flags call for them (access) and the TLS files loaded.
func (f *uiFlags) config() (uiConfig, error) {
	if f.addr == "" {
		if f.token != "" || f.readOnly || f.readOnlyToken != "" || f.tlsCert != "" || f.tlsKey != "" {
			return uiConfig{}, errors.New("--ui-token, --ui-read-only, --ui-read-only-token and --ui-tls-* need --ui ADDR")
		}
		return uiConfig{}, nil
	}
	token, readOnlyToken, err := f.access()
	if err != nil {
		return uiConfig{}, err
	}
	tlsCfg, err := f.tlsConfig()
	if err != nil {
		return uiConfig{}, err
	}
	return uiConfig{addr: f.addr, token: token, readOnlyToken: readOnlyToken, readOnly: f.readOnly, tls: tlsCfg}, nil
}

// uiService is the inspector on lis (from uiFlags.listenSpec) as c says,
// with the URL to show (inspectorURL); nil and "" when it is off or there
// is no capture to show. It serves from the moment it is made; the group
// stops it before the recorder and the store close.
func uiService(ctx context.Context, c uiConfig, lis net.Listener, d uiDeps) (*service, string, error) {
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	if c.addr == "" {
		return nil, "", nil
	}
	if d.Store == nil {
		log.Info("web inspector off: it shows a capture, and nothing is recorded (--no-record)")
		return nil, "", nil
	}
	if c.tls == nil && !ui.IsLoopback(c.addr) {
		log.Warn("the inspector is reachable from the network over plain HTTP: its token crosses the network in clear; serve it over HTTPS with --ui-tls-cert and --ui-tls-key")
	}
	dec, ownDec := d.Decoder, false
	if dec == nil {
		var err error
		dec, err = schemas.OpenDecoder(ctx, d.Store, schemas.DecoderOptions{Reflection: true})
		if err != nil {
			return nil, "", err
		}
		ownDec = true
	}
	closeDec := func() error {
		if ownDec {
			return dec.Close()
		}
		return nil
	}
	h, err := ui.New(ui.Options{Store: d.Store, Recorder: d.Recorder, Proxy: d.Proxy, Decoder: dec,
		Token: c.token, ReadOnlyToken: c.readOnlyToken, ReadOnly: c.readOnly, TLS: c.tls,
		Logger: log, BackendTLS: d.BackendTLS, GRPC: d.GRPC})
	if err != nil {
		return nil, "", errors.Join(err, closeDec())
	}
	srv := ui.Serve(lis, h)
	shown := inspectorURL(srv, srv.URL, c.addr)
	if d.Out != nil {
		fmt.Fprintf(d.Out, "  inspector  %s\n", shown)
		if srv.ReadOnlyURL != "" && srv.ReadOnlyURL != srv.URL {
			fmt.Fprintf(d.Out, "  read-only  %s\n", inspectorURL(srv, srv.ReadOnlyURL, c.addr))
		}
	}
	log.Info("web inspector listening", "url", srv.URL, "addr", srv.Addr.String(), "read_only_url", srv.ReadOnlyURL, "read_only", c.readOnly)
	s := startedService("web inspector", func(ctx context.Context) error {
		return errors.Join(srv.Shutdown(ctx), closeDec())
	})
	return &s, shown, nil
}

// inspectorURL is the inspector's URL as it listens: on every interface
// (--ui 0.0.0.0:7070, [::]:7070, :7070) the URL of that address as given,
// followed by the loopback one a browser on this machine can open.
func inspectorURL(srv *ui.Server, link, addr string) string {
	la, ok := srv.Addr.(*net.TCPAddr)
	if !ok || !la.IP.IsUnspecified() {
		return link
	}
	u, err := url.Parse(link)
	if err != nil {
		return link
	}
	host, _, _ := net.SplitHostPort(addr)
	if host == "" {
		host = "0.0.0.0"
	}
	u.Host = net.JoinHostPort(host, strconv.Itoa(la.Port))
	return u.String() + "  (every interface; on this machine " + link + ")"
}
