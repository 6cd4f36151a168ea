package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/grpctap/grpctap/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// record writes n unary calls of method through s in one batch, each
// with a request body of its own ("<tag>-<i>") and a header, and returns
// their ids.
func record(t *testing.T, s *Store, method, tag string, n int, start time.Time) []int64 {
	t.Helper()
	var ev []Event
	var starts []*CallStart
	for i := 0; i < n; i++ {
		k := s.NewKey()
		body := []byte(fmt.Sprintf("%s-%d", tag, i))
		st := &CallStart{ID: k, Method: method, Protocol: "grpc", Backend: "b-" + tag, Time: start.Add(time.Duration(i) * time.Second),
			Deadline: start.Add(time.Duration(i)*time.Second + 3*time.Second), Header: Metadata{"x-tag": {tag}, "x-i": {fmt.Sprint(i)}}}
		starts = append(starts, st)
		ev = append(ev, Event{Start: st},
			Event{Message: &MessageRecord{CallID: k, Seq: 1, Direction: DirRequest, Time: st.Time, Size: int64(len(body)), Raw: body}},
			Event{End: &CallEnd{CallID: k, Time: st.Time.Add(time.Millisecond), Code: i % 2}})
	}
	if err := s.WriteBatch(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, n)
	for i, st := range starts {
		ids[i] = st.ID
	}
	return ids
}

func pageIDs(t *testing.T, s *Store, q PageQuery) []int64 {
	t.Helper()
	p, err := s.CallsPage(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{}
	for _, c := range p.Calls {
		ids = append(ids, c.ID)
	}
	return ids
}

// TestFleetQueries: two named writers on one capture; the inspector's and
// the CLI's queries find calls by proxy, text (metadata and body bytes),
// state, protocol, and page through them.
func TestFleetQueries(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		a := openDB(t, db, Options{Name: "edge-a"})
		b := openDB(t, db, Options{Name: "edge-b"})
		ra := record(t, a, "/shop.Cart/Add", "apple", 3, t0)                      // ids 1..3
		rb := record(t, b, "/shop.Cart/Remove", "banana", 2, t0.Add(time.Minute)) // ids 4..5
		if d := cmp.Diff([]int64{1, 2, 3, 4, 5}, append(ra, rb...)); d != "" {
			t.Fatalf("ids: %s", d)
		}
		// An open call of b.
		k := b.NewKey()
		if err := b.WriteBatch(ctx, []Event{{Start: &CallStart{ID: k, Method: "/shop.Cart/Watch", Protocol: "grpc-web", Time: t0.Add(time.Hour)}}}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			q    PageQuery
			want []int64
		}{
			{PageQuery{}, []int64{6, 5, 4, 3, 2, 1}},
			{PageQuery{Filter: Filter{Proxy: "edge-a"}}, []int64{3, 2, 1}},
			{PageQuery{Filter: Filter{Proxy: "edge-b"}, State: "closed"}, []int64{5, 4}},
			{PageQuery{State: "open"}, []int64{6}},
			{PageQuery{Protocol: "grpc-web"}, []int64{6}},
			{PageQuery{Text: "banana-1"}, []int64{5}},    // a body's bytes
			{PageQuery{Text: "APPLE"}, []int64{3, 2, 1}}, // header values, any case
			{PageQuery{Text: "remove"}, []int64{5, 4}},   // the method
			{PageQuery{Filter: Filter{Method: "*Add", Status: new(int)}}, []int64{3, 1}},
			{PageQuery{Filter: Filter{Limit: 2}, Before: 5}, []int64{4, 3}},
			{PageQuery{Filter: Filter{AfterID: 4}}, []int64{6, 5}},
		} {
			if d := cmp.Diff(tc.want, pageIDs(t, a, tc.q)); d != "" {
				t.Errorf("%+v: %s", tc.q, d)
			}
		}
		if d := cmp.Diff([]int64{4, 5, 6}, listIDs(t, a, Filter{Proxy: "edge-b"})); d != "" {
			t.Errorf("Filter{Proxy}: %s", d)
		}
		c, err := a.GetCall(ctx, 4)
		if err != nil || c.Proxy != "edge-b" || c.Backend != "b-banana" || string(c.Messages[0].Raw) != "banana-0" {
			t.Fatalf("call 4: %+v %v", c, err)
		}
		if got, err := a.Proxies(ctx); err != nil || !cmp.Equal(got, []string{"edge-a", "edge-b"}) {
			t.Errorf("Proxies = %v, %v", got, err)
		}
		if got, err := a.Backends(ctx); err != nil || !cmp.Equal(got, []string{"b-apple", "b-banana"}) {
			t.Errorf("Backends = %v, %v", got, err)
		}
		if d, ok, err := a.RecordedTimeout(ctx, 2); err != nil || !ok || d != 3*time.Second {
			t.Errorf("RecordedTimeout = %v %v %v", d, ok, err)
		}
		if wm, err := a.CurrentWatermark(ctx); err != nil || wm != (Watermark{MaxID: 6, Open: 1}) {
			t.Errorf("watermark = %+v, %v", wm, err)
		}
		if st, err := a.Stats(ctx, StatsQuery{Proxy: "edge-a"}); err != nil || st.Calls != 3 || st.Errors != 1 {
			t.Errorf("stats of edge-a: %+v %v", st, err)
		}
		// The JSON names the proxy.
		js, _ := json.Marshal(c.Call)
		var m map[string]any
		json.Unmarshal(js, &m)
		if m["proxy"] != "edge-b" {
			t.Errorf("JSON proxy = %v", m["proxy"])
		}
	})
}

func TestCollections(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{})
		if cs, err := s.Collections(ctx); err != nil || len(cs) != 0 {
			t.Fatalf("Collections on a new capture = %v, %v", cs, err)
		}
		id, err := s.CreateCollection(ctx, "smoke", []byte(`{"requests":[]}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateCollection(ctx, "smoke", []byte(`{}`)); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate name: %v", err)
		}
		if err := s.UpdateCollection(ctx, id, "smoke2", []byte(`{"requests":[1]}`)); err != nil {
			t.Fatal(err)
		}
		c, err := s.GetCollection(ctx, id)
		if err != nil || c.Name != "smoke2" || string(c.Body) != `{"requests":[1]}` {
			t.Fatalf("GetCollection = %+v, %v", c, err)
		}
		if err := s.DeleteCollection(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetCollection(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted collection: %v", err)
		}
		if err := s.DeleteCollection(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
	})
}

// TestPruneByAge: retention deletes closed calls older than the cut and
// their messages, never an open call.
func TestPruneByAge(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{})
		record(t, s, "/a.S/M", "old", 10, t0)
		k := s.NewKey()
		if err := s.WriteBatch(ctx, []Event{{Start: &CallStart{ID: k, Method: "/a.S/Open", Time: t0}}}); err != nil {
			t.Fatal(err)
		}
		record(t, s, "/a.S/M", "new", 5, t0.Add(time.Hour))
		n, err := s.Prune(ctx, t0.Add(30*time.Minute), 0)
		if err != nil || n != 10 {
			t.Fatalf("Prune = %d, %v; want 10", n, err)
		}
		if d := cmp.Diff([]int64{11, 12, 13, 14, 15, 16}, listIDs(t, s, Filter{})); d != "" {
			t.Fatalf("left: %s", d)
		}
		if p := pageIDs(t, s, PageQuery{Text: "old-3"}); len(p) != 0 {
			t.Fatalf("a pruned call's body is still found: %v", p)
		}
	})
}

// TestCompactToFile: compact writes a capture, of either engine, to one
// SQLite file that reads back the same.
func TestCompactToFile(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{Name: "p"})
		record(t, s, "/a.S/M", "x", 4, t0)
		if err := s.SaveDescriptors(ctx, "b-x", []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "out.db")
		if err := s.Compact(ctx, out); err != nil {
			t.Fatal(err)
		}
		c := openDB(t, out, Options{ReadOnly: true})
		want, got := allCalls(t, s), allCalls(t, c)
		for i := range got {
			got[i].Proxy = want[i].Proxy // the file's calls are the compaction's
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("compacted calls differ (-want +got):\n%s", d)
		}
		if fds, _, err := c.LoadDescriptors(ctx, "b-x"); err != nil || len(fds) != 3 {
			t.Fatalf("descriptors: %v %v", fds, err)
		}
	})
}

// TestPGMigratesOnce: proxies starting together on a new database all
// open it, and it is migrated once; a schema from a newer grpctap is
// refused, and reading a database without a capture says so.
func TestPGMigratesOnce(t *testing.T) {
	ctx := context.Background()
	db := pgtest.DB(t)
	if _, err := Open(ctx, db, Options{ReadOnly: true}); !errors.Is(err, ErrNoCapture) {
		t.Fatalf("read-only open of an empty database = %v, want ErrNoCapture", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(ctx, db, Options{})
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE grpctap.meta SET value = '99' WHERE key = 'schema_version'"); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		if _, err := Open(ctx, db, Options{ReadOnly: ro}); !errors.Is(err, ErrNewerSchema) {
			t.Fatalf("Open(ro=%v) of a newer schema = %v", ro, err)
		}
	}
}

// TestPGDeferredStart: a recording store opened while PostgreSQL is down
// starts anyway; writes fail (the recorder counts them) until the server
// is up, then succeed without a restart.
func TestPGDeferredStart(t *testing.T) {
	ctx := context.Background()
	srv, err := pgtest.Start()
	if err != nil {
		pgtest.Unavailable(t, err)
	}
	defer srv.Close()
	db, err := srv.CreateDB("late")
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := Open(ctx, db, Options{}); err == nil {
		t.Fatal("Open without Deferred succeeded with the server down")
	}
	var retries int
	var mu sync.Mutex
	s, err := Open(ctx, db, Options{Deferred: true, OnRetry: func(error, time.Duration) { mu.Lock(); retries++; mu.Unlock() }})
	if err != nil {
		t.Fatalf("deferred open: %v", err)
	}
	defer s.Close()
	if err := s.WriteBatch(ctx, sampleEvents(s.NewKey())); err == nil {
		t.Fatal("write succeeded with the server down")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var werr error
	for try := 0; try < 200; try++ { // the backoff is at most 5 s; 10 s in all
		if werr = s.WriteBatch(ctx, sampleEvents(s.NewKey())); werr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if werr != nil {
		t.Fatalf("writes never resumed: %v", werr)
	}
	if ids := listIDs(t, s, Filter{}); len(ids) != 1 {
		t.Fatalf("calls after recovery: %v", ids)
	}
	mu.Lock()
	defer mu.Unlock()
	if retries == 0 {
		t.Fatal("OnRetry was never told")
	}
}

// TestPGChanges: a reader hears of another process's commits.
func TestPGChanges(t *testing.T) {
	ctx := context.Background()
	db := pgtest.DB(t)
	w := openDB(t, db, Options{})
	r := openDB(t, db, Options{ReadOnly: true})
	ch, stop := r.Changes(ctx)
	defer stop()
	own, stopOwn := w.Changes(ctx)
	defer stopOwn()
	for _, c := range []<-chan struct{}{ch, own} { // both listen from now on
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatal("Changes never started listening")
		}
	}
	record(t, w, "/a.S/M", "n", 1, t0)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled within 5 s")
	}
	select {
	case <-own:
		t.Fatal("a writer was told of its own commit")
	case <-time.After(300 * time.Millisecond):
	}
}

// TestPGPruneOneAtATime: retention runs in one process of a fleet at a
// time: while another holds the retention lock, Prune leaves the work to
// it; once free, Prune does it.
func TestPGPruneOneAtATime(t *testing.T) {
	ctx := context.Background()
	db := pgtest.DB(t)
	s := openDB(t, db, Options{Name: "a"})
	record(t, s, "/a.S/M", "old", 500, t0)
	other, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(pgLockPrune)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Prune(ctx, t0.Add(time.Hour), 0); err != nil || n != 0 {
		t.Fatalf("Prune while another process prunes = %d, %v; want 0, nil", n, err)
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(pgLockPrune)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Prune(ctx, t0.Add(time.Hour), 0); err != nil || n != 500 {
		t.Fatalf("Prune = %d, %v; want 500", n, err)
	}
	if _, err := s.Prune(ctx, time.Time{}, 1<<30); err == nil {
		t.Fatal("a size cap on PostgreSQL was accepted")
	}
}

// TestTextThatIsNotUTF8: a backend's status message and a method may hold
// any bytes (invalid UTF-8, NUL); the call is still recorded, on both
// engines (PostgreSQL refuses such text: it gets U+FFFD in their place),
// and reads back with the rest of what it said.
func TestTextThatIsNotUTF8(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{})
		for _, started := range []bool{true, false} { // inserted whole, and ended in a later batch
			k := s.NewKey()
			start := Event{Start: &CallStart{ID: k, Method: "/a.S/M\xff", Peer: "p\x00eer", Time: t0, Header: Metadata{"x-b": {"v\xfe"}}}}
			end := Event{End: &CallEnd{CallID: k, Time: t0.Add(time.Millisecond), Code: 13, Message: "bad\x00msg\xfe", Trailers: Metadata{"t": {"\xff"}}}}
			batches := [][]Event{{start, end}}
			if !started {
				batches = [][]Event{{start}, {end}}
			}
			for _, b := range batches {
				if err := s.WriteBatch(ctx, b); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			c, err := s.GetCall(ctx, start.Start.ID)
			if err != nil {
				t.Fatal(err)
			}
			js, err := json.Marshal(c)
			if err != nil || c.Status == nil || !strings.Contains(c.Status.Message, "bad") || !strings.Contains(c.Status.Message, "msg") ||
				!strings.HasPrefix(c.Method, "/a.S/M") {
				t.Fatalf("read back: %s %v", js, err)
			}
		}
	})
}
