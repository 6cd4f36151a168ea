package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cap.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)

func sampleEvents(id int64) []Event {
	return []Event{
		{Start: &CallStart{ID: id, Method: "/kitchen.Oven/Bake", Protocol: "grpc", Backend: "127.0.0.1:9",
			Authority: "oven", Peer: "127.0.0.1:5555", ContentType: "application/grpc", Time: t0,
			Header: Metadata{"x-a": {"1", "2"}, "authorization": {"[redacted]"}}, Redacted: []string{"authorization"}}},
		{Message: &MessageRecord{CallID: id, Seq: 1, Direction: DirRequest, Time: t0.Add(time.Millisecond), Size: 3, Raw: []byte{1, 2, 3}}},
		{Header: &ResponseHeader{CallID: id, Time: t0.Add(2 * time.Millisecond), Header: Metadata{"h": {"v"}}}},
		{Message: &MessageRecord{CallID: id, Seq: 2, Direction: DirResponse, Time: t0.Add(3 * time.Millisecond), Size: 10, Truncated: true, Raw: []byte{9, 9}}},
		{Message: &MessageRecord{CallID: id, Seq: 3, Direction: DirResponse, Time: t0.Add(4 * time.Millisecond), Size: 0, Raw: nil}},
		{End: &CallEnd{CallID: id, Time: t0.Add(5 * time.Millisecond), Code: 9, Message: "not ready",
			Details: [][]byte{{0xa, 0x1}}, Trailers: Metadata{"t-bin": {EncodeBin([]byte{0, 1})}}}},
	}
}

func TestWriteAndRead(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{Name: "proxy-1"})
		ev := sampleEvents(1)
		// Start alone: the call is visible while open.
		if err := s.WriteBatch(ctx, ev[:2]); err != nil {
			t.Fatal(err)
		}
		c, err := s.GetCall(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if c.State != "open" || c.End != nil || c.Status != nil || c.RequestCount != 1 || len(c.Messages) != 1 {
			t.Fatalf("open call: %+v", c)
		}
		if err := s.WriteBatch(ctx, append(ev[2:], Event{Dropped: 3})); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetCall(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		end := t0.Add(5 * time.Millisecond)
		dur := 5.0
		want := &CallWithMessages{
			Call: Call{ID: 1, Method: "/kitchen.Oven/Bake", Service: "kitchen.Oven", RPC: RPCServerStreaming, Protocol: "grpc",
				Backend: "127.0.0.1:9", Authority: "oven", Peer: "127.0.0.1:5555", Start: t0, End: &end, DurationMS: &dur,
				State: "closed", Status: &Status{Code: 9, Name: "FAILED_PRECONDITION", Message: "not ready", Details: [][]byte{{0xa, 0x1}}},
				RequestHeaders:  Metadata{"x-a": {"1", "2"}, "authorization": {"[redacted]"}},
				ResponseHeaders: Metadata{"h": {"v"}}, Trailers: Metadata{"t-bin": {"AAE"}}, Redacted: []string{"authorization"},
				RequestCount: 1, ResponseCount: 2, RequestBytes: 3, ResponseBytes: 10, ContentType: "application/grpc", Proxy: "proxy-1"},
			Messages: []Message{
				{Seq: 1, Direction: DirRequest, Time: t0.Add(time.Millisecond), Size: 3, Raw: []byte{1, 2, 3}},
				{Seq: 2, Direction: DirResponse, Time: t0.Add(3 * time.Millisecond), Size: 10, Truncated: true, Raw: []byte{9, 9}},
				{Seq: 3, Direction: DirResponse, Time: t0.Add(4 * time.Millisecond), Size: 0, Raw: []byte{}},
			},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("call (-want +got):\n%s", d)
		}
		if n, _ := s.DroppedEvents(ctx); n != 3 {
			t.Fatalf("dropped = %d, want 3", n)
		}
		s.Close()

		// Readers open the file read-only and see the same.
		r, err := Open(ctx, db, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		calls, err := r.ListCalls(ctx, Filter{})
		if err != nil || len(calls) != 1 || calls[0].ID != 1 {
			t.Fatalf("list: %v %+v", err, calls)
		}
		if err := r.WriteBatch(ctx, sampleEvents(2)); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("write on read-only store: %v", err)
		}
	})
}

func TestJournalModeWAL(t *testing.T) {
	s, _ := openTemp(t)
	var mode string
	if err := lite(s).rdb.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
}

// listIDs returns the ids of the calls f selects, in order.
func listIDs(t *testing.T, s *Store, f Filter) []int64 {
	t.Helper()
	cs, err := s.ListCalls(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestFilters(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{})
		var ev []Event
		for i := int64(1); i <= 10; i++ {
			m := "/a.B/Get"
			if i%2 == 0 {
				m = "/a.B/Put"
			}
			ev = append(ev, Event{Start: &CallStart{ID: i, Method: m, Time: t0.Add(time.Duration(i) * time.Second)}},
				Event{End: &CallEnd{CallID: i, Time: t0.Add(time.Duration(i) * time.Second), Code: int(i % 3)}})
		}
		if err := s.WriteBatch(ctx, ev); err != nil {
			t.Fatal(err)
		}
		ids := func(f Filter) []int64 { return listIDs(t, s, f) }
		two := 2
		for _, tc := range []struct {
			f    Filter
			want []int64
		}{
			{Filter{Method: "/a.B/Put"}, []int64{2, 4, 6, 8, 10}},
			{Filter{Method: "*Get"}, []int64{1, 3, 5, 7, 9}},
			{Filter{Method: "a.B/*"}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
			{Filter{Status: &two}, []int64{2, 5, 8}},
			{Filter{Since: t0.Add(8 * time.Second)}, []int64{8, 9, 10}},
			{Filter{Limit: 3}, []int64{8, 9, 10}},
			{Filter{Method: "*Get", Limit: 2}, []int64{7, 9}},
		} {
			if d := cmp.Diff(tc.want, ids(tc.f)); d != "" {
				t.Errorf("%+v: %s", tc.f, d)
			}
		}
		if _, err := s.GetCall(ctx, 99); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetCall(99) = %v", err)
		}
		if wm, _ := s.CurrentWatermark(ctx); wm.MaxID != 10 {
			t.Fatalf("MaxID = %d", wm.MaxID)
		}
	})
}

func refuses(t *testing.T, path string, want error) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		s, err := Open(context.Background(), path, Options{ReadOnly: ro})
		if err == nil {
			s.Close()
			t.Fatalf("Open(%s, ro=%v) succeeded", path, ro)
		}
		if !errors.Is(err, want) {
			t.Fatalf("Open(ro=%v) = %v, want %v", ro, err, want)
		}
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("refused file was modified")
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(path + suffix); err == nil {
			t.Fatalf("%s%s was created", path, suffix)
		}
	}
}

func TestRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.db")
	os.WriteFile(text, bytes.Repeat([]byte("hello, this is not sqlite\n"), 20), 0o644)
	refuses(t, text, ErrNotCapture)

	short := filepath.Join(dir, "short.db")
	os.WriteFile(short, []byte("SQLite format 3\x00"), 0o644)
	refuses(t, short, ErrNotCapture)

	// Another application's SQLite database.
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	refuses(t, other, ErrNotCapture)
}

func TestRefusesCorrupt(t *testing.T) {
	s, path := openTemp(t)
	var ev []Event
	for i := int64(1); i <= 200; i++ {
		ev = append(ev, sampleEvents(i)...)
	}
	if err := s.WriteBatch(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		t.Fatal("WAL left after clean close")
	}
	// Keep the header (so it still looks like ours), wreck every page after
	// the first.
	for i := 4096; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	os.WriteFile(path, b, 0o644)
	refuses(t, path, ErrCorrupt)
}

func TestRefusesNewerSchema(t *testing.T) {
	s, path := openTemp(t)
	if _, err := lite(s).wdb.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	refuses(t, path, ErrNewerSchema)
}

func TestReadOnlyMissing(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "none.db"), Options{ReadOnly: true})
	if !errors.Is(err, ErrNoCapture) {
		t.Fatalf("err = %v", err)
	}
}

func TestCloseOpenCalls(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{})
		ev := sampleEvents(1)
		if err := s.WriteBatch(ctx, ev[:4]); err != nil {
			t.Fatal(err)
		}
		// Another process starting on the capture leaves the calls of a
		// writer that still runs alone.
		other, err := Open(ctx, db, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if n, err := other.CloseOpenCalls(ctx); err != nil || n != 0 {
			t.Fatalf("CloseOpenCalls with the writer alive = %d, %v", n, err)
		}
		if c, _ := other.GetCall(ctx, 1); c.State != "open" {
			t.Fatalf("a live writer's call was closed: %+v", c.Call)
		}
		// Once that writer has stopped, its open calls are closed.
		s.Close()
		n, err := other.CloseOpenCalls(ctx)
		if err != nil || n != 1 {
			t.Fatalf("CloseOpenCalls = %d, %v", n, err)
		}
		c, _ := other.GetCall(ctx, 1)
		if c.State != "closed" || c.Status.Name != "UNAVAILABLE" || c.Status.Message != StoppedMessage || !c.End.Equal(t0.Add(3*time.Millisecond)) {
			t.Fatalf("closed call: %+v %+v", c.Call, c.Status)
		}
	})
}

func TestDescriptors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{})
		if _, _, err := s.LoadDescriptors(ctx, "b:1"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		for _, v := range [][]byte{{1, 2}, {3}} {
			if err := s.SaveDescriptors(ctx, "b:1", v); err != nil {
				t.Fatal(err)
			}
			got, _, err := s.LoadDescriptors(ctx, "b:1")
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("LoadDescriptors = %v, %v", got, err)
			}
		}
	})
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	// Bodies go to segment files of about three calls each (a segment is
	// given back once none of its calls is left).
	s, err := Open(ctx, filepath.Join(t.TempDir(), "cap.db"), Options{SegmentBytes: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := bytes.Repeat([]byte{7}, 10000)
	for i := int64(1); i <= 100; i++ {
		ev := []Event{{Start: &CallStart{ID: i, Method: "/a/b", Time: t0.Add(time.Duration(i) * time.Minute)}},
			{Message: &MessageRecord{CallID: i, Seq: 1, Time: t0, Size: int64(len(body)), Raw: body}}}
		if i != 3 { // call 3 stays open
			ev = append(ev, Event{End: &CallEnd{CallID: i, Time: t0.Add(time.Duration(i) * time.Minute)}})
		}
		if err := s.WriteBatch(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Prune(ctx, t0.Add(10*time.Minute+time.Second), 0)
	if err != nil || n != 9 {
		t.Fatalf("Prune by age = %d, %v", n, err)
	}
	if _, err := s.GetCall(ctx, 3); err != nil {
		t.Fatal("open call pruned")
	}
	used, _ := s.UsedBytes(ctx)
	limit := used / 2
	if _, err := s.Prune(ctx, time.Time{}, limit); err != nil {
		t.Fatal(err)
	}
	if used, _ = s.UsedBytes(ctx); used > limit {
		t.Fatalf("used %d > limit %d", used, limit)
	}
	cs, _ := s.ListCalls(ctx, Filter{})
	if len(cs) < 30 || len(cs) > 50 || cs[len(cs)-1].ID != 100 {
		t.Fatalf("kept %d calls, last %d", len(cs), cs[len(cs)-1].ID)
	}
	var msgs int
	lite(s).rdb.QueryRow("SELECT count(*) FROM messages").Scan(&msgs)
	if msgs != len(cs) {
		t.Fatalf("%d messages for %d calls: pruned calls left messages behind", msgs, len(cs))
	}
}

// TestSplitMethod: the service is what the proxy routes by, also for a
// path with a "/" inside its method part.
func TestSplitMethod(t *testing.T) {
	for in, want := range map[string][2]string{
		"/pkg.Svc/Method": {"pkg.Svc", "Method"},
		"pkg.Svc/Method":  {"pkg.Svc", "Method"},
		"/pkg.Svc/a/b":    {"pkg.Svc", "a/b"},
		"/Method":         {"", "Method"},
	} {
		if svc, m := SplitMethod(in); svc != want[0] || m != want[1] {
			t.Errorf("SplitMethod(%q) = %q, %q; want %q, %q", in, svc, m, want[0], want[1])
		}
	}
}

func TestParseCode(t *testing.T) {
	for in, want := range map[string]int{"5": 5, "not_found": 5, "NOT_FOUND": 5, "NotFound": 5, "Canceled": 1,
		"cancelled": 1, "failed_precondition": 9, "ok": 0, "Unauthenticated": 16} {
		if got, err := ParseCode(in); err != nil || got != want {
			t.Errorf("ParseCode(%q) = %d, %v", in, got, err)
		}
	}
	if _, err := ParseCode("nope"); err == nil {
		t.Error("ParseCode(nope) succeeded")
	}
}

// BenchmarkWriter measures the store's batched writer alone: 300-byte
// message bodies, 1000 events per transaction, calls of 10 messages.
func BenchmarkWriter(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b)
	body := bytes.Repeat([]byte("x"), 300)
	const batch = 1000
	ev := make([]Event, 0, batch+2)
	var id int64
	seq := 0
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if seq == 0 {
			id++
			ev = append(ev, Event{Start: &CallStart{ID: id, Method: "/bench.S/M", Time: start}})
		}
		seq++
		ev = append(ev, Event{Message: &MessageRecord{CallID: id, Seq: seq, Direction: DirRequest, Time: start, Size: 300, Raw: body}})
		if seq == 10 {
			ev = append(ev, Event{End: &CallEnd{CallID: id, Time: start}})
			seq = 0
		}
		if len(ev) >= batch {
			if err := s.WriteBatch(ctx, ev); err != nil {
				b.Fatal(err)
			}
			ev = ev[:0]
		}
	}
	if err := s.WriteBatch(ctx, ev); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// TestMetadataJSON: the hand-written encoder gives what encoding/json
// reads back as the same metadata, for plain, escaped and non-UTF-8 values.
func TestMetadataJSON(t *testing.T) {
	md := Metadata{
		"plain":       {"application/grpc", ""},
		"quote\\key":  {`say "hi"`, "tab\there", "line\nbreak"},
		"unicode":     {"héllo ☃", "<tag>&amp;"},
		"bad-utf8":    {"a\xffb"},
		"x-trace-bin": {"AAEC"},
	}
	got := mdJSON(md, nil)
	var back Metadata
	if err := json.Unmarshal([]byte(got), &back); err != nil {
		t.Fatalf("mdJSON gave invalid JSON %q: %v", got, err)
	}
	want := Metadata{}
	for k, vs := range md {
		for _, v := range vs {
			want[k] = append(want[k], strings.ToValidUTF8(v, "\uFFFD"))
		}
	}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("round trip:\n got %q\nwant %q", back, want)
	}
	std, _ := json.Marshal(Metadata{"a": {"1"}, "b": {"2", "3"}, "c": nil, "d": {}})
	if got := mdJSON(Metadata{"b": {"2", "3"}, "a": {"1"}, "c": nil, "d": {}}, nil); got != string(std) {
		t.Errorf("mdJSON = %s, want sorted keys like encoding/json: %s", got, std)
	}
	if got := mdJSON(nil, nil); got != "{}" {
		t.Errorf("mdJSON(nil) = %q, want {}", got)
	}
}

func TestMigratesForward(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if err := s.WriteBatch(ctx, sampleEvents(1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A later grpctap adds a step; opening the old capture applies it and
	// keeps the data.
	saved := migrations
	migrations = append(append([]string(nil), saved...), `ALTER TABLE calls ADD COLUMN note TEXT NOT NULL DEFAULT 'migrated'`)
	defer func() { migrations = saved }()
	s2, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var v int
	var note string
	lite(s2).rdb.QueryRow("PRAGMA user_version").Scan(&v)
	if err := lite(s2).rdb.QueryRow("SELECT note FROM calls WHERE id = 1").Scan(&note); err != nil || v != len(saved)+1 || note != "migrated" {
		t.Fatalf("version %d, note %q, %v", v, note, err)
	}
	if c, err := s2.GetCall(ctx, 1); err != nil || len(c.Messages) != 3 {
		t.Fatalf("call after migration: %v", err)
	}
}

// lite is the SQLite engine of a Store, for tests that look inside it.
func lite(s *Store) *liteStore { return s.engine.(*liteStore) }

// TestParseMDOfOldCaptures: a header column written before redacted names
// were kept has only the values: a key whose values all read "[redacted]"
// was redacted, as readers took it then; with the list, the list decides.
func TestParseMDOfOldCaptures(t *testing.T) {
	md, red := parseMD(`{"authorization":["[redacted]"],"x-a":["1","[redacted]"]}`)
	if d := cmp.Diff([]string{"authorization"}, red); d != "" || len(md) != 2 {
		t.Errorf("old column: redacted (-want +got):\n%s (md %v)", d, md)
	}
	md, red = parseMD(`{":Redacted headers":[],"authorization":["[redacted]"]}`)
	if len(red) != 0 || len(md) != 1 || md["authorization"][0] != "[redacted]" {
		t.Errorf("column with an empty list: md %v, redacted %v; want the value kept as sent", md, red)
	}
	if got := mdJSON(Metadata{"a": {"[redacted]"}, "b": {"[redacted]"}}, []string{"b", "z"}); got != `{":Redacted headers":["b"],"a":["[redacted]"],"b":["[redacted]"]}` {
		t.Errorf("mdJSON with a redacted value = %s", got)
	}
}
