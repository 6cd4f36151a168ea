package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/selfreflect"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
)

// forwarder is the wiring of 'proxy' and 'demo': the proxy with
// everything attached to it (the capture and its recorder, schema
// learning, the listener), built from their flags.
type forwarder struct {
	proxy    *proxy.Proxy
	server   *grpc.Server
	lis      net.Listener
	decoder  *decode.Decoder
	store    *store.Store       // nil when not recording
	recorder *recorder.Recorder // nil when not recording
	tls      *tls.Config        // TLS to backends; nil for plaintext
	closers  []func(context.Context) error
}

// shared lets the decoder use the proxy's pooled backend connections for
// reflection without closing them when the decoder closes.
type shared struct{ grpc.ClientConnInterface }

// optionHook adjusts the proxy's options before it is made (e.g. to set a
// Fallback) and returns what to release when the forwarder closes.
type optionHook func(*proxy.Options) (release func(), err error)

// forwarderConfig is what 'proxy' and 'demo' want of the forwarder, read
// from their flags (readForwarderConfig); startForwarder builds from it.
type forwarderConfig struct {
	proxy  proxy.Options       // routing, backend TLS, limits; the forwarder adds observers and Own
	server []grpc.ServerOption // the listener's credentials
	record recordConfig
	// schemas are the given schema files and whether reflection is on;
	// the forwarder dials through the proxy.
	schemas schemas.DecoderOptions
	hooks   []optionHook
}

// startForwarder opens the capture, the decoder and the proxy, whose
// server is to serve lis, and has g close them last, once every server
// has stopped (the recorder flushes, the capture closes); when it fails,
// it has closed what it opened.
func startForwarder(ctx context.Context, g *runGroup, log *slog.Logger, c forwarderConfig, lis net.Listener) (_ *forwarder, err error) {
	fw := &forwarder{lis: lis}
	defer func() {
		if err != nil {
			_ = fw.close(context.Background())
		}
	}()
	opts := c.proxy
	fw.tls = opts.BackendTLS
	rec, err := openRecording(ctx, c.record, log)
	if err != nil {
		return nil, err
	}
	fw.store, fw.recorder = rec.store, rec.recorder
	fw.closers = append(fw.closers, rec.close)

	// The decoder reaches backends through the proxy's own pool, which
	// exists once the proxy does; it is first used after that. It decodes
	// the capture and gives the gRPC-Web bridge the schemas to translate
	// JSON calls, so it exists without recording too.
	dial := func(backend string) (grpc.ClientConnInterface, error) {
		cc, err := fw.proxy.Conn(backend)
		if err != nil {
			return nil, err
		}
		return shared{cc}, nil
	}
	dopts := c.schemas
	dopts.Dial = dial
	dec, err := schemas.OpenDecoder(ctx, fw.store, dopts)
	if err != nil {
		return nil, err
	}
	fw.decoder = dec
	fw.closers = append(fw.closers, func(context.Context) error { return dec.Close() })

	var observers []proxy.Observer
	if fw.recorder != nil {
		observers = append(observers, fw.recorder)
		if len(c.schemas.ProtoFiles) > 0 || len(c.schemas.Protosets) > 0 {
			// Keep the given schemas in the capture too.
			if err := schemas.SaveLearned(ctx, dec, fw.store); err != nil {
				log.Warn("saving schemas in the capture", "err", err)
			}
		}
		if c.schemas.Reflection {
			learner := schemas.NewLearner(dec, fw.store, log)
			fw.closers = append(fw.closers, func(context.Context) error { learner.Close(); return nil })
			observers = append(observers, learner)
		}
	}
	opts.Observer = proxy.Tee(observers...)
	if c.schemas.Reflection {
		// The proxy answers reflection itself, merging every backend's
		// schemas and the given files (only those: a capture's saved
		// schemas may be of backends no longer routed to).
		given, err := schemas.GivenSources(c.schemas)
		if err != nil {
			return nil, err
		}
		var files []protoreflect.FileDescriptor
		for _, src := range given {
			files = append(files, src.Files()...)
		}
		opts.Own = func(p *proxy.Proxy) map[string]grpc.StreamHandler {
			return selfreflect.Handlers(p, selfreflect.Options{Files: files, Logger: log})
		}
	}
	for _, hook := range c.hooks {
		release, err := hook(&opts)
		if err != nil {
			return nil, err
		}
		fw.closers = append(fw.closers, func(context.Context) error { release(); return nil })
	}
	p, err := proxy.New(opts)
	if err != nil {
		return nil, err
	}
	fw.proxy = p
	fw.closers = append(fw.closers, func(context.Context) error { return p.Close() })
	fw.server = p.NewServer(c.server...)
	// A server that was never served still has its stream workers to stop
	// (a later start-up step failed); once served and stopped this is a no-op.
	fw.closers = append(fw.closers, func(context.Context) error { fw.server.Stop(); return nil })
	g.onClose(fw.close)
	return fw, nil
}

// close releases everything in the reverse order it was opened.
func (fw *forwarder) close(ctx context.Context) error {
	var errs []error
	for i := len(fw.closers) - 1; i >= 0; i-- {
		errs = append(errs, fw.closers[i](ctx))
	}
	fw.closers = nil
	if fw.lis != nil {
		_ = fw.lis.Close()
	}
	return errors.Join(errs...)
}

// frontDoors are the servers 'proxy' and 'demo' run around the
// forwarder: its gRPC listener, and the gRPC-Web bridge and the inspector
// when they are on (their listeners nil when off).
type frontDoors struct {
	web   webConfig
	webLn net.Listener
	ui    uiConfig
	uiLn  net.Listener
	// out, when not nil, gets the inspector's URL line.
	out io.Writer
}

// serveIn adds the forwarder's gRPC server and its front doors to g. It
// returns the bridge's address and the
// inspector's URL to show ("" when off). grpcCert is the gRPC listener's
// certificate file ("" for h2c), which the inspector's grpcurl commands
// name; grace is how long the bridge lets requests finish when it stops.
func (fw *forwarder) serveIn(ctx context.Context, g *runGroup, d frontDoors, grpcCert string, grace time.Duration, log *slog.Logger) (webAddr, uiURL string, err error) {
	web, webAddr, err := webService(d.web, fw.proxy, fw.decoder, d.webLn, grace, log)
	if err != nil {
		return "", "", err
	}
	if web != nil {
		g.add(*web)
	}
	inspector, uiURL, err := uiService(ctx, d.ui, d.uiLn, uiDeps{
		Store: fw.store, Recorder: fw.recorder, Proxy: fw.proxy, Decoder: fw.decoder,
		BackendTLS: fw.tls, Logger: log, Out: d.out,
		GRPC: ui.GRPCListener{Addr: dialAddr(fw.lis.Addr()), TLS: grpcCert != "", CACert: grpcCert},
	})
	if err != nil {
		return "", "", err
	}
	if inspector != nil {
		g.add(*inspector)
	}
	g.add(grpcService("proxy", fw.server, fw.lis))
	return webAddr, uiURL, nil
}

// recording is what open made: the capture and its recorder, both nil
// with --no-record.
type recording struct {
	store    *store.Store
	recorder *recorder.Recorder
	close    func(context.Context) error // flushes the recorder, closes the capture
}

// openRecording opens the capture and starts its recorder as c says. A file that is not a grpctap capture, or is corrupt,
// is an error; a capture that cannot be written (read-only file) is not:
// the proxy forwards, the problem is logged and every event is counted as
// dropped.
func openRecording(ctx context.Context, c recordConfig, log *slog.Logger) (*recording, error) {
	if c.off {
		log.Info("not recording (--no-record)")
		return &recording{close: func(context.Context) error { return nil }}, nil
	}
	var lastRetry time.Time
	st, err := store.Open(ctx, c.db, store.Options{
		Name:         c.name,
		SegmentBytes: c.segmentBytes,
		// A proxy forwards whether or not its database is up.
		Deferred: true,
		OnRetry: func(err error, next time.Duration) {
			if time.Since(lastRetry) >= 10*time.Second {
				lastRetry = time.Now()
				log.Warn("capture database unreachable: forwarding goes on, calls are counted as dropped until it is back", "db", c.db, "err", err, "retry_in", next)
			}
		},
	})
	if err != nil {
		if errors.Is(err, store.ErrNotCapture) || errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrNewerSchema) {
			return nil, fmt.Errorf("%w (choose another file with --db, or --no-record)", err)
		}
		readOnly, roErr := store.Open(ctx, c.db, store.Options{ReadOnly: true})
		if roErr != nil {
			return nil, fmt.Errorf("%w (choose another file with --db, or --no-record)", err)
		}
		log.Error("capture cannot be written: calls are forwarded but not recorded, and counted as dropped", "db", c.db, "err", err)
		st = readOnly
	}
	ro := c.recorder
	ro.Logger = log
	rec, err := recorder.New(ctx, st, ro)
	if err != nil {
		st.Close()
		return nil, err
	}
	log.Info("recording calls", "db", st.Path(), "name", nameOr(c.name))
	closeFn := func(ctx context.Context) error {
		err := rec.Close(ctx)
		stats := rec.Stats()
		if stats.Dropped > 0 {
			log.Warn("some events were not recorded", "db", c.db, "dropped", stats.Dropped)
		}
		if stats.SkippedResets > 0 {
			log.Info("calls reset before any message, over their client's rate, were counted, not recorded", "db", c.db, "skipped", stats.SkippedResets)
		}
		return errors.Join(err, st.Close())
	}
	return &recording{store: st, recorder: rec, close: closeFn}, nil
}

// dialAddr is the address a client on this machine dials to reach a
// listener at a: a wildcard IP becomes loopback.
func dialAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return a.String()
	}
	ip := net.IPv4(127, 0, 0, 1)
	if ta.IP.To4() == nil {
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}
