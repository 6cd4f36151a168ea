package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// recordThrough records the calls drive makes to addr, a proxy in front
// of backend with the default recording (redaction included), into a new
// capture; it returns the capture once everything is written.
func recordThrough(t *testing.T, backend string, drive func(addr string)) string {
	t.Helper()
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "rec.db")
	st, err := store.Open(ctx, db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := recorder.New(ctx, st, recorder.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{Backend: backend, Observer: rec, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	srv := p.NewServer()
	drive(stubserver.Serve(t, srv))
	srv.Stop() // every call ended, before the recorder closes
	_ = p.Close()
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}
