package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/msgdiff"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/store"
)

// Fields and trailers of the demo service that change on every call.
var demoVolatile = []string{
	"--ignore-field", "receivedAt", "--ignore-field", "at", "--ignore-field", "sentAt",
	"--ignore-header", "x-echo-handled-at",
}

// recordedIDs names the calls recordDemo makes, by what they are.
type recordedIDs struct {
	echo, echoFail, sum, countdown, chat int64
}

// startDemo starts the demo backend until the test ends.
func startDemo(t *testing.T) *demo.Server {
	t.Helper()
	d, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

// recordDemo records one call of each RPC kind (and a failing Echo) made
// through a proxy in front of backend into a new capture, and returns it.
func recordDemo(t *testing.T, backend string) (string, recordedIDs) {
	t.Helper()
	ctx := context.Background()
	db := recordThrough(t, backend, func(addr string) {
		cl := demoClient(t, addr)
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "x-trace", "t-1", "authorization", "Bearer secret"), 10*time.Second)
		defer cancel()
		driveDemo(t, cctx, cl)
	})
	st, err := store.Open(ctx, db, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	calls, err := st.ListCalls(ctx, store.Filter{})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 5 {
		t.Fatalf("recorded %d calls, want 5", len(calls))
	}
	return db, recordedIDs{echo: calls[0].ID, echoFail: calls[1].ID, sum: calls[2].ID, countdown: calls[3].ID, chat: calls[4].ID}
}

// driveDemo makes the five calls recordDemo records, in order, and checks
// the answers a real client gets.
func driveDemo(t *testing.T, ctx context.Context, cl demopb.DemoServiceClient) {
	t.Helper()
	var hdr, tr metadata.MD
	resp, err := cl.Echo(ctx, &demopb.EchoRequest{
		Message: "hello", Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_CURIOUS},
		Tags: []string{"a", "b"}, Labels: map[string]string{"k": "v"},
	}, grpc.Header(&hdr), grpc.Trailer(&tr))
	if err != nil {
		t.Fatalf("Echo: %v", err)
	}
	if resp.GetMessage() != "hello" || resp.GetAuthor().GetName() != "ann" || resp.GetLabels()["k"] != "v" {
		t.Fatalf("Echo answered %v", resp)
	}
	if got := hdr.Get("x-trace"); len(got) != 1 || got[0] != "t-1" {
		t.Fatalf("Echo response header x-trace = %v", got)
	}
	if len(tr.Get("x-echo-handled-at")) != 1 {
		t.Fatalf("Echo trailers %v lack x-echo-handled-at", tr)
	}

	_, err = cl.Echo(ctx, &demopb.EchoRequest{Message: "nope", Fail: &demopb.FailWith{Code: int32(codes.NotFound), Message: "no such echo"}})
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such echo" || len(st.Details()) != 2 {
		t.Fatalf("failing Echo: %v (details %v)", err, st.Details())
	}

	sum, err := cl.Sum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{1, 2, 3} {
		if err := sum.Send(&demopb.SumRequest{Value: &demopb.SumRequest_Integer{Integer: n}}); err != nil {
			t.Fatal(err)
		}
	}
	total, err := sum.CloseAndRecv()
	if err != nil || total.GetTotal() != 6 || total.GetCount() != 3 {
		t.Fatalf("Sum: %v, %v", total, err)
	}

	cd, err := cl.Countdown(ctx, &demopb.CountdownRequest{Count: 3, Interval: durationpb.New(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	var ticks []int32
	for {
		tk, err := cd.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Countdown: %v", err)
		}
		ticks = append(ticks, tk.GetRemaining())
	}
	if len(ticks) != 3 || ticks[0] != 2 || ticks[2] != 0 {
		t.Fatalf("Countdown ticks %v", ticks)
	}

	chat, err := cl.Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"hi", "bye"} {
		if err := chat.Send(&demopb.ChatMessage{Author: &demopb.Author{Name: "bob"}, Text: text}); err != nil {
			t.Fatal(err)
		}
		m, err := chat.Recv()
		if err != nil || m.GetText() != "bob said: "+text {
			t.Fatalf("Chat: %v, %v", m, err)
		}
	}
	if err := chat.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := chat.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Chat end: %v", err)
	}
}

func startChanged(t *testing.T) string {
	t.Helper()
	srv := grpc.NewServer()
	demopb.RegisterDemoServiceServer(srv, demo.Changed{Service: demo.NewService()})
	reflection.Register(srv)
	return stubserver.Serve(t, srv)
}

var verdictLine = regexp.MustCompile(`(?m)^call (\d+) (\S+) → \S+: (\w+)`)

func TestReplayMatchesEveryRPCKind(t *testing.T) {
	backend := startDemo(t)
	db, _ := recordDemo(t, backend.Addr())
	out := mustRun(t, append([]string{"replay", "--db", db, "--all"}, demoVolatile...)...)
	got := verdictLine.FindAllStringSubmatch(out, -1)
	if len(got) != 5 {
		t.Fatalf("want 5 verdicts, got:\n%s", out)
	}
	for _, m := range got {
		if m[3] != "match" {
			t.Errorf("call %s %s: %s\n%s", m[1], m[2], m[3], out)
		}
	}
	if !strings.Contains(out, "replayed 5 calls: 5 match, 0 mismatch, 0 errors") {
		t.Errorf("summary missing:\n%s", out)
	}
}

func TestReplayDiffsAChangedBackend(t *testing.T) {
	backend := startDemo(t)
	db, ids := recordDemo(t, backend.Addr())
	changed := startChanged(t)

	out, errOut, err := runCmd(t, append([]string{"replay", "--db", db, "--all", "--target", changed, "--json"}, demoVolatile...)...)
	var ec *exitCodeError
	if !errors.As(err, &ec) || ec.code != exitMismatch {
		t.Fatalf("want exit %d, got %v\n%s\n%s", exitMismatch, err, out, errOut)
	}
	var rep struct {
		Results []replay.Result `json:"results"`
		Summary replay.Summary  `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	paths := map[int64][]string{}
	for _, r := range rep.Results {
		if r.ComparedBy != "" && r.ComparedBy != msgdiff.BySchema {
			t.Errorf("call %d compared by %s, want schema", r.CallID, r.ComparedBy)
		}
		for _, d := range r.Diffs {
			paths[r.CallID] = append(paths[r.CallID], d.Where+"|"+d.Path)
		}
		sort.Strings(paths[r.CallID])
	}
	want := map[int64][]string{
		ids.echo:      {`response[0]|author.name`, `response[0]|labels["k"]`, `response[0]|tags[2]`},
		ids.sum:       {`response[0]|total`},
		ids.countdown: {`response[0]|remaining`, `response[1]|remaining`, `response[2]|remaining`},
		ids.chat:      {`response[0]|text`, `response[1]|text`},
	}
	for id, w := range want {
		if strings.Join(paths[id], " ") != strings.Join(w, " ") {
			t.Errorf("call %d diffs %v, want %v", id, paths[id], w)
		}
	}
	if len(paths[ids.echoFail]) != 0 {
		t.Errorf("failing Echo should match (same status, details): %v", paths[ids.echoFail])
	}
	if rep.Summary != (replay.Summary{Calls: 5, Match: 1, Mismatch: 4}) {
		t.Errorf("summary %+v", rep.Summary)
	}
	for _, r := range rep.Results {
		if r.CallID != ids.echo {
			continue
		}
		for _, d := range r.Diffs {
			if d.Path == "author.name" && (d.Recorded != "ann" || d.Got != "ANN") {
				t.Errorf("author.name diff %v → %v", d.Recorded, d.Got)
			}
		}
	}

	// The text form names the path with both values.
	text, _, _ := runCmd(t, append([]string{"replay", "--db", db, "--target", changed, "--no-reflection", "--ignore-field", "4"}, "1")...)
	if !strings.Contains(text, "mismatch") || !strings.Contains(text, "schemaless") {
		t.Errorf("schemaless replay should say so:\n%s", text)
	}
}

func TestReplayTextDiff(t *testing.T) {
	backend := startDemo(t)
	db, ids := recordDemo(t, backend.Addr())
	changed := startChanged(t)
	out, _, err := runCmd(t, append([]string{"replay", "--db", db, "--target", changed, itoa(ids.echo)}, demoVolatile...)...)
	if err == nil {
		t.Fatal("want a mismatch")
	}
	for _, want := range []string{`response[0].author.name: "ann" → "ANN"`, `response[0].labels["k"]: "v" → "changed"`, `response[0].tags[2]: (absent) → "extra"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}

func TestReplayStatusHeadersAndDBOut(t *testing.T) {
	backend := startDemo(t)
	db, ids := recordDemo(t, backend.Addr())
	out := filepath.Join(t.TempDir(), "out.db")
	// The recorded authorization was redacted; --header supplies one.
	mustRun(t, append([]string{"replay", "--db", db, "--db-out", out, "--header", "authorization: Bearer fresh", itoa(ids.echo), itoa(ids.echoFail)}, demoVolatile...)...)
	_, calls := readCapture(t, out)
	if len(calls) != 2 {
		t.Fatalf("--db-out holds %d calls, want 2", len(calls))
	}
	for i, want := range []int64{ids.echo, ids.echoFail} {
		if got := calls[i].RequestHeaders[replay.HeaderReplayOf]; len(got) != 1 || got[0] != itoa(want) {
			t.Errorf("replayed call %d: %s = %v, want %d", calls[i].ID, replay.HeaderReplayOf, got, want)
		}
	}
	if calls[1].Status == nil || calls[1].Status.Name != "NOT_FOUND" || len(calls[1].Status.Details) != 2 {
		t.Errorf("replayed failing call status %+v", calls[1].Status)
	}

	// A changed status is a diff on the status.
	srv := grpc.NewServer()
	demopb.RegisterDemoServiceServer(srv, failingService{})
	addr := stubserver.Serve(t, srv)
	text, _, err := runCmd(t, "replay", "--db", db, "--target", addr, "--no-reflection", itoa(ids.echoFail))
	if err == nil || !strings.Contains(text, `status.code: "NOT_FOUND" → "PERMISSION_DENIED"`) || !strings.Contains(text, "status.details[0]: ") {
		t.Errorf("status diff missing (%v):\n%s", err, text)
	}
}

type failingService struct {
	demopb.UnimplementedDemoServiceServer
}

func (failingService) Echo(context.Context, *demopb.EchoRequest) (*demopb.EchoResponse, error) {
	return nil, status.Error(codes.PermissionDenied, "no such echo")
}

func TestReplayErrors(t *testing.T) {
	backend := startDemo(t)
	db, _ := recordDemo(t, backend.Addr())
	_, _, err := runCmd(t, "replay", "--db", db, "999")
	if exitCode(err, io.Discard) != exitError {
		t.Errorf("unknown id: %v", err)
	}
	_, _, err = runCmd(t, "replay", "--db", db, "--rate", "5")
	if err == nil {
		t.Error("--rate without --duration should fail")
	}
	_, _, err = runCmd(t, "replay", "--db", db, "--method", "*Echo", "3")
	if err == nil {
		t.Error("ids with --method should fail")
	}
	// The library names values; the command names its flags.
	for _, tc := range []struct{ args, want []string }{
		{[]string{"--duration", "-1s", "--all"}, []string{"--duration -1s", "positive"}},
		{[]string{"--duration", "1s", "--rate", "-2", "--all"}, []string{"--rate -2", "negative"}},
		{[]string{"--import-path", "protos", "--all"}, []string{"import paths protos", ".proto"}},
	} {
		_, _, err := runCmd(t, append([]string{"replay", "--db", db}, tc.args...)...)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("replay %v: %v, want an error saying %q", tc.args, err, w)
			}
		}
	}
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := st.Import(context.Background(), []store.CallWithMessages{{Call: store.Call{Method: "/t.S/M", Start: time.Now()}}})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	text, _, err := runCmd(t, "replay", "--db", db, itoa(ids[0]))
	if err == nil || !strings.Contains(text, "no recorded backend") || !strings.Contains(text, "give --target") {
		t.Errorf("a call without a backend: %v\n%s", err, text)
	}
	// Selection by status and age.
	out := mustRun(t, append([]string{"replay", "--db", db, "--status", "not_found", "--since", "1h"}, demoVolatile...)...)
	if got := verdictLine.FindAllStringSubmatch(out, -1); len(got) != 1 || got[0][3] != "match" {
		t.Errorf("--status NOT_FOUND --since 1h:\n%s", out)
	}
}

func TestReplayLoad(t *testing.T) {
	backend := startDemo(t)
	db, _ := recordDemo(t, backend.Addr())
	begin := time.Now()
	out := mustRun(t, "replay", "--db", db, "--method", "*Echo", "--rate", "200", "--duration", "1s", "--concurrency", "4", "--json")
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("load run took %v, want about 1s", took)
	}
	var rep replay.LoadReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("load: %s", out)
	if rep.Calls < 50 || rep.Calls > 220 {
		t.Errorf("%d calls in 1s at 200/s", rep.Calls)
	}
	if rep.ByStatus["OK"] == 0 || rep.ByStatus["NOT_FOUND"] == 0 || rep.ByStatus["OK"]+rep.ByStatus["NOT_FOUND"] != rep.Calls {
		t.Errorf("statuses %v", rep.ByStatus)
	}
	if rep.P50MS <= 0 || rep.P99MS < rep.P50MS || rep.MaxMS < rep.P99MS {
		t.Errorf("percentiles %+v", rep)
	}
	text := mustRun(t, "replay", "--db", db, "--method", "*Sum", "--duration", "300ms", "--concurrency", "2")
	if !strings.Contains(text, "calls/s") || !strings.Contains(text, "p99") || !strings.Contains(text, "status: OK") {
		t.Errorf("text load report:\n%s", text)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestReplayDeadlines(t *testing.T) {
	backend := startDemo(t)
	db, ids := recordDemo(t, backend.Addr())
	st, err := store.Open(context.Background(), db, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	d, ok, err := st.RecordedTimeout(context.Background(), ids.echo)
	st.Close()
	// recordDemo's client gave every call 10s.
	if err != nil || !ok || d < 9*time.Second || d > 10*time.Second {
		t.Fatalf("recorded timeout %v, %v, %v", d, ok, err)
	}
	// --timeout overrides it: a Countdown of 3 ticks cannot finish in 1ms.
	out, _, err := runCmd(t, "replay", "--db", db, "--timeout", "1ms", itoa(ids.countdown))
	if err == nil || !strings.Contains(out, `status.code: "OK" → "DEADLINE_EXCEEDED"`) {
		t.Errorf("--timeout 1ms (%v):\n%s", err, out)
	}
}
