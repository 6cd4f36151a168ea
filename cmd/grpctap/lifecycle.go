package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// service is one server of a command (the proxy's gRPC listener, the
// gRPC-Web bridge, the inspector, a mock) as the runGroup drives it.
type service struct {
	name string
	// serve blocks until the server has stopped; it returns nil when it
	// stopped because stop was called, else why it could not go on.
	serve func() error
	// stop makes the server stop accepting, lets what is in flight finish
	// until ctx ends, cuts the rest, and returns once serve has returned
	// or is about to. It is called once, perhaps before serve has begun.
	stop func(ctx context.Context) error
}

// runGroup is the one lifecycle of every command that serves: its
// services run together until the command's context ends or any of them
// stops on its own (a failure); then all are stopped at once, sharing one
// grace period (--shutdown-timeout) for the calls in flight, and only
// after every one has stopped are the closers run, last added first: the
// recorder flushes and the capture closes when nothing can add to them.
//
// A command builds everything first (add, onClose) and then calls run
// exactly once; when building fails half way, abort stops and closes what
// was added.
type runGroup struct {
	grace    time.Duration
	log      *slog.Logger
	services []service
	closers  []func(context.Context) error
}

func newRunGroup(grace time.Duration, log *slog.Logger) *runGroup {
	return &runGroup{grace: grace, log: log}
}

// add makes s one of the group's services.
func (g *runGroup) add(s service) { g.services = append(g.services, s) }

// onClose runs fn after every service has stopped, in the reverse order
// of the calls to onClose; fn gets the grace period too.
func (g *runGroup) onClose(fn func(context.Context) error) { g.closers = append(g.closers, fn) }

// run serves every service until ctx ends or one of them stops, then shuts
// the group down in order. It returns every error of serving, stopping
// and closing.
func (g *runGroup) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(g.services))
	var wg sync.WaitGroup
	for i, s := range g.services {
		wg.Go(func() {
			defer cancel() // a service that stops stops the group
			if err := s.serve(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.name, err)
			}
		})
	}
	<-ctx.Done()
	if len(g.services) > 0 {
		g.log.Info("shutting down: waiting for calls in flight", "grace", g.grace)
	}
	err := g.stop()
	wg.Wait()
	return errors.Join(errors.Join(errs...), err, g.close())
}

// abort shuts down a group that never ran, after cause (a step of
// building the command failed), and returns cause with whatever else
// failed.
func (g *runGroup) abort(cause error) error {
	return errors.Join(cause, g.stop(), g.close())
}

// stop stops every service at once, within the grace period.
func (g *runGroup) stop() error {
	sctx, cancel := context.WithTimeout(context.Background(), g.grace)
	defer cancel()
	errs := make([]error, len(g.services))
	var wg sync.WaitGroup
	for i, s := range g.services {
		wg.Go(func() {
			if err := s.stop(sctx); err != nil {
				errs[i] = fmt.Errorf("stopping %s: %w", s.name, err)
			}
		})
	}
	wg.Wait()
	if sctx.Err() != nil {
		g.log.Warn("shutdown grace period over: cancelling calls still in flight")
	}
	g.services = nil
	return errors.Join(errs...)
}

// close runs the closers, last added first, within the grace period.
func (g *runGroup) close() error {
	cctx, cancel := context.WithTimeout(context.Background(), g.grace)
	defer cancel()
	var errs []error
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i](cctx))
	}
	g.closers = nil
	return errors.Join(errs...)
}

// grpcService serves srv on lis. Stopping it is grpc-go's GracefulStop,
// turned into Stop (calls cancelled) when the grace period ends.
func grpcService(name string, srv *grpc.Server, lis net.Listener) service {
	return service{
		name: name,
		serve: func() error {
			if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("serve %s: %w", lis.Addr(), err)
			}
			return nil
		},
		stop: func(ctx context.Context) error {
			done := make(chan struct{})
			go func() { srv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				srv.Stop()
				<-done
			}
			return nil
		},
	}
}

// ctxService is a server that serves until its context ends and shuts
// itself down then (webbridge.Serve): stop cancels that context, waits for
// run to return, then calls release (when not nil) whether run ran or not.
func ctxService(name string, run func(ctx context.Context) error, release func()) service {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var done chan struct{} // made when serve begins
	return service{
		name: name,
		serve: func() error {
			mu.Lock()
			if ctx.Err() != nil { // stopped before it began
				mu.Unlock()
				return nil
			}
			done = make(chan struct{})
			mu.Unlock()
			defer close(done)
			return run(ctx)
		},
		stop: func(context.Context) error {
			mu.Lock()
			cancel()
			d := done
			mu.Unlock()
			if d != nil {
				<-d
			}
			if release != nil {
				release()
			}
			return nil
		},
	}
}

// startedService is a server that started serving when it was made (the
// inspector's ui.Serve): serve waits for stop, which is shutdown.
func startedService(name string, shutdown func(ctx context.Context) error) service {
	stopped := make(chan struct{})
	return service{
		name:  name,
		serve: func() error { <-stopped; return nil },
		stop: func(ctx context.Context) error {
			defer close(stopped)
			return shutdown(ctx)
		},
	}
}
