package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"

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

// startForwarder opens the capture, the decoder and the proxy, whose
// server is to serve lis (from pf.listenSpec), and has g close them last,
// once every server has stopped (the recorder flushes, the capture
// closes); when it fails, it has closed what it opened.
func startForwarder(ctx context.Context, g *runGroup, log *slog.Logger, pf *proxyFlags, rf *recordFlags, df *decodeFlags, lis net.Listener, hooks ...optionHook) (_ *forwarder, err error) {
	fw := &forwarder{lis: lis}
	defer func() {
		if err != nil {
			_ = fw.close(context.Background())
		}
	}()
	opts, err := pf.options(log)
	if err != nil {
		return nil, err
	}
	fw.tls = opts.BackendTLS
	srvOpts, err := pf.serverOptions()
	if err != nil {
		return nil, err
	}
	rec, err := rf.open(ctx, log)
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
	dec, err := schemas.OpenDecoder(ctx, fw.store, df.options(dial))
	if err != nil {
		return nil, err
	}
	fw.decoder = dec
	fw.closers = append(fw.closers, func(context.Context) error { return dec.Close() })

	var observers []proxy.Observer
	if fw.recorder != nil {
		observers = append(observers, fw.recorder)
		if len(df.protos) > 0 || len(df.protosets) > 0 {
			// Keep the given schemas in the capture too.
			if err := schemas.SaveLearned(ctx, dec, fw.store); err != nil {
				log.Warn("saving schemas in the capture", "err", err)
			}
		}
		if !df.noReflection {
			learner := schemas.NewLearner(dec, fw.store, log)
			fw.closers = append(fw.closers, func(context.Context) error { learner.Close(); return nil })
			observers = append(observers, learner)
		}
	}
	opts.Observer = proxy.Tee(observers...)
	if !df.noReflection {
		// The proxy answers reflection itself, merging every backend's
		// schemas and the given files (only those: a capture's saved
		// schemas may be of backends no longer routed to).
		given, err := schemas.GivenSources(df.options(nil))
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
	for _, hook := range hooks {
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
	fw.server = p.NewServer(srvOpts...)
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
	web   *webFlags
	webLn net.Listener
	ui    *uiFlags
	uiLn  net.Listener
	// out, when not nil, gets the inspector's URL line.
	out io.Writer
}

// serveIn adds the forwarder's gRPC server and its front doors to g. It
// returns the bridge's address and the
// inspector's URL to show ("" when off). pf are the flags of the gRPC
// listener, whose address and TLS the inspector's grpcurl commands name.
func (fw *forwarder) serveIn(ctx context.Context, g *runGroup, d frontDoors, pf *proxyFlags, log *slog.Logger) (webAddr, uiURL string, err error) {
	web, webAddr, err := d.web.service(fw.proxy, fw.decoder, d.webLn, pf.shutdownTimeout, log)
	if err != nil {
		return "", "", err
	}
	if web != nil {
		g.add(*web)
	}
	inspector, uiURL, err := d.ui.service(ctx, d.uiLn, uiDeps{
		Store: fw.store, Recorder: fw.recorder, Proxy: fw.proxy, Decoder: fw.decoder,
		BackendTLS: fw.tls, Logger: log, Out: d.out,
		GRPC: ui.GRPCListener{Addr: dialAddr(fw.lis.Addr()), TLS: pf.tlsCert != "", CACert: pf.tlsCert},
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
