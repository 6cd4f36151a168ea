package recorder

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// TestDropCountSurvivesUnwritableSpell: while the capture cannot be written
// every event is dropped and counted: first it is full (capped at 40 pages),
// then another process holds its write lock, so that the counter cannot
// be written either. Once it can be written again (the other process
// prunes it and lets go), the count in the file is the whole count the
// recorder logged, not only the drops that came after, as when the log
// said 180 and the file 30.
func TestDropCountSurvivesUnwritableSpell(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cap.db")
	st, err := store.Open(ctx, path, store.Options{MaxPages: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := New(ctx, st, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	// Bodies kept in SQLite (below store.SegmentThreshold) fill the pages.
	body := bytes.Repeat([]byte{7}, store.SegmentThreshold-100)
	call := func() {
		co := r.StartCall(&proxy.CallStart{Method: "/a/b", Time: time.Now()})
		co.Message(proxy.NewMessage(1, proxy.Request, time.Now(), body))
		co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
		// A locked capture costs three busy waits of 5 s: the batch, the
		// ends of its calls alone, the counter alone.
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := r.Flush(fctx); err != nil {
			t.Fatal(err)
		}
	}
	// Fill the capture, then keep calling while it is full: each batch is
	// lost, and the counter cannot be written either.
	for i := 0; r.Stats().Dropped < 100; i++ {
		if i == 1000 {
			t.Fatalf("the capped capture never filled: %+v", r.Stats())
		}
		call()
	}
	full := r.Stats().Dropped

	// Another process takes the write lock: the next batch and the
	// counter after it both fail (each after the store's 5 s busy wait).
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lock, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	call()
	if r.Stats().Dropped != full+3 {
		t.Fatalf("the locked capture was written: %+v", r.Stats())
	}
	if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := lock.Close(); err != nil {
		t.Fatal(err)
	}

	// The other process frees the space: every call is pruned.
	other, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Prune(ctx, time.Now().Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	recordedBefore := r.Stats().Recorded
	for r.Stats().Recorded < recordedBefore+3 {
		if r.Stats().Dropped > full+300 {
			t.Fatalf("the pruned capture still cannot be written: %+v", r.Stats())
		}
		call()
	}
	n, err := st.DroppedEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := r.Stats().Dropped; n != want {
		t.Errorf("the capture counts %d dropped events once writable again; the recorder dropped %d (%d while full)", n, want, full)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n, err = st.DroppedEvents(ctx)
	if want := r.Stats().Dropped; err != nil || n != want {
		t.Errorf("after Close the capture counts %d dropped events (%v); the recorder dropped %d", n, err, want)
	}
}
