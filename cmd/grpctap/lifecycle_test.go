package main

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// orderLog records what happened, in order, from any goroutine.
type orderLog struct {
	mu     sync.Mutex
	events []string
}

func (o *orderLog) add(e string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

func (o *orderLog) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.events)
}

// returned is what a run (or abort) sent on done, failing the test when
// it does not return within 10s.
func returned(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

func loopback(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	return lis
}

// TestRunGroupClosesAfterEveryServerStopped: when the command's context
// ends, every server stops, and only then do the closers run, the last
// added first (the recorder before the capture it writes).
func TestRunGroupClosesAfterEveryServerStopped(t *testing.T) {
	var o orderLog
	g := newRunGroup(5*time.Second, quietLog())
	g.onClose(func(context.Context) error { o.add("close capture"); return nil })
	g.onClose(func(context.Context) error { o.add("flush recorder"); return nil })
	srv := grpc.NewServer()
	g.add(grpcService("proxy", srv, loopback(t)))
	serving := make(chan struct{})
	g.add(ctxService("bridge", func(ctx context.Context) error {
		close(serving)
		<-ctx.Done()
		o.add("bridge stopped")
		return nil
	}, func() { o.add("bridge released") }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.run(ctx) }()
	<-serving
	cancel()
	if err := returned(t, done, "run, after its context ended,"); err != nil {
		t.Fatal(err)
	}
	want := []string{"bridge stopped", "bridge released", "flush recorder", "close capture"}
	if got := o.list(); !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	if err := srv.Serve(loopback(t)); !errors.Is(err, grpc.ErrServerStopped) {
		t.Errorf("the gRPC server was not stopped: Serve = %v", err)
	}
}

// TestRunGroupStopsWhenOneServerFails: a server that cannot go on stops
// the others and the command, with its error named.
func TestRunGroupStopsWhenOneServerFails(t *testing.T) {
	g := newRunGroup(5*time.Second, quietLog())
	g.add(grpcService("proxy", grpc.NewServer(), loopback(t)))
	g.add(ctxService("bridge", func(context.Context) error { return errors.New("accept: too many open files") }, nil))
	closed := false
	g.onClose(func(context.Context) error { closed = true; return nil })
	done := make(chan error, 1)
	go func() { done <- g.run(context.Background()) }()
	if err := returned(t, done, "run, with a failed server,"); err == nil || !strings.Contains(err.Error(), "bridge: accept: too many open files") {
		t.Errorf("run = %v, want the bridge's failure", err)
	}
	if !closed {
		t.Error("closers did not run")
	}
}

// TestRunGroupAbortBeforeRun: a command whose set-up fails after some
// servers were added stops them (never served) and closes what was
// opened, returning why it failed.
func TestRunGroupAbortBeforeRun(t *testing.T) {
	g := newRunGroup(time.Second, quietLog())
	released := false
	g.add(ctxService("bridge", func(ctx context.Context) error {
		t.Error("a service of an aborted group was served")
		return nil
	}, func() { released = true }))
	srv := grpc.NewServer()
	g.add(grpcService("proxy", srv, loopback(t)))
	closed := false
	g.onClose(func(context.Context) error { closed = true; return nil })
	cause := errors.New("--ui-tls-cert and --ui-tls-key go together")
	done := make(chan error, 1)
	go func() { done <- g.abort(cause) }()
	if err := returned(t, done, "abort, with a service that never served,"); !errors.Is(err, cause) {
		t.Errorf("abort = %v, want the cause", err)
	}
	if !released || !closed {
		t.Errorf("released %v, closed %v: want both", released, closed)
	}
}
