package webbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// NewHTTPServer returns an http.Server for h that speaks HTTP/1.1 and HTTP/2:
// h2c (prior knowledge) when tlsCfg is nil, else TLS offering ALPN h2 and
// http/1.1. Serve it with Serve.
func NewHTTPServer(h http.Handler, tlsCfg *tls.Config, log *slog.Logger) *http.Server {
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	if tlsCfg == nil {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP2(true)
		tlsCfg = tlsCfg.Clone()
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		Protocols:         protos,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    1 << 20,
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	}
	return srv
}

// Serve serves srv on lis until ctx is cancelled, then stops accepting,
// lets requests in flight finish for up to grace and closes the rest
// (hijacked websocket connections included). It returns nil after a
// shutdown, or the error that stopped serving.
//
// Serve sets srv.BaseContext and wraps srv.Handler so that it can wait for
// every handler, hijacked ones too, before it returns.
func Serve(ctx context.Context, srv *http.Server, lis net.Listener, grace time.Duration) error {
	if srv.TLSConfig != nil {
		lis = tls.NewListener(lis, srv.TLSConfig)
	}
	// Handlers of hijacked (websocket) connections are invisible to
	// Shutdown; cancelling their base context ends their calls, and the
	// WaitGroup waits for them.
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv.BaseContext = func(net.Listener) context.Context { return base }
	var handlers sync.WaitGroup
	inner := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		inner.ServeHTTP(w, r)
	})

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	var serveErr error
	select {
	case err := <-errc:
		errc = nil
		if !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("serve gRPC-Web on %s: %w", lis.Addr(), err)
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Grace is over: cut what is left.
		_ = srv.Close()
	}
	if errc != nil {
		<-errc
	}
	// Give hijacked connections the rest of the grace period, then cancel.
	done := make(chan struct{})
	go func() { handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		cancelBase()
		<-done
	}
	return serveErr
}
