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
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/capture"
	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
)

// defaultUIAddr is where the inspector listens unless --ui says otherwise.
const defaultUIAddr = "127.0.0.1:7070"

// uiFlags are the web inspector's flags, shared by 'proxy', 'demo' and 'ui'.
type uiFlags struct {
	addr  string
	token string
	// canOff: --ui '' turns the inspector off (not in 'grpctap ui', which
	// is the inspector).
	canOff bool
}

// register adds the flags; canOff says whether --ui ” may turn the
// inspector off.
func (f *uiFlags) register(fs *pflag.FlagSet, canOff bool) {
	f.canOff = canOff
	usage := "address of the web inspector (HTTP); off loopback it requires a token"
	if canOff {
		usage = "address of the web inspector (HTTP); '' turns it off. Off loopback it requires a token"
	}
	fs.StringVar(&f.addr, "ui", defaultUIAddr, usage)
	fs.StringVar(&f.token, "ui-token", "", "token the inspector requires (default: none on loopback, a random one printed at start otherwise)")
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

// start serves the inspector on lis (from listenSpec) as the flags say,
// until ctx ends. It returns
// the URL to show (inspectorURL; "" when --ui is off or there is no capture to show) and
// a function that stops the inspector (if ctx has not) and waits for it;
// call it before closing the recorder and the store.
func (f *uiFlags) start(ctx context.Context, lis net.Listener, d uiDeps) (string, func() error, error) {
	noop := func() error { return nil }
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	if f.addr == "" {
		return "", noop, nil
	}
	if d.Store == nil {
		log.Info("web inspector off: it shows a capture, and nothing is recorded (--no-record)")
		return "", noop, nil
	}
	token := f.token
	if token == "" && !ui.IsLoopback(f.addr) {
		token = ui.NewToken()
	}
	dec, ownDec := d.Decoder, false
	if dec == nil {
		var err error
		dec, err = capture.OpenDecoder(ctx, d.Store, capture.DecoderOptions{Reflection: true})
		if err != nil {
			return "", nil, err
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
		Token: token, Logger: log, BackendTLS: d.BackendTLS})
	if err != nil {
		return "", nil, errors.Join(err, closeDec())
	}
	srv := ui.Serve(lis, h)
	shown := inspectorURL(srv, f.addr)
	if d.Out != nil {
		fmt.Fprintf(d.Out, "  inspector  %s\n", shown)
	}
	log.Info("web inspector listening", "url", srv.URL, "addr", srv.Addr.String())
	stopped := make(chan struct{})
	var once sync.Once
	var stopErr error
	stop := func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			stopErr = errors.Join(srv.Shutdown(sctx), closeDec())
			close(stopped)
		})
	}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-ctx.Done():
			stop()
		case <-stopped:
		}
	}()
	wait := func() error {
		stop()
		<-watchDone
		return stopErr
	}
	return shown, wait, nil
}

// inspectorURL is the inspector's URL as it listens: on every interface
// (--ui 0.0.0.0:7070, [::]:7070, :7070) the URL of that address as given,
// followed by the loopback one a browser on this machine can open.
func inspectorURL(srv *ui.Server, addr string) string {
	la, ok := srv.Addr.(*net.TCPAddr)
	if !ok || !la.IP.IsUnspecified() {
		return srv.URL
	}
	u, err := url.Parse(srv.URL)
	if err != nil {
		return srv.URL
	}
	host, _, _ := net.SplitHostPort(addr)
	if host == "" {
		host = "0.0.0.0"
	}
	u.Host = net.JoinHostPort(host, strconv.Itoa(la.Port))
	return u.String() + "  (every interface; on this machine " + srv.URL + ")"
}
