package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/grpctap/grpctap/internal/headers"
)

// copyFile copies a golden capture so that opening it changes nothing
// under testdata.
func copyFile(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// allCalls reads every call with its messages, as `grpctap export` does.
func allCalls(t *testing.T, s *Store) []CallWithMessages {
	t.Helper()
	ctx := context.Background()
	calls, err := s.ListCalls(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []CallWithMessages
	for _, c := range calls {
		full, err := s.GetCall(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *full)
	}
	return out
}

func readGolden(t *testing.T, path string) []CallWithMessages {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []CallWithMessages
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var c CallWithMessages
		if err := dec.Decode(&c); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		if c.Redacted == nil {
			// Written before redacted headers were named: they read
			// from the values, as then.
			c.Redacted = headers.InBand(c.RequestHeaders, c.ResponseHeaders, c.Trailers)
		}
		out = append(out, c)
	}
}

// jsonOf compares calls as their JSON: what every command prints.
func jsonOf(t *testing.T, calls []CallWithMessages) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for i := range calls {
		if err := enc.Encode(&calls[i]); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestV1Capture: a capture written by grpctap before store v2
// (testdata/capture/v1.db, with the JSON it gave then in v1.ndjson) reads
// the same as it is, and again after a writer migrates it; recording then
// goes on after its last id, and filters find old and new calls.
func TestV1Capture(t *testing.T) {
	ctx := context.Background()
	want := jsonOf(t, readGolden(t, "../testdata/capture/v1.ndjson"))
	path := copyFile(t, "../testdata/capture/v1.db")

	ro, err := Open(ctx, path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if lite(ro).version != 1 {
		t.Fatalf("read-only open changed the schema to %d", lite(ro).version)
	}
	if d := cmp.Diff(want, jsonOf(t, allCalls(t, ro))); d != "" {
		t.Fatalf("v1 read as it is (-want +got):\n%s", d)
	}
	if n, _ := ro.DroppedEvents(ctx); n != 2 {
		t.Fatalf("dropped = %d, want 2", n)
	}
	// A v1 capture kept no proxy names: a proxy filter finds no call
	// (rather than failing on the missing writers table), in lists, pages
	// and the overview.
	if cs, err := ro.ListCalls(ctx, Filter{Proxy: "edge"}); err != nil || len(cs) != 0 {
		t.Fatalf("proxy filter on v1: %d calls, %v", len(cs), err)
	}
	if p, err := ro.CallsPage(ctx, PageQuery{Filter: Filter{Proxy: "edge"}}); err != nil || len(p.Calls) != 0 {
		t.Fatalf("proxy page on v1: %v", err)
	}
	if st, err := ro.Stats(ctx, StatsQuery{Proxy: "edge"}); err != nil || st.Calls != 0 {
		t.Fatalf("proxy stats on v1: %v", err)
	}
	ro.Close()

	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if lite(s).version != schemaVersion() {
		t.Fatalf("schema %d after a writer opened it, want %d", lite(s).version, schemaVersion())
	}
	if d := cmp.Diff(want, jsonOf(t, allCalls(t, s))); d != "" {
		t.Fatalf("v1 after migration (-want +got):\n%s", d)
	}
	if fds, _, err := s.LoadDescriptors(ctx, "127.0.0.1:9101"); err != nil || !bytes.Equal(fds, []byte{1, 2, 3}) {
		t.Fatalf("descriptors after migration: %v %v", fds, err)
	}
	// Call 42 was left open by the v1 writer, which is gone.
	if n, err := s.CloseOpenCalls(ctx); err != nil || n != 1 {
		t.Fatalf("CloseOpenCalls = %d, %v", n, err)
	}
	ev := sampleEvents(s.NewKey())
	ev[0].Start.Method = "/grpctap.demo.v1.DemoService/Echo"
	ev[0].Start.Time = time.Date(2026, 11, 20, 9, 45, 0, 0, time.UTC)
	if err := s.WriteBatch(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if ev[0].Start.ID != 43 {
		t.Fatalf("new call got id %d, want 43", ev[0].Start.ID)
	}
	ids := func(f Filter) []int64 { return listIDs(t, s, f) }
	echo := ids(Filter{Method: "*/Echo"})
	if len(echo) != 33 || echo[0] != 1 || echo[len(echo)-1] != 43 {
		t.Fatalf("Echo calls across v1 and v2 rows: %v", echo)
	}
	if got := ids(Filter{Since: time.Date(2026, 11, 20, 9, 31, 1, 0, time.UTC)}); !cmp.Equal(got, []int64{42, 43}) {
		t.Fatalf("since 09:31:01: %v", got)
	}
	// The messages view shows the v1 rows and the new ones.
	var n int
	if err := lite(s).rdb.QueryRow("SELECT count(*) FROM messages").Scan(&n); err != nil || n != 40+32+15+1+3 {
		t.Fatalf("messages view rows = %d, %v", n, err)
	}
	// Retention removes v1 messages with their calls.
	if _, err := s.Prune(ctx, time.Date(2026, 11, 20, 9, 30, 21, 0, time.UTC), 0); err != nil {
		t.Fatal(err)
	}
	if err := lite(s).rdb.QueryRow("SELECT count(*) FROM messages_v1 WHERE call_id <= 20").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d v1 messages of pruned calls left, %v", n, err)
	}
}

// TestIDsAcrossProcesses: several stores on one file (as several processes
// would have) record at once; every call is kept with a unique id, in
// commit order, and each call's messages are its own.
func TestIDsAcrossProcesses(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		path := db
		const writers, batches, perBatch = 4, 25, 8
		stores := make([]*Store, writers)
		for i := range stores {
			s, err := Open(ctx, path, Options{Name: fmt.Sprint("w", i)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			stores[i] = s
		}
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := 0; b < batches; b++ {
					var ev []Event
					for k := 0; k < perBatch; k++ {
						key := s.NewKey()
						tag := []byte(fmt.Sprintf("w%d-b%d-k%d", w, b, k))
						ev = append(ev,
							Event{Start: &CallStart{ID: key, Method: fmt.Sprintf("/w%d.S/M", w), Time: time.Now()}},
							Event{Message: &MessageRecord{CallID: key, Seq: 1, Direction: DirRequest, Time: time.Now(), Size: int64(len(tag)), Raw: tag}},
							Event{End: &CallEnd{CallID: key, Time: time.Now()}})
					}
					if err := s.WriteBatch(ctx, ev); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		calls := allCalls(t, stores[0])
		if len(calls) != writers*batches*perBatch {
			t.Fatalf("%d calls recorded, want %d", len(calls), writers*batches*perBatch)
		}
		seen := map[string]bool{}
		for i, c := range calls {
			if c.ID != int64(i+1) {
				t.Fatalf("ids are not 1..n: call %d at %d", c.ID, i)
			}
			if len(c.Messages) != 1 {
				t.Fatalf("call %d has %d messages", c.ID, len(c.Messages))
			}
			tag := string(c.Messages[0].Raw)
			if seen[tag] || !strings.HasPrefix(tag, strings.TrimSuffix(strings.TrimPrefix(c.Method, "/"), ".S/M")+"-") {
				t.Fatalf("call %d (%s) has message %q", c.ID, c.Method, tag)
			}
			seen[tag] = true
		}
	})
}

// TestConcurrentCreate: processes that create the same new capture at the
// same moment all start.
func TestConcurrentCreate(t *testing.T) {
	if os.Getenv("GRPCTAP_CREATE_CHILD") != "" {
		s, err := Open(context.Background(), os.Getenv("GRPCTAP_CREATE_CHILD"), Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			os.Exit(3)
		}
		s.Close()
		return
	}
	for round := 0; round < 5; round++ {
		path := filepath.Join(t.TempDir(), "new.db")
		var cmds []*exec.Cmd
		for i := 0; i < 6; i++ {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestConcurrentCreate$")
			cmd.Env = append(os.Environ(), "GRPCTAP_CREATE_CHILD="+path)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
			t.Cleanup(func() {
				if cmd.ProcessState == nil {
					cmd.Process.Kill()
					cmd.Wait()
				}
			})
		}
		for _, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("round %d: a process failed to open the new capture: %v\n%s", round, err, cmd.Stdout)
			}
		}
	}
}

// bigEvents is a unary call with bodies of the given sizes, each made of
// the bytes tag and its index, so that bodies differ.
func bigEvents(key int64, tag byte, t time.Time, sizes ...int) []Event {
	ev := []Event{{Start: &CallStart{ID: key, Method: "/big.S/Put", Time: t}}}
	for i, n := range sizes {
		b := bytes.Repeat([]byte{tag, byte(i)}, n/2)
		ev = append(ev, Event{Message: &MessageRecord{CallID: key, Seq: i + 1, Direction: DirRequest, Time: t, Size: int64(len(b)), Raw: b}})
	}
	return append(ev, Event{End: &CallEnd{CallID: key, Time: t}})
}

func segmentFiles(t *testing.T, path string) []string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(SegmentDir(path), "seg-*.bin"))
	sort.Strings(names)
	return names
}

// TestSegments: bodies of a row reaching SegmentThreshold go to the
// segment folder and read back whole; a batch that died between writing bodies and committing leaves a
// tail that is never read and is written over by the next writer; a
// damaged body is reported, not returned.
func TestSegments(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if err := s.WriteBatch(ctx, bigEvents(s.NewKey(), 1, t0, 100, SegmentThreshold, 70000)); err != nil {
		t.Fatal(err)
	}
	c1, err := s.GetCall(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []int{100, SegmentThreshold, 70000} {
		if m := c1.Messages[i]; len(m.Raw) != n || m.BodyError != "" || m.Raw[0] != 1 || m.Raw[1] != byte(i) {
			t.Fatalf("message %d: %d bytes, %q", i+1, len(m.Raw), m.BodyError)
		}
	}
	files := segmentFiles(t, path)
	if len(files) != 1 {
		t.Fatalf("segment files: %v", files)
	}
	s.Close()

	// A writer killed after writing its bodies but before its commit:
	// garbage after the committed length.
	f, err := os.OpenFile(files[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte{0xee}, 50000))
	f.Close()

	s2, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.WriteBatch(ctx, bigEvents(s2.NewKey(), 2, t0, 30000)); err != nil {
		t.Fatal(err)
	}
	if got := segmentFiles(t, path); len(got) != 1 {
		t.Fatalf("the gone writer's segment was not reused: %v", got)
	}
	for id, sizes := range map[int64][]int{1: {100, SegmentThreshold, 70000}, 2: {30000}} {
		c, err := s2.GetCall(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range sizes {
			m := c.Messages[i]
			if want := bytes.Repeat([]byte{byte(id), byte(i)}, n/2); !bytes.Equal(m.Raw, want) || m.BodyError != "" {
				t.Fatalf("call %d message %d: %d bytes, %q", id, i+1, len(m.Raw), m.BodyError)
			}
		}
	}

	// A damaged byte: the body is refused with the reason.
	f, err = os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0}, 10)
	f.Close()
	r, err := Open(ctx, path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := r.GetCall(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The call's bodies of that batch are one range in the segment: all
	// three are refused; the other call's, elsewhere in the file, are not.
	for _, m := range c.Messages {
		if len(m.Raw) != 0 || !strings.Contains(m.BodyError, "checksum") {
			t.Fatalf("damaged body %d: %d bytes, %q", m.Seq, len(m.Raw), m.BodyError)
		}
	}
	if c, err := r.GetCall(ctx, 2); err != nil || len(c.Messages[0].Raw) != 30000 || c.Messages[0].BodyError != "" {
		t.Fatalf("a body away from the damage was lost: %v", err)
	}
}

// TestPruneSegments: retention deletes segment files once no call refers
// to them, and counts their bytes against --max-db-size.
func TestPruneSegments(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cap.db")
	s, err := Open(ctx, path, Options{SegmentBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 40; i++ {
		if err := s.WriteBatch(ctx, bigEvents(s.NewKey(), byte(i), t0.Add(time.Duration(i)*time.Minute), 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	before := segmentFiles(t, path)
	used, err := s.UsedBytes(ctx)
	if err != nil || used < 40*64<<10 {
		t.Fatalf("used bytes %d (%v) do not count the segments", used, err)
	}
	if n, err := s.Prune(ctx, t0.Add(30*time.Minute), 0); err != nil || n != 30 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	after := segmentFiles(t, path)
	if len(before) < 8 || len(after) > len(before)/3+1 {
		t.Fatalf("segment files %d before, %d after pruning 30 of 40 calls", len(before), len(after))
	}
	for id := int64(31); id <= 40; id++ {
		c, err := s.GetCall(ctx, id)
		if err != nil || len(c.Messages[0].Raw) != 64<<10 || c.Messages[0].BodyError != "" {
			t.Fatalf("call %d after pruning: %v", id, err)
		}
	}
	if n, err := s.Prune(ctx, time.Time{}, 200<<10); err != nil || n == 0 {
		t.Fatalf("Prune by size = %d, %v", n, err)
	}
	if used, _ := s.UsedBytes(ctx); used > 200<<10 {
		t.Fatalf("used %d bytes after pruning to 200 KiB", used)
	}
}

// TestCompact: compact writes one file that holds every body itself and
// reads the same as the capture.
func TestCompact(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	for i := 0; i < 5; i++ {
		if err := s.WriteBatch(ctx, bigEvents(s.NewKey(), byte(i), t0, 10, 40000, 100000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WriteBatch(ctx, sampleEvents(s.NewKey())); err != nil {
		t.Fatal(err)
	}
	want := jsonOf(t, allCalls(t, s))
	out := filepath.Join(t.TempDir(), "shared.db")
	if err := s.Compact(ctx, out); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("compact over an existing file: %v", err)
	}
	if _, err := os.Stat(SegmentDir(out)); !os.IsNotExist(err) {
		t.Fatalf("compact made a segment folder: %v", err)
	}
	// Moved away from the original's segment folder, it still reads whole.
	lonely := filepath.Join(t.TempDir(), "alone.db")
	if err := os.Rename(out, lonely); err != nil {
		t.Fatal(err)
	}
	c, err := Open(ctx, lonely, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := cmp.Diff(want, jsonOf(t, allCalls(t, c))); d != "" {
		t.Fatalf("compacted capture (-want +got):\n%s", d)
	}
	var n int
	lite(c).rdb.QueryRow("SELECT count(*) FROM segments").Scan(&n)
	if n != 0 {
		t.Fatalf("%d segment rows left in the compacted file", n)
	}
	_ = path
}

// TestTimeRangesAcrossWriters: with several writers, ids follow commit
// order, not start order; a time filter still finds exactly the calls
// started in the range.
func TestTimeRangesAcrossWriters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cap.db")
	a, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// a's batches hold calls that started before b's, but commit later.
	var startsA, startsB []time.Time
	for i := 0; i < 10; i++ {
		startsA = append(startsA, t0.Add(time.Duration(2*i)*time.Second))
		startsB = append(startsB, t0.Add(time.Duration(2*i+1)*time.Second))
	}
	write := func(s *Store, starts []time.Time) {
		var ev []Event
		for _, st := range starts {
			k := s.NewKey()
			ev = append(ev, Event{Start: &CallStart{ID: k, Method: "/t.S/M", Time: st}}, Event{End: &CallEnd{CallID: k, Time: st}})
		}
		if err := s.WriteBatch(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	write(b, startsB[5:])
	write(a, startsA)
	write(b, startsB[:5])
	for _, since := range []time.Duration{0, 3 * time.Second, 9500 * time.Millisecond, 18 * time.Second, 30 * time.Second} {
		from := t0.Add(since)
		cs, err := a.ListCalls(ctx, Filter{Since: from})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, st := range append(append([]time.Time{}, startsA...), startsB...) {
			if !st.Before(from) {
				want++
			}
		}
		if len(cs) != want {
			t.Fatalf("since +%v: %d calls, want %d", since, len(cs), want)
		}
		for _, c := range cs {
			if c.Start.Before(from) {
				t.Fatalf("since +%v: call %d started %v", since, c.ID, c.Start)
			}
		}
		page, err := a.CallsPage(ctx, PageQuery{Filter: Filter{Since: from, Limit: 3}})
		if err != nil || len(page.Calls) != min(3, want) {
			t.Fatalf("page since +%v: %v %v", since, page, err)
		}
	}
	// Retention by age finds the early calls wherever their ids are.
	if n, err := a.Prune(ctx, t0.Add(10*time.Second), 0); err != nil || n != 10 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
}

// TestMessagesViewSQLite3: the sqlite3 command-line shell shows every
// message as a row through the messages view.
func TestMessagesViewSQLite3(t *testing.T) {
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sqlite3 is not installed (scripts/setup installs it)")
		}
		t.Skip("sqlite3 is not installed")
	}
	ctx := context.Background()
	s, path := openTemp(t)
	ev := sampleEvents(s.NewKey())
	if err := s.WriteBatch(ctx, ev[:2]); err != nil { // the stream's first batch: a chunk
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, ev[2:]); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, bigEvents(s.NewKey(), 9, t0, 5, 20000)); err != nil { // inline and a segment
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-readonly", path,
		"SELECT call_id, seq, direction, time_ns, size, truncated, hex(raw), segment IS NOT NULL FROM messages ORDER BY call_id, seq").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	var want strings.Builder
	for _, id := range []int64{1, 2} {
		c, err := s.GetCall(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range c.Messages {
			dir, hexRaw, seg := 1, fmt.Sprintf("%X", m.Raw), 0
			if m.Direction == DirResponse {
				dir = 2
			}
			if id == 2 { // its row's bodies reach SegmentThreshold
				hexRaw, seg = "", 1
			}
			trunc := 0
			if m.Truncated {
				trunc = 1
			}
			fmt.Fprintf(&want, "%d|%d|%d|%d|%d|%d|%s|%d\n", id, m.Seq, dir, m.Time.UnixNano(), m.Size, trunc, hexRaw, seg)
		}
	}
	if d := cmp.Diff(want.String(), string(out)); d != "" {
		t.Fatalf("sqlite3 rows (-want +got):\n%s", d)
	}
}

// TestSegmentWriteFails: when the segment folder cannot be written (here
// a file stands where it should be), batches with large bodies fail whole
// and others go on; once it can, large bodies are written again.
func TestSegmentWriteFails(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if err := os.WriteFile(SegmentDir(path), []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, bigEvents(s.NewKey(), 1, t0, 50000)); err == nil {
		t.Fatal("a batch with a large body was written without its segment folder")
	}
	if err := s.WriteBatch(ctx, sampleEvents(s.NewKey())); err != nil {
		t.Fatalf("a batch without large bodies failed: %v", err)
	}
	if err := os.Remove(SegmentDir(path)); err != nil {
		t.Fatal(err)
	}
	ev := bigEvents(s.NewKey(), 3, t0, 50000)
	if err := s.WriteBatch(ctx, ev); err != nil {
		t.Fatal(err)
	}
	c, err := s.GetCall(ctx, ev[0].Start.ID)
	if err != nil || len(c.Messages[0].Raw) != 50000 || c.Messages[0].BodyError != "" {
		t.Fatalf("large body after the folder came back: %v", err)
	}
	if got := allCalls(t, s); len(got) != 2 {
		t.Fatalf("%d calls, want 2 (the failed batch leaves nothing)", len(got))
	}
}

// TestTextSearchInSegments: the inspector's free-text search finds
// bodies wherever they are kept: inline, in a segment, in a chunk in a
// segment.
func TestTextSearchInSegments(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	pad := bytes.Repeat([]byte{'.'}, 2000)
	write := func(ev []Event) {
		t.Helper()
		if err := s.WriteBatch(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	// 1: small, inline. 2: one row in a segment. 3: a stream whose second
	// batch is a chunk in a segment.
	k1, k2, k3 := s.NewKey(), s.NewKey(), s.NewKey()
	write([]Event{
		{Start: &CallStart{ID: k1, Method: "/s.S/A", Time: t0}},
		{Message: &MessageRecord{CallID: k1, Seq: 1, Direction: DirRequest, Time: t0, Size: 12, Raw: []byte("needle-small")}},
		{End: &CallEnd{CallID: k1, Time: t0}},
		{Start: &CallStart{ID: k2, Method: "/s.S/B", Time: t0}},
		{Message: &MessageRecord{CallID: k2, Seq: 1, Direction: DirRequest, Time: t0, Size: 2014, Raw: append(append([]byte{}, pad...), "needle-segment"...)}},
		{End: &CallEnd{CallID: k2, Time: t0}},
		{Start: &CallStart{ID: k3, Method: "/s.S/C", Time: t0}},
	})
	write([]Event{
		{Message: &MessageRecord{CallID: k3, Seq: 1, Direction: DirResponse, Time: t0, Size: 2000, Raw: pad}},
		{Message: &MessageRecord{CallID: k3, Seq: 2, Direction: DirResponse, Time: t0, Size: 12, Raw: []byte("needle-chunk")}},
	})
	for text, want := range map[string]int64{"needle-small": 1, "needle-segment": 2, "needle-chunk": 3} {
		p, err := s.CallsPage(ctx, PageQuery{Text: text})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Calls) != 1 || p.Calls[0].ID != want {
			t.Errorf("search %q: %+v, want call %d", text, p.Calls, want)
		}
	}
	if p, err := s.CallsPage(ctx, PageQuery{Text: "needle"}); err != nil || len(p.Calls) != 3 {
		t.Errorf("search needle: %d calls, %v", len(p.Calls), err)
	}
}

// TestSegmentsOnTmpfs: segments work on tmpfs (/dev/shm), which took no
// O_DIRECT before Linux 6.6 (there they go through the page cache).
func TestSegmentsOnTmpfs(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "grpctap-test-")
	if err != nil {
		t.Skip("no /dev/shm here:", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(dir, "cap.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 3; i++ {
		if err := s.WriteBatch(ctx, bigEvents(s.NewKey(), byte(i), t0, 3000, 70000)); err != nil {
			t.Fatal(err)
		}
	}
	if lite(s).w.seg == nil {
		t.Fatal("no segment was written")
	}
	t.Logf("O_DIRECT on tmpfs here: %v", lite(s).w.seg.direct)
	for id := int64(1); id <= 3; id++ {
		c, err := s.GetCall(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range []int{3000, 70000} {
			if want := bytes.Repeat([]byte{byte(id - 1), byte(i)}, n/2); !bytes.Equal(c.Messages[i].Raw, want) {
				t.Fatalf("call %d message %d differs", id, i+1)
			}
		}
	}
}

// TestDroppedEventsOfDamagedCapture: a capture that lost its counters row
// says it is damaged, not "no rows in result set".
func TestDroppedEventsOfDamagedCapture(t *testing.T) {
	s, _ := openTemp(t)
	if _, err := lite(s).wdb.Exec("DELETE FROM counters WHERE name = 'dropped_events'"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DroppedEvents(context.Background()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DroppedEvents = %v, want ErrCorrupt", err)
	}
}
