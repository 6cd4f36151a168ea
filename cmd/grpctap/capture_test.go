package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/store"
)

var capT0 = time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC)

// sampleCapture writes three calls: 1 OK unary, 2 NOT_FOUND with details,
// 3 open bidi stream; and 4 dropped events.
func sampleCapture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cap.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	msg := func(id int64, seq int, dir string, raw string) store.Event {
		return store.Event{Message: &store.MessageRecord{CallID: id, Seq: seq, Direction: dir, Time: capT0.Add(time.Duration(seq) * time.Millisecond),
			Size: int64(len(raw)), Raw: []byte(raw)}}
	}
	ev := []store.Event{
		{Start: &store.CallStart{ID: 1, Method: "/shop.v1.Cart/Get", Protocol: "grpc", Backend: "127.0.0.1:9000", Authority: "cart",
			Peer: "127.0.0.1:40000", Time: capT0, Header: store.Metadata{"x-user": {"ann"}}}},
		msg(1, 1, store.DirRequest, "req"),
		{Header: &store.ResponseHeader{CallID: 1, Time: capT0, Header: store.Metadata{"x-served-by": {"a"}}}},
		msg(1, 2, store.DirResponse, "response"),
		{End: &store.CallEnd{CallID: 1, Time: capT0.Add(12 * time.Millisecond), Trailers: store.Metadata{"x-t": {"1"}}}},
		{Start: &store.CallStart{ID: 2, Method: "/shop.v1.Cart/Remove", Protocol: "grpc-web", Time: capT0.Add(time.Second)}},
		msg(2, 1, store.DirRequest, "item"),
		{End: &store.CallEnd{CallID: 2, Time: capT0.Add(time.Second + 3*time.Millisecond), Code: 5, Message: "no such item",
			Details: [][]byte{{1, 2, 3}}, Dropped: 1}},
		{Start: &store.CallStart{ID: 3, Method: "/chat.v1.Chat/Talk", Protocol: "grpc", Time: capT0.Add(2 * time.Second)}},
		msg(3, 1, store.DirRequest, "hi"),
		msg(3, 2, store.DirRequest, "there"),
		msg(3, 3, store.DirResponse, "hello"),
		{Dropped: 4},
	}
	if err := st.WriteBatch(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCmd runs a grpctap command line and returns its stdout and stderr.
func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCmd(t, args...)
	if err != nil {
		t.Fatalf("grpctap %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func TestCallsTable(t *testing.T) {
	db := sampleCapture(t)
	out := mustRun(t, "calls", "--db", db)
	for _, want := range []string{"ID", "DURATION", "/shop.v1.Cart/Get", "OK", "12.0ms", "NOT_FOUND (incomplete)",
		"/chat.v1.Chat/Talk", "open", "4 events were dropped"} {
		if !strings.Contains(out, want) {
			t.Errorf("calls output lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	// The protocol each call came in with has a column, as in the inspector.
	for i, want := range []string{"PROTOCOL", "grpc", "grpc-web", "grpc"} {
		if f := strings.Fields(lines[i]); len(f) < 6 || !slices.Contains(f, want) {
			t.Errorf("line %d lacks protocol %q: %s", i+1, want, lines[i])
		}
	}
}

func callIDs(t *testing.T, ndjson string) []int64 {
	t.Helper()
	var ids []int64
	sc := bufio.NewScanner(strings.NewReader(ndjson))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var c store.Call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		ids = append(ids, c.ID)
	}
	return ids
}

func TestCallsFilters(t *testing.T) {
	db := sampleCapture(t)
	for _, tc := range []struct {
		args []string
		want []int64
	}{
		{nil, []int64{1, 2, 3}},
		{[]string{"--status", "not_found"}, []int64{2}},
		{[]string{"--status", "NotFound"}, []int64{2}},
		{[]string{"--status", "5"}, []int64{2}},
		{[]string{"--status", "OK"}, []int64{1}},
		{[]string{"--method", "/shop.v1.Cart/*"}, []int64{1, 2}},
		{[]string{"--method", "*Talk"}, []int64{3}},
		{[]string{"--limit", "2"}, []int64{2, 3}},
		{[]string{"--since", "1h"}, nil},
		// The inspector's protocol and free-text filters.
		{[]string{"--protocol", "grpc-web"}, []int64{2}},
		{[]string{"--protocol", "grpc"}, []int64{1, 3}},
		{[]string{"--protocol", "grpc", "--limit", "1"}, []int64{3}},
		{[]string{"--text", "ANN"}, []int64{1}},                       // a request header value, any case
		{[]string{"--text", "no such"}, []int64{2}},                   // the status message
		{[]string{"--text", "there"}, []int64{3}},                     // a message body
		{[]string{"--text", "shop.v1", "--status", "ok"}, []int64{1}}, // with the other filters
		{[]string{"--text", "nowhere"}, nil},
	} {
		out := mustRun(t, append([]string{"calls", "--db", db, "--json"}, tc.args...)...)
		if d := cmp.Diff(tc.want, callIDs(t, out)); d != "" {
			t.Errorf("calls %v: %s", tc.args, d)
		}
		out = mustRun(t, append([]string{"export", "--db", db}, tc.args...)...)
		if !slices.Contains(tc.args, "--limit") {
			if d := cmp.Diff(tc.want, callIDs(t, out)); d != "" {
				t.Errorf("export %v: %s", tc.args, d)
			}
		}
	}
	if _, _, err := runCmd(t, "calls", "--db", db, "--protocol", "http"); err == nil || !strings.Contains(err.Error(), `--protocol "http": want one of grpc, grpc-web, grpc-web-text`) {
		t.Errorf("bad --protocol: %v", err)
	}
	if _, _, err := runCmd(t, "calls", "--db", db, "--status", "sideways"); err == nil || !strings.Contains(err.Error(), "sideways") {
		t.Errorf("bad --status: %v", err)
	}
}

// The JSON of a call is a documented, stable schema: these keys at least.
func TestCallsJSONSchema(t *testing.T) {
	db := sampleCapture(t)
	out, errOut, err := runCmd(t, "calls", "--db", db, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "4 events were dropped") {
		t.Errorf("stderr: %q", errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var objs []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, m)
	}
	want := []string{"authority", "backend", "compression", "content_type", "dropped_events", "duration_ms", "end", "id", "method", "peer",
		"protocol", "request_bytes", "request_count", "request_headers", "response_bytes", "response_count",
		"response_headers", "rpc", "service", "start", "state", "status", "trailers"}
	if missing := missingKeys(want, objs[0]); len(missing) > 0 {
		t.Errorf("call JSON lacks %v; has %v", missing, keys(objs[0]))
	}
	// Call 1.
	c := objs[0]
	if c["start"] != "2026-03-04T05:06:07.890123456Z" || c["duration_ms"] != 12.0 || c["state"] != "closed" ||
		c["rpc"] != "unary" || c["service"] != "shop.v1.Cart" {
		t.Errorf("call 1: %v", c)
	}
	st := c["status"].(map[string]any)
	if d := cmp.Diff(map[string]any{"code": 0.0, "name": "OK", "message": "", "details": []any{}}, st); d != "" {
		t.Error(d)
	}
	if d := cmp.Diff(map[string]any{"x-served-by": []any{"a"}}, c["response_headers"]); d != "" {
		t.Error(d)
	}
	// Call 2: details in base64.
	st = objs[1]["status"].(map[string]any)
	if st["name"] != "NOT_FOUND" || st["code"] != 5.0 || cmp.Diff([]any{"AQID"}, st["details"]) != "" {
		t.Errorf("call 2 status %v", st)
	}
	// Call 3 is open.
	c = objs[2]
	if c["state"] != "open" || c["end"] != nil || c["duration_ms"] != nil || c["status"] != nil || c["rpc"] != "client_streaming" {
		t.Errorf("call 3: %v", c)
	}
}

// missingKeys returns the keys of want that m lacks. The schema is stable:
// fields may be added (the decoder adds some), none removed.
func missingKeys(want []string, m map[string]any) []string {
	var out []string
	for _, k := range want {
		if _, ok := m[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestShow(t *testing.T) {
	db := sampleCapture(t)
	out := mustRun(t, "show", "1", "--db", db)
	for _, want := range []string{"call 1  /shop.v1.Cart/Get  (unary, grpc)", "status     OK (0)", "x-user: ann",
		"x-served-by: a", "x-t: 1", "#1 → request", "#2 ← response", "72 65 71", "|req|"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "show", "3", "--db", db)
	if !strings.Contains(out, "open (still running)") {
		t.Errorf("open call:\n%s", out)
	}

	out = mustRun(t, "show", "2", "--db", db, "--json")
	var c map[string]any
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	msgs := c["messages"].([]any)
	if len(msgs) != 1 {
		t.Fatalf("messages %v", msgs)
	}
	m := msgs[0].(map[string]any)
	wantKeys := []string{"decode_error", "direction", "json", "raw", "seq", "size", "time", "truncated"}
	if missing := missingKeys(wantKeys, m); len(missing) > 0 {
		t.Errorf("message JSON lacks %v; has %v", missing, keys(m))
	}
	if m["raw"] != "aXRlbQ==" || m["json"] != nil || m["direction"] != "request" || m["size"] != 4.0 || m["truncated"] != false {
		t.Errorf("message %v", m)
	}

	if _, _, err := runCmd(t, "show", "99", "--db", db); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("show 99: %v", err)
	}
	if _, _, err := runCmd(t, "show", "x", "--db", db); err == nil {
		t.Error("show x succeeded")
	}
}

func TestExport(t *testing.T) {
	db := sampleCapture(t)
	file := filepath.Join(t.TempDir(), "out.ndjson")
	mustRun(t, "export", "--db", db, "--out", file, "--method", "/shop.*")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var got []store.CallWithMessages
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c store.CallWithMessages
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	if len(got) != 2 || got[0].ID != 1 || got[1].ID != 2 {
		t.Fatalf("exported %d calls", len(got))
	}
	if len(got[0].Messages) != 2 || string(got[0].Messages[1].Raw) != "response" || got[0].Messages[1].Direction != "response" {
		t.Errorf("messages %+v", got[0].Messages)
	}
	// To stdout, everything.
	if ids := callIDs(t, mustRun(t, "export", "--db", db)); len(ids) != 3 {
		t.Errorf("export ids %v", ids)
	}
}

func TestCallsRefusesForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.db")
	content := []byte(strings.Repeat("not a database at all\n", 50))
	os.WriteFile(path, content, 0o644)
	for _, args := range [][]string{{"calls"}, {"show", "1"}, {"export"}, {"import", "../../testdata/grpcdump/dump.json"}} {
		_, _, err := runCmd(t, append(args, "--db", path)...)
		if !errors.Is(err, store.ErrNotCapture) || !strings.Contains(err.Error(), "not a grpctap capture") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, content) {
		t.Fatal("file modified")
	}
	if _, _, err := runCmd(t, "calls", "--db", filepath.Join(t.TempDir(), "missing.db")); !errors.Is(err, store.ErrNoCapture) {
		t.Errorf("missing file: %v", err)
	}
}

func TestImportGRPCDump(t *testing.T) {
	db := filepath.Join(t.TempDir(), "cap.db")
	out := mustRun(t, "import", "../../testdata/grpcdump/dump.json", "--db", db)
	if !strings.Contains(out, "imported 4 calls (ids 1–4)") {
		t.Errorf("import said %q", out)
	}
	out = mustRun(t, "import", "../../testdata/grpcdump/events.json", "--db", db)
	if !strings.Contains(out, "imported 2 calls (ids 5–6)") {
		t.Errorf("import said %q", out)
	}
	st, err := store.Open(context.Background(), db, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	type summary struct {
		Method, RPC, Status, Msg, Authority string
		Req, Resp                           int64
		Dirs                                string
		First                               string
		DurMS                               float64
	}
	var got []summary
	for id := int64(1); id <= 6; id++ {
		c, err := st.GetCall(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		s := summary{Method: c.Method, RPC: c.RPC, Status: c.Status.Name, Msg: c.Status.Message, Authority: c.Authority,
			Req: c.RequestCount, Resp: c.ResponseCount, DurMS: *c.DurationMS}
		for _, m := range c.Messages {
			s.Dirs += m.Direction[:3] + " "
		}
		if len(c.Messages) > 0 {
			s.First = string(c.Messages[0].Raw)
		}
		got = append(got, s)
	}
	want := []summary{
		{"/grpc.gateway.testing.EchoService/Echo", "unary", "OK", "", "localhost:12345", 1, 1, "req res ", "\n\x03foo", 2.499999},
		{"/grpc.gateway.testing.EchoService/ServerStreamingEcho", "server_streaming", "OK", "", "localhost:12345", 1, 3, "req res res res ", "\n\x03bar\x10\x03", 300},
		{"/grpc.gateway.testing.EchoService/EchoAbort", "unary", "ABORTED", "aborted by request", "localhost:12345", 1, 0, "req ", "\n\x05abort", 0},
		{"/grpc.gateway.testing.EchoService/Lookup", "unary", "NOT_FOUND", "no such thing", "", 1, 0, "req ", "\n\x01x", 0},
		{"/chat.Chat/Talk", "client_streaming", "UNAVAILABLE", "server went away", "chat:443", 2, 1, "req res req ", "\n\x02hi", 900},
		{"/chat.Chat/Ping", "unary", "OK", "", "", 1, 1, "req res ", "", 500},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("imported calls (-want +got):\n%s", d)
	}
	c, _ := st.GetCall(context.Background(), 1)
	if d := cmp.Diff([]string{"AAEC"}, c.RequestHeaders["x-trace-bin"]); d != "" {
		t.Errorf("-bin header: %s", d)
	}
	if !c.Start.Equal(time.Date(2024, 3, 1, 10, 0, 0, 1, time.UTC)) {
		t.Errorf("start %v", c.Start)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"hello": "world"}`), 0o644)
	if _, _, err := runCmd(t, "import", bad, "--db", db); err == nil || !strings.Contains(err.Error(), "not a grpc-dump call") {
		t.Errorf("bad dump: %v", err)
	}
}

func TestRecordFlags(t *testing.T) {
	ctx := context.Background()
	parse := func(args ...string) *recordFlags {
		var f recordFlags
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return &f
	}
	f := parse()
	if f.db != "./grpctap.db" || f.keep.maxMessage != 4<<20 || len(f.keep.redact) != 5 || f.noRecord {
		t.Errorf("defaults %+v", f)
	}
	db := filepath.Join(t.TempDir(), "cap.db")
	f = parse("--db", db, "--record-max-message", "1KiB", "--redact-header", "x-secret", "--retain", "1h", "--max-db-size", "10MiB")
	if f.keep.maxMessage != 1024 || cmp.Diff([]string{"x-secret"}, f.keep.redact) != "" || f.retain != time.Hour || f.maxDBSize != 10<<20 {
		t.Errorf("parsed %+v", f)
	}
	open := func(f *recordFlags) (*recording, error) {
		cfg, err := f.config(quietLog())
		if err != nil {
			return nil, err
		}
		return openRecording(ctx, cfg, quietLog())
	}
	rec, err := open(f)
	if err != nil || rec.recorder == nil || rec.store == nil {
		t.Fatalf("open: %+v %v", rec, err)
	}
	if err := rec.close(ctx); err != nil {
		t.Fatal(err)
	}

	f = parse("--no-record", "--db", db)
	rec, err = open(f)
	if err != nil || rec.recorder != nil || rec.store != nil {
		t.Fatalf("--no-record: %+v %v", rec, err)
	}
	rec.close(ctx)

	foreign := filepath.Join(t.TempDir(), "x.db")
	os.WriteFile(foreign, []byte(strings.Repeat("x", 200)), 0o644)
	f = parse("--db", foreign)
	if _, err := open(f); !errors.Is(err, store.ErrNotCapture) {
		t.Fatalf("foreign file: %v", err)
	}
}

// TestExportImportRoundTrip: what 'export' writes, 'import' reads back
// whole: exporting the imported capture gives the same lines, large
// bodies (kept in the segment folder) and statuses with details included.
func TestExportImportRoundTrip(t *testing.T) {
	src := sampleCapture(t)
	st, err := store.Open(context.Background(), src, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789"), 5000)
	if err := st.WriteBatch(context.Background(), []store.Event{
		{Start: &store.CallStart{ID: 4, Method: "/shop.v1.Cart/Upload", Protocol: "grpc", Time: capT0.Add(3 * time.Second)}},
		{Message: &store.MessageRecord{CallID: 4, Seq: 1, Direction: store.DirRequest, Time: capT0.Add(3 * time.Second), Size: 90000, Truncated: true, Raw: big}},
		{End: &store.CallEnd{CallID: 4, Time: capT0.Add(4 * time.Second), Code: 3, Message: "too big"}},
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	exported := filepath.Join(t.TempDir(), "calls.ndjson")
	mustRun(t, "export", "--db", src, "--out", exported)
	dst := filepath.Join(t.TempDir(), "copy.db")
	out := mustRun(t, "import", exported, "--db", dst)
	if !strings.HasPrefix(out, "imported 4 calls (ids 1–4)") {
		t.Fatalf("import said %q", out)
	}
	want, err := os.ReadFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), mustRun(t, "export", "--db", dst)); d != "" {
		t.Fatalf("export of the imported capture (-first export +second):\n%s", d)
	}
	// A list without messages is not a capture to import; a line with an
	// impossible status is refused with its place.
	calls := mustRun(t, "calls", "--db", src, "--json")
	if _, errOut, err := runCmd(t, "import", writeTemp(t, calls), "--db", dst); err == nil || !strings.Contains(err.Error()+errOut, "without its messages") {
		t.Fatalf("import of 'calls --json': %v %s", err, errOut)
	}
	bad := strings.Replace(strings.SplitN(string(want), "\n", 2)[0], `"code":0`, `"code":999999`, 1)
	if _, _, err := runCmd(t, "import", writeTemp(t, bad), "--db", dst); err == nil || !strings.Contains(err.Error(), "object 1") || !strings.Contains(err.Error(), "999999") {
		t.Fatalf("import of an impossible status: %v", err)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.ndjson")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCompactCommand: 'compact' writes a file that holds the bodies of the
// segment folder itself and shows the same calls; it refuses to overwrite.
func TestCompactCommand(t *testing.T) {
	src := sampleCapture(t)
	st, err := store.Open(context.Background(), src, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("segment body "), 1000)
	if err := st.WriteBatch(context.Background(), []store.Event{
		{Start: &store.CallStart{ID: 9, Method: "/shop.v1.Cart/Upload", Time: capT0}},
		{Message: &store.MessageRecord{CallID: 9, Seq: 1, Direction: store.DirRequest, Time: capT0, Size: int64(len(big)), Raw: big}},
		{End: &store.CallEnd{CallID: 9, Time: capT0}},
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := os.Stat(store.SegmentDir(src)); err != nil {
		t.Fatalf("no segment folder beside the capture: %v", err)
	}
	out := filepath.Join(t.TempDir(), "share.db")
	_, errOut, err := runCmd(t, "compact", src, "--into", out)
	if err != nil || !strings.Contains(errOut, "wrote "+out) {
		t.Fatalf("compact: %v %s", err, errOut)
	}
	if _, err := os.Stat(store.SegmentDir(out)); !os.IsNotExist(err) {
		t.Fatalf("the compacted capture has a segment folder: %v", err)
	}
	if d := cmp.Diff(mustRun(t, "export", "--db", src), mustRun(t, "export", "--db", out)); d != "" {
		t.Fatalf("compacted capture differs (-capture +compacted):\n%s", d)
	}
	if _, _, err := runCmd(t, "compact", "--db", src, "--into", out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("compact over an existing file: %v", err)
	}
	if _, _, err := runCmd(t, "compact", src); err == nil || !strings.Contains(err.Error(), "--into") {
		t.Fatalf("compact without --into: %v", err)
	}
}

// TestImportKeepsCallsAsTheProxyDoes: imported calls go through the same
// redaction and body limit as recorded ones, and impossible times and
// status codes are refused with the object they are in.
func TestImportKeepsCallsAsTheProxyDoes(t *testing.T) {
	big := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'b'}, 3000))
	dump := `{"service":"a.B","method":"Get","metadata":{"Authorization":["Bearer sekrit-token-1"],"Cookie":["session=sekrit-cookie-2"],"x-ok":["visible"]},` +
		`"messages":[{"message_origin":"client","raw_message":"` + big + `","timestamp":"2026-11-20T09:30:00Z"}]}` + "\n"
	db := filepath.Join(t.TempDir(), "imp.db")
	mustRun(t, "import", writeTemp(t, dump), "--db", db, "--record-max-message", "1KiB")
	out := mustRun(t, "show", "1", "--db", db, "--json")
	var c store.CallWithMessages
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	if got := c.RequestHeaders["authorization"]; len(got) != 1 || got[0] != headers.Redacted {
		t.Errorf("authorization stored as %q", got)
	}
	if got := c.RequestHeaders["x-ok"]; len(got) != 1 || got[0] != "visible" {
		t.Errorf("x-ok stored as %q", got)
	}
	if m := c.Messages[0]; len(m.Raw) != 1024 || !m.Truncated || m.Size != 3000 {
		t.Errorf("message kept %d bytes, truncated %v, size %d; want 1024 of 3000", len(m.Raw), m.Truncated, m.Size)
	}
	// The secrets are nowhere in the capture's files.
	files, _ := filepath.Glob(db + "*")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("sekrit")) {
			t.Errorf("%s holds a secret from the dump", f)
		}
	}
	// --no-redact keeps them, as for the proxy.
	db2 := filepath.Join(t.TempDir(), "imp2.db")
	mustRun(t, "import", writeTemp(t, dump), "--db", db2, "--no-redact")
	if out := mustRun(t, "show", "1", "--db", db2, "--json"); !strings.Contains(out, "sekrit-token-1") {
		t.Error("--no-redact lost the header value")
	}

	for name, bad := range map[string]string{
		"time":        `{"service":"a.B","method":"Get","messages":[{"message_origin":"client","raw_message":"AQ==","timestamp":"0001-01-01T00:00:01Z"}]}`,
		"code":        `{"service":"a.B","method":"Get","error":{"code":999999,"message":"x"}}`,
		"negative":    `{"service":"a.B","method":"Get","error":{"code":-5,"message":"x"}}`,
		"export time": `{"id":1,"method":"/a.B/C","state":"open","start":"1754-08-30T22:43:41Z","request_headers":{},"messages":[]}`,
	} {
		in := `{"service":"a.B","method":"Ok"}` + "\n" + bad + "\n"
		if strings.HasPrefix(bad, `{"id"`) {
			in = bad + "\n"
		}
		_, _, err := runCmd(t, "import", writeTemp(t, in), "--db", filepath.Join(t.TempDir(), "bad.db"))
		if err == nil || !strings.Contains(err.Error(), "object") {
			t.Errorf("%s: import of an impossible call: %v", name, err)
		}
	}
}

// TestShowJSONStaysLinear: a message of one packed field (a number per
// byte, shown without a schema) prints as JSON of about its raw base64 plus
// a bounded view, for 1 MiB as for 4 MiB, not as a list of every number;
// --full prints the list whole.
func TestShowJSONStaysLinear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{1 << 20, 4 << 20, 64 << 10}
	var ev []store.Event
	for i, size := range sizes {
		id := int64(i + 1)
		msg := protowire.AppendTag(nil, 1, protowire.BytesType)
		msg = protowire.AppendVarint(msg, uint64(size-len(msg)-4))
		for len(msg) < size {
			msg = append(msg, byte(1+len(msg)%127))
		}
		ev = append(ev,
			store.Event{Start: &store.CallStart{ID: id, Method: "/test.Blob/Put", Protocol: "grpc", Time: capT0}},
			store.Event{Message: &store.MessageRecord{CallID: id, Seq: 1, Direction: store.DirRequest, Time: capT0, Size: int64(size), Raw: msg}},
			store.Event{End: &store.CallEnd{CallID: id, Time: capT0.Add(time.Millisecond)}})
	}
	if err := st.WriteBatch(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	st.Close()

	var outs []int
	for i, size := range sizes[:2] {
		out := mustRun(t, "show", fmt.Sprint(i+1), "--db", path, "--json")
		t.Logf("show --json of a %d-byte message: %d bytes", size, len(out))
		if len(out) > 2*size+64<<10 {
			t.Errorf("show --json of a %d-byte message printed %d bytes, more than twice its size", size, len(out))
		}
		var c struct {
			Messages []struct {
				DecodeError string `json:"decode_error"`
			} `json:"messages"`
		}
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatal(err)
		}
		if len(c.Messages) != 1 || !strings.Contains(c.Messages[0].DecodeError, "shown shortened") {
			t.Errorf("no note of what is left out: %+v", c.Messages)
		}
		outs = append(outs, len(out))
	}
	if outs[1] > 9*outs[0]/2 {
		t.Errorf("4 MiB printed %d bytes, 1 MiB %d: not linear", outs[1], outs[0])
	}

	out := mustRun(t, "show", "3", "--db", path, "--json", "--full")
	var c struct {
		Messages []struct {
			Schemaless struct {
				Fields []struct {
					PackedVarints []string `json:"packed_varints"`
				} `json:"fields"`
			} `json:"schemaless"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Messages[0].Schemaless.Fields[0].PackedVarints); n != sizes[2]-5 {
		t.Errorf("--full shows %d packed varints, want %d", n, sizes[2]-5)
	}
}

// TestStatsCommand: 'stats' prints a line per method with its calls,
// errors and latencies; --json the same numbers and a series.
func TestStatsCommand(t *testing.T) {
	db := sampleCapture(t)
	out := mustRun(t, "stats", "--db", db)
	for _, want := range []string{"3 calls", "1 errors", "1 open", "METHOD", "/shop.v1.Cart/Get", "12.0ms", "/shop.v1.Cart/Remove", "100.0", "/chat.v1.Chat/Talk"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats output lacks %q:\n%s", want, out)
		}
	}
	var st store.Stats
	if err := json.Unmarshal([]byte(mustRun(t, "stats", "--db", db, "--json", "--buckets", "4", "--method", "/shop.v1.*")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Calls != 2 || st.Errors != 1 || len(st.Methods) != 2 || len(st.Series) != 4 {
		t.Fatalf("stats --json: %+v", st)
	}
	if _, _, err := runCmd(t, "stats", "--db", db, "--method", "["); err == nil || !strings.Contains(err.Error(), "glob") {
		t.Errorf("stats with an invalid glob: %v", err)
	}
}

// TestCallsSaysWhatWasSkipped: calls left out on purpose (a reset flood
// over the client's rate) are counted in the capture and 'calls' says so.
func TestCallsSaysWhatWasSkipped(t *testing.T) {
	db := sampleCapture(t)
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WriteBatch(context.Background(), []store.Event{{SkippedCalls: 7}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if out := mustRun(t, "calls", "--db", db); !strings.Contains(out, "7 calls were not recorded") {
		t.Errorf("calls does not say what was skipped:\n%s", out)
	}
	if _, errOut, err := runCmd(t, "calls", "--db", db, "--json"); err != nil || !strings.Contains(errOut, "7 calls were not recorded") {
		t.Errorf("calls --json: %v %s", err, errOut)
	}
}
