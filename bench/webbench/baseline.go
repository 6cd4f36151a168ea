package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	// Importing grpcweb starts a process-wide timer goroutine
	// (desertbit/timer) at init. That is fine in a bench binary; it is why
	// the bridge's own packages do not import it.
	"github.com/improbable-eng/grpc-web/go/grpcweb"
	gproxy "github.com/mwitkow/grpc-proxy/proxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// serveBaselineArg, as webbench's first argument, makes it serve the
// baseline instead of running the bench. webbench re-executes itself this
// way, so the baseline runs in a process of its own, as grpctap does.
const serveBaselineArg = "-serve-baseline"

// baselineMaxMsg is the message size limit webbench gave grpcwebproxy
// (--backend_max_call_recv_msg_size 67108864).
const baselineMaxMsg = 64 << 20

// runBaseline serves what grpcwebproxy v0.15.0 serves: grpcweb.WrapServer
// around a grpc.Server whose unknown-service handler is grpc-proxy's
// transparent handler, forwarding to -backend; plaintext HTTP/1.1 on -http
// and HTTP/2 (or HTTP/1.1) over TLS on -tls. It stops on SIGINT/SIGTERM or
// when -max-life has passed, so a baseline whose parent died does not stay.
func runBaseline(args []string) error {
	fs := flag.NewFlagSet("webbench "+serveBaselineArg, flag.ContinueOnError)
	httpAddr := fs.String("http", "", "plaintext HTTP/1.1 address (grpcwebproxy's --server_http_debug_port)")
	tlsAddr := fs.String("tls", "", "TLS address (grpcwebproxy's --server_http_tls_port)")
	backend := fs.String("backend", "", "gRPC backend address (--backend_addr)")
	certFile := fs.String("tls-cert", "", "PEM certificate (--server_tls_cert_file)")
	keyFile := fs.String("tls-key", "", "PEM key (--server_tls_key_file)")
	maxLife := fs.Duration("max-life", 15*time.Minute, "exit after this long whatever happens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *httpAddr == "" || *tlsAddr == "" || *backend == "" || *certFile == "" || *keyFile == "" {
		return errors.New("-http, -tls, -backend, -tls-cert and -tls-key are all required")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxLife)
	defer cancel()

	cc, err := grpc.NewClient(*backend,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(baselineMaxMsg)))
	if err != nil {
		return fmt.Errorf("baseline: dial backend %s: %w", *backend, err)
	}
	defer cc.Close()

	// grpcwebproxy's director: the incoming metadata minus user-agent and
	// connection (improbable-eng/grpc-web#568), to the one backend.
	director := func(ctx context.Context, _ string) (context.Context, grpc.ClientConnInterface, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		md = md.Copy()
		delete(md, "user-agent")
		delete(md, "connection")
		return metadata.NewOutgoingContext(ctx, md), cc, nil
	}
	// grpcwebproxy also chains logrus and Prometheus interceptors and sets
	// grpc.EnableTracing; those are its monitoring, not its translation, and
	// are left out, so this baseline does a little less work per call.
	srv := grpc.NewServer(
		grpc.UnknownServiceHandler(gproxy.TransparentHandler(director)),
		grpc.MaxRecvMsgSize(baselineMaxMsg))
	defer srv.Stop()
	wrapped := grpcweb.WrapServer(srv,
		grpcweb.WithCorsForRegisteredEndpointsOnly(false),
		grpcweb.WithOriginFunc(func(string) bool { return true })) // --allow_all_origins
	mux := http.NewServeMux()
	mux.Handle("/", wrapped)

	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("baseline: load TLS key pair: %w", err)
	}
	// As go-conntrack's connhelpers set it up for grpcwebproxy.
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "h2-14", "http/1.1"},
	}

	h1Lis, err := listen(*httpAddr)
	if err != nil {
		return err
	}
	tlsLis, err := listen(*tlsAddr)
	if err != nil {
		_ = h1Lis.Close()
		return err
	}
	servers := []*http.Server{newBaselineServer(mux), newBaselineServer(mux)}
	lis := []net.Listener{h1Lis, tls.NewListener(tlsLis, tlsConf)}

	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(lis[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("baseline: serve %s: %w", lis[i].Addr(), err)
			}
		}()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer shutCancel()
	for _, s := range servers {
		_ = s.Shutdown(shutCtx)
		_ = s.Close()
	}
	wg.Wait()
	return serveErr
}

// newBaselineServer has grpcwebproxy's default timeouts
// (--server_http_max_write_timeout, --server_http_max_read_timeout).
func newBaselineServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
}

// listen listens on a TCP address with grpcwebproxy's 20s keep-alive
// (go-conntrack's TrackWithTcpKeepAlive).
func listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: 20 * time.Second}
	lis, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("baseline: listen %s: %w", addr, err)
	}
	return lis, nil
}
