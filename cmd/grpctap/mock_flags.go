package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/mock"
	"github.com/grpctap/grpctap/proxy"
)

// mockReload is how old the fallback's view of the capture may get before
// the next fallback call reads it again (calls recorded since are seen).
const mockReload = 10 * time.Second

// mockOnUnavailableFlags are 'proxy --mock-on-unavailable' and its
// --mock-* flags.
type mockOnUnavailableFlags struct {
	on  bool
	db  string
	src mockSourceFlags
}

func (f *mockOnUnavailableFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.on, "mock-on-unavailable", false, "when a backend is unreachable, answer its calls from the capture as 'grpctap mock' would (logged; recorded with the grpctap-fallback header)")
	fs.StringVar(&f.db, "mock-db", "", "capture to answer from with --mock-on-unavailable (default: --db)")
	f.src.register(fs, "mock-")
}

// apply sets opts.Fallback when --mock-on-unavailable is given; db is
// the proxy's --db, answered from unless --mock-db says otherwise. The
// capture is read on the first fallback call and again when it is older
// than 10s. Call the returned function when the proxy is done.
func (f *mockOnUnavailableFlags) apply(opts *proxy.Options, db string, log *slog.Logger) (func(), error) {
	if !f.on {
		return func() {}, nil
	}
	if f.db != "" {
		db = f.db
	}
	if db == "" {
		db = defaultDB
	}
	src, err := f.src.config(db)
	if err != nil {
		return nil, err
	}
	lm := &lazyMock{src: src, log: log}
	opts.Fallback = lm
	log.Info("calls to unreachable backends are answered from the capture", "db", db)
	return lm.close, nil
}

// lazyMock is the proxy's Fallback: a mock built from the capture on
// demand.
type lazyMock struct {
	src mockSource
	log *slog.Logger

	mu      sync.Mutex
	m       *mock.Mock
	release func()
	loaded  time.Time
}

func (l *lazyMock) current(ctx context.Context) (*mock.Mock, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m != nil && time.Since(l.loaded) < mockReload {
		return l.m, nil
	}
	m, release, err := loadMock(ctx, l.src, l.log)
	if err != nil {
		if l.m != nil {
			l.log.Warn("fallback: reading the capture again failed; answering from the previous read", "err", err)
			return l.m, nil
		}
		return nil, err
	}
	if l.release != nil {
		l.release()
	}
	l.m, l.release, l.loaded = m, release, time.Now()
	return m, nil
}

// Answer serves a call whose backend is unreachable from the capture.
func (l *lazyMock) Answer(s *proxy.FallbackStream, cause error) error {
	m, err := l.current(context.WithoutCancel(s.Context()))
	if err != nil {
		l.log.Error("fallback: cannot read the capture", "db", l.src.db, "err", err)
		return status.Errorf(codes.Unavailable, "grpctap: backend %s unavailable (%s) and the capture cannot be read: %v", s.Backend, status.Convert(cause).Message(), err)
	}
	return m.Serve(s, s.Method, s.Authority)
}

func (l *lazyMock) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.release != nil {
		l.release()
		l.release = nil
	}
}
