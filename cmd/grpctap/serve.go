package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
)

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// serveGRPC serves srv on lis until ctx is cancelled, then stops accepting,
// lets in-flight calls finish for up to grace, and cancels the rest.
func serveGRPC(ctx context.Context, srv *grpc.Server, lis net.Listener, grace time.Duration, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve %s: %w", lis.Addr(), err)
		}
		return nil
	case <-ctx.Done():
	}
	log.Info("shutting down: waiting for calls in flight", "grace", grace)
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Warn("shutdown grace period over: cancelling calls still in flight")
		srv.Stop()
		<-done
	}
	<-errc
	return nil
}
