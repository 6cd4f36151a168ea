package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/internal/syncbuf"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// rec is a store and a recorder on a fresh capture file.
type rec struct {
	path string
	st   *store.Store
	r    *Recorder
}

func newRec(t *testing.T, opts Options) *rec {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cap.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	r, err := New(context.Background(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	x := &rec{path: path, st: st, r: r}
	t.Cleanup(func() { x.close(t) })
	return x
}

// close flushes and closes; safe to call twice.
func (x *rec) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := x.r.Close(ctx); err != nil {
		t.Error(err)
	}
	if err := x.st.Close(); err != nil {
		t.Error(err)
	}
}

// flush waits until everything queued so far is written.
func (x *rec) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := x.r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitCall polls the store until call id satisfies ok.
func (x *rec) waitCall(t *testing.T, id int64, ok func(*store.CallWithMessages) bool) *store.CallWithMessages {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := x.st.GetCall(context.Background(), id)
		if err == nil && ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("call %d: %+v, %v", id, c, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closed(c *store.CallWithMessages) bool { return c.State == "closed" }

func TestObserverDirect(t *testing.T) {
	x := newRec(t, Options{MaxMessage: 4})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	co := x.r.StartCall(&proxy.CallStart{Method: "/a.B/C", Backend: "b:1", Authority: "a", Peer: "p:2", Protocol: proxy.ProtocolGRPCWeb,
		Header: metadata.Pairs("Authorization", "Bearer hunter2", "x-key-bin", "\x00\x01", "x-plain", "v", "x-note", "[redacted]"), Time: t0})
	co.ResponseHeader(&proxy.Header{MD: metadata.Pairs("set-cookie", "s=1", "h", "v"), Time: t0})
	co.Message(proxy.NewMessage(1, proxy.Request, t0, []byte("hello")))
	co.Message(proxy.NewMessage(2, proxy.Response, t0, []byte("abc")))
	st, _ := status.New(codes.NotFound, "gone").WithDetails(durationpb.New(time.Second))
	co.EndCall(&proxy.CallEnd{Status: st, Trailer: metadata.MD{"t": {"1"}, "X-Upper": {"u"}}, Time: t0.Add(time.Second), Duration: time.Second})

	c := x.waitCall(t, 1, closed)
	if d := cmp.Diff(store.Metadata{"t": {"1"}, "x-upper": {"u"}}, c.Trailers); d != "" {
		t.Error(d)
	}
	anyB, _ := proto.Marshal(st.Proto().Details[0])
	if d := cmp.Diff(store.Metadata{"authorization": {"[redacted]"}, "x-key-bin": {"AAE"}, "x-plain": {"v"}, "x-note": {"[redacted]"}}, c.RequestHeaders); d != "" {
		t.Error(d)
	}
	// The client's own "[redacted]" is a value, not a mark.
	if d := cmp.Diff([]string{"authorization", "set-cookie"}, c.Redacted); d != "" {
		t.Errorf("redacted (-want +got):\n%s", d)
	}
	if d := cmp.Diff(store.Metadata{"set-cookie": {"[redacted]"}, "h": {"v"}}, c.ResponseHeaders); d != "" {
		t.Error(d)
	}
	if d := cmp.Diff(&store.Status{Code: 5, Name: "NOT_FOUND", Message: "gone", Details: [][]byte{anyB}}, c.Status); d != "" {
		t.Error(d)
	}
	if c.Protocol != "grpc-web" || c.RPC != "unary" || c.RequestBytes != 5 || c.ResponseBytes != 3 || *c.DurationMS != 1000 {
		t.Errorf("call: %+v", c.Call)
	}
	m := c.Messages
	if len(m) != 2 || !m[0].Truncated || m[0].Size != 5 || string(m[0].Raw) != "hell" || m[1].Truncated || string(m[1].Raw) != "abc" {
		t.Errorf("messages: %+v", m)
	}
}

func TestNoRedact(t *testing.T) {
	x := newRec(t, Options{Redact: []string{}})
	co := x.r.StartCall(&proxy.CallStart{Method: "/a/b", Header: metadata.Pairs("authorization", "tok"), Time: time.Now()})
	co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
	c := x.waitCall(t, 1, closed)
	if got := c.RequestHeaders["authorization"]; len(got) != 1 || got[0] != "tok" {
		t.Fatalf("authorization = %v", got)
	}
}

func TestQueueFullDropsAndCounts(t *testing.T) {
	x := newRec(t, Options{QueueBytes: 4 << 10})
	body := bytes.Repeat([]byte{1}, 1000)
	var cos []proxy.CallObserver
	start := time.Now()
	for i := 0; i < 20; i++ {
		co := x.r.StartCall(&proxy.CallStart{Method: "/a/b", Time: time.Now()})
		for s := 1; s <= 50; s++ {
			co.Message(proxy.NewMessage(s, proxy.Request, time.Now(), body))
		}
		cos = append(cos, co)
	}
	for _, co := range cos {
		co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("observer calls took %v: they must not block", el)
	}
	x.close(t)
	stats := x.r.Stats()
	if stats.Dropped == 0 {
		t.Fatal("nothing dropped with a 4 KiB queue")
	}
	st, err := store.Open(context.Background(), x.path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := st.DroppedEvents(context.Background())
	if err != nil || n != stats.Dropped {
		t.Fatalf("stored drop count %d, %v; recorder counted %d", n, err, stats.Dropped)
	}
	calls, _ := st.ListCalls(context.Background(), store.Filter{})
	var perCall int64
	for _, c := range calls {
		if c.State != "closed" {
			t.Errorf("call %d left open", c.ID)
		}
		perCall += c.DroppedEvents
		if int64(len(mustMsgs(t, st, c.ID)))+c.DroppedEvents != 50 {
			t.Errorf("call %d: messages + dropped != 50", c.ID)
		}
	}
	if lostCalls := int64(20 - len(calls)); perCall+lostCalls*52 != stats.Dropped {
		t.Errorf("per-call drops %d + %d lost calls ≠ %d", perCall, lostCalls, stats.Dropped)
	}
}

func mustMsgs(t *testing.T, st *store.Store, id int64) []store.Message {
	m, err := st.Messages(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A store that cannot be written (read-only here; a full disk behaves the
// same) loses the events, counts them and never blocks the observer.
func TestUnwritableStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	ro, err := store.Open(context.Background(), path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var logBuf syncbuf.Buffer
	r, err := New(context.Background(), ro, Options{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		co := r.StartCall(&proxy.CallStart{Method: "/a/b", Time: time.Now()})
		co.Message(proxy.NewMessage(1, proxy.Request, time.Now(), []byte("x")))
		co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
		time.Sleep(2 * time.Millisecond)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.Dropped != 30 || s.Recorded != 0 {
		t.Fatalf("stats %+v, want 30 dropped", s)
	}
	if !strings.Contains(logBuf.String(), "dropping events") {
		t.Fatalf("log: %s", logBuf.String())
	}
}

// TestFlush: Flush writes what is queued at once, not after FlushEvery,
// and returns at once after Close.
func TestFlush(t *testing.T) {
	x := newRec(t, Options{FlushEvery: time.Hour})
	co := x.r.StartCall(&proxy.CallStart{Method: "/a.B/C", Time: time.Now()})
	co.Message(proxy.NewMessage(1, proxy.Request, time.Now(), []byte("hi")))
	co.EndCall(&proxy.CallEnd{Status: status.New(codes.NotFound, "gone"), Time: time.Now()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := x.r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := x.st.GetCall(ctx, 1)
	if err != nil {
		t.Fatalf("call not written by Flush: %v", err)
	}
	if c.State != "closed" || c.Status == nil || c.Status.Code != int(codes.NotFound) || len(c.Messages) != 1 {
		t.Fatalf("call after Flush: state %s status %+v messages %d", c.State, c.Status, len(c.Messages))
	}
	x.close(t)
	if err := x.r.Flush(ctx); err != nil {
		t.Fatalf("Flush after Close: %v", err)
	}
}

// TestManySmallBatchesKeepEverythingInOrder: with batches far smaller
// than what is queued, written while calls keep coming from several
// goroutines, in waves, every event is stored, each call's messages in
// their order.
func TestManySmallBatchesKeepEverythingInOrder(t *testing.T) {
	x := newRec(t, Options{MaxBatch: 3, FlushEvery: time.Millisecond})
	const workers, callsEach, msgs = 4, 25, 7
	for wave := 0; wave < 3; wave++ {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < callsEach; i++ {
					co := x.r.StartCall(&proxy.CallStart{Method: "/a.B/C", Time: time.Now()})
					name := fmt.Sprintf("%d/%d/%d", wave, w, i)
					for seq := 1; seq <= msgs; seq++ {
						co.Message(proxy.NewMessage(seq, proxy.Request, time.Now(), []byte(fmt.Sprintf("%s#%d", name, seq))))
					}
					co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
				}
			}()
		}
		wg.Wait()
		x.flush(t)
	}
	if s := x.r.Stats(); s.Dropped != 0 || s.Recorded != 3*workers*callsEach*(msgs+2) {
		t.Fatalf("stats %+v, want %d recorded and none dropped", s, 3*workers*callsEach*(msgs+2))
	}
	calls, err := x.st.ListCalls(context.Background(), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, lc := range calls {
		c, err := x.st.GetCall(context.Background(), lc.ID)
		if err != nil || c.State != "closed" || len(c.Messages) != msgs {
			t.Fatalf("call %d: %+v, %v", lc.ID, c, err)
		}
		name, _, _ := strings.Cut(string(c.Messages[0].Raw), "#")
		seen[name] = true
		for i, m := range c.Messages {
			if want := fmt.Sprintf("%s#%d", name, i+1); m.Seq != i+1 || string(m.Raw) != want {
				t.Errorf("call %d message %d: seq %d %q, want seq %d %q", lc.ID, i, m.Seq, m.Raw, i+1, want)
			}
		}
	}
	n := len(seen)
	if n != 3*workers*callsEach {
		t.Errorf("%d calls, want %d", n, 3*workers*callsEach)
	}
}

func TestSubscribe(t *testing.T) {
	x := newRec(t, Options{})
	feed, cancel := x.r.Subscribe(64)
	defer cancel()
	co := x.r.StartCall(&proxy.CallStart{Method: "/a/b", Time: time.Now()})
	co.Message(proxy.NewMessage(1, proxy.Request, time.Now(), []byte("x")))
	co.EndCall(&proxy.CallEnd{Status: status.New(codes.Aborted, ""), Time: time.Now()})
	var kinds []string
	for len(kinds) < 3 {
		select {
		case e := <-feed:
			kinds = append(kinds, e.Kind)
			// The event is published after commit: the row is there.
			if _, err := x.st.GetCall(context.Background(), e.CallID); err != nil {
				t.Fatalf("%s event before the row: %v", e.Kind, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("feed gave %v", kinds)
		}
	}
	if d := cmp.Diff([]string{"start", "message", "end"}, kinds); d != "" {
		t.Fatal(d)
	}
}

func TestReopenClosesOpenCallsAndContinuesIDs(t *testing.T) {
	x := newRec(t, Options{})
	co := x.r.StartCall(&proxy.CallStart{Method: "/a/b", Time: time.Now()})
	co.Message(proxy.NewMessage(1, proxy.Request, time.Now(), []byte("x")))
	x.flush(t)
	x.close(t) // the call is never ended: as if the proxy died
	st, err := store.Open(context.Background(), x.path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(context.Background(), st, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	x.st, x.r = st, r
	c := x.waitCall(t, 1, closed)
	if c.Status.Code != int(codes.Unavailable) || c.Status.Message != store.StoppedMessage {
		t.Fatalf("status %+v", c.Status)
	}
	co = r.StartCall(&proxy.CallStart{Method: "/a/b", Time: time.Now()})
	co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
	x.waitCall(t, 2, closed)
}

// ---- end to end, through a real proxy and a real backend ----

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "grpctap-test-raw" }

func serve(t *testing.T, srv *grpc.Server) string { return stubserver.Serve(t, srv) }

// backend answers by method: Unary, Client (sums), Server (4 replies),
// Bidi (echo), Fail (headers, then FAILED_PRECONDITION with details).
func backend(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	ss.SetHeader(metadata.Pairs("x-resp", "h1"))
	ss.SetTrailer(metadata.Pairs("x-trail", "t1", "x-trail-bin", "\x01\x02"))
	recv := func() ([]byte, error) {
		var b []byte
		err := ss.RecvMsg(&b)
		return b, err
	}
	send := func(b []byte) error { return ss.SendMsg(&b) }
	switch method {
	case "/test.S/Unary":
		b, err := recv()
		if err != nil {
			return err
		}
		return send(append(b, b...))
	case "/test.S/Client":
		var all []byte
		for {
			b, err := recv()
			if err == io.EOF {
				return send(all)
			}
			if err != nil {
				return err
			}
			all = append(all, b...)
		}
	case "/test.S/Server":
		b, err := recv()
		if err != nil {
			return err
		}
		for i := 0; i < 4; i++ {
			if err := send(b[:i+1]); err != nil {
				return err
			}
		}
		return nil
	case "/test.S/Bidi":
		for {
			b, err := recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := send(b); err != nil {
				return err
			}
		}
	case "/test.S/Fail":
		if _, err := recv(); err != nil {
			return err
		}
		ss.SendHeader(nil)
		st, _ := status.New(codes.FailedPrecondition, "not yet").WithDetails(durationpb.New(3 * time.Second))
		return st.Err()
	}
	return status.Error(codes.Unimplemented, method)
}

// e2e starts a backend, a recording proxy in front of it and a client.
func e2e(t *testing.T, opts Options) (*rec, *grpc.ClientConn) {
	t.Helper()
	x := newRec(t, opts)
	back := serve(t, grpc.NewServer(grpc.UnknownServiceHandler(backend), grpc.ForceServerCodecV2(rawCodec{})))
	p, err := proxy.New(proxy.Options{Backend: back, Observer: x.r, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	addr := serve(t, p.NewServer())
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return x, cc
}

func stream(t *testing.T, ctx context.Context, cc *grpc.ClientConn, method string, reqs [][]byte) ([][]byte, error) {
	t.Helper()
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		return nil, err
	}
	for _, r := range reqs {
		if err := cs.SendMsg(&r); err != nil {
			return nil, err
		}
	}
	cs.CloseSend()
	var out [][]byte
	for {
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, b)
	}
}

func TestEndToEndEveryRPCKind(t *testing.T) {
	x, cc := e2e(t, Options{})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-req", "r1", "x-req-bin", "\x00\xff")
	type want struct {
		method                   string
		reqs                     [][]byte
		rpc                      string
		reqN, respN, reqB, respB int64
		code                     codes.Code
		msgSizes                 []int64
	}
	a, b, c := []byte("aaaa"), []byte("bbbbbb"), []byte("cc")
	cases := []want{
		{"/test.S/Unary", [][]byte{a}, "unary", 1, 1, 4, 8, codes.OK, []int64{4, 8}},
		{"/test.S/Client", [][]byte{a, b, c}, "client_streaming", 3, 1, 12, 12, codes.OK, []int64{4, 6, 2, 12}},
		{"/test.S/Server", [][]byte{a}, "server_streaming", 1, 4, 4, 10, codes.OK, []int64{4, 1, 2, 3, 4}},
		{"/test.S/Bidi", [][]byte{a, b, c}, "bidi_streaming", 3, 3, 12, 12, codes.OK, nil},
		{"/test.S/Fail", [][]byte{a}, "unary", 1, 0, 4, 0, codes.FailedPrecondition, []int64{4}},
	}
	for i, w := range cases {
		_, err := stream(t, ctx, cc, w.method, w.reqs)
		if status.Code(err) != w.code {
			t.Fatalf("%s: %v", w.method, err)
		}
		got := x.waitCall(t, int64(i+1), closed)
		if got.Method != w.method || got.Service != "test.S" || got.RPC != w.rpc || got.RequestCount != w.reqN || got.ResponseCount != w.respN ||
			got.RequestBytes != w.reqB || got.ResponseBytes != w.respB || got.Status.Code != int(w.code) || got.Protocol != "grpc" {
			t.Errorf("%s: %+v status %+v", w.method, got.Call, got.Status)
		}
		if len(got.Messages) != int(w.reqN+w.respN) {
			t.Errorf("%s: %d messages", w.method, len(got.Messages))
		}
		for j, m := range got.Messages {
			if m.Seq != j+1 || int64(len(m.Raw)) != m.Size {
				t.Errorf("%s message %d: %+v", w.method, j, m)
			}
			if w.msgSizes != nil && m.Size != w.msgSizes[j] {
				t.Errorf("%s message %d size %d, want %d", w.method, j, m.Size, w.msgSizes[j])
			}
		}
		if got.RequestHeaders["x-req"][0] != "r1" || got.RequestHeaders["x-req-bin"][0] != "AP8" {
			t.Errorf("%s request headers %v", w.method, got.RequestHeaders)
		}
		if got.ResponseHeaders["x-resp"][0] != "h1" {
			t.Errorf("%s response headers %v", w.method, got.ResponseHeaders)
		}
		if got.Trailers["x-trail"][0] != "t1" || got.Trailers["x-trail-bin"][0] != "AQI" {
			t.Errorf("%s trailers %v", w.method, got.Trailers)
		}
		if got.Backend == "" || got.Peer == "" || got.Authority == "" || got.End == nil || got.End.Before(got.Start) {
			t.Errorf("%s: %+v", w.method, got.Call)
		}
	}
	fail, _ := x.st.GetCall(context.Background(), 5)
	d, _ := proto.Marshal(mustAny(t))
	if fail.Status.Name != "FAILED_PRECONDITION" || fail.Status.Message != "not yet" || len(fail.Status.Details) != 1 ||
		!proto.Equal(mustUnmarshalAny(t, fail.Status.Details[0]), mustUnmarshalAny(t, d)) {
		t.Errorf("status %+v", fail.Status)
	}
}

func TestEndToEndOpenCallVisible(t *testing.T) {
	x, cc := e2e(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/test.S/Bidi")
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("first")
	cs.SendMsg(&b)
	var back []byte
	if err := cs.RecvMsg(&back); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := x.waitCall(t, 1, func(c *store.CallWithMessages) bool { return len(c.Messages) == 2 })
	if c.State != "open" || c.End != nil || c.Status != nil {
		t.Fatalf("open call: %+v", c.Call)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("open call took %v to appear", el)
	}
	cs.CloseSend()
	if err := cs.RecvMsg(&back); err != io.EOF {
		t.Fatal(err)
	}
	x.waitCall(t, 1, closed)
}

func TestEndToEndConcurrentClients(t *testing.T) {
	x, cc := e2e(t, Options{})
	const clients, each = 32, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < each; j++ {
				body := []byte(fmt.Sprintf("client %d call %d", i, j))
				if j%5 == 0 {
					// Bodies over several HTTP/2 frames come to the
					// recorder as several pooled buffers.
					body = append(body, bytes.Repeat([]byte(fmt.Sprintf(" %d.%d", i, j)), 8<<10)...)
				}
				if _, err := stream(t, context.Background(), cc, "/test.S/Unary", [][]byte{body}); err != nil {
					errs <- err
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	x.flush(t)
	x.close(t)
	st, err := store.Open(context.Background(), x.path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	calls, err := st.ListCalls(context.Background(), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != clients*each {
		t.Fatalf("%d calls recorded, want %d", len(calls), clients*each)
	}
	seen := map[string]bool{}
	for _, c := range calls {
		if c.State != "closed" || c.RequestCount != 1 || c.ResponseCount != 1 || c.Status.Code != 0 {
			t.Fatalf("call %+v", c)
		}
		m := mustMsgs(t, st, c.ID)
		seen[string(m[0].Raw)] = true
		if string(m[1].Raw) != strings.Repeat(string(m[0].Raw), 2) {
			t.Fatalf("call %d: response (%d bytes) is not the request (%d bytes) twice", c.ID, len(m[1].Raw), len(m[0].Raw))
		}
		if !strings.HasPrefix(string(m[0].Raw), "client ") || int64(len(m[0].Raw)) != m[0].Size {
			t.Fatalf("call %d: request recorded as %d of %d bytes starting %q", c.ID, len(m[0].Raw), m[0].Size, m[0].Raw[:min(len(m[0].Raw), 20)])
		}
	}
	if len(seen) != clients*each {
		t.Fatalf("%d distinct requests", len(seen))
	}
	if n, _ := st.DroppedEvents(context.Background()); n != 0 || x.r.Stats().Dropped != 0 {
		t.Fatalf("dropped %d", n)
	}
}

func TestEndToEndRedaction(t *testing.T) {
	const secret = "Bearer s3cr3t-7f9a2c"
	for _, redact := range []bool{true, false} {
		t.Run(fmt.Sprint("redact=", redact), func(t *testing.T) {
			opts := Options{}
			if !redact {
				opts.Redact = []string{}
			}
			x, cc := e2e(t, opts)
			ctx := metadata.AppendToOutgoingContext(context.Background(),
				"authorization", secret, "cookie", "session="+secret, "x-api-key", secret, "x-other", "visible")
			for i := 0; i < 5; i++ {
				if _, err := stream(t, ctx, cc, "/test.S/Unary", [][]byte{[]byte("hi")}); err != nil {
					t.Fatal(err)
				}
			}
			c := x.waitCall(t, 5, closed)
			x.close(t)
			if redact && (c.RequestHeaders["authorization"][0] != headers.Redacted || c.RequestHeaders["x-other"][0] != "visible") {
				t.Fatalf("headers %v", c.RequestHeaders)
			}
			found := false
			for _, suffix := range []string{"", "-wal", "-shm"} {
				b, err := os.ReadFile(x.path + suffix)
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				found = found || bytes.Contains(b, []byte("s3cr3t-7f9a2c"))
			}
			if found == redact {
				t.Fatalf("secret in the database files: %v, with redaction %v", found, redact)
			}
		})
	}
}

func TestEndToEndTruncation(t *testing.T) {
	x, cc := e2e(t, Options{MaxMessage: 1000})
	big := bytes.Repeat([]byte("0123456789"), 500) // 5000 bytes
	if _, err := stream(t, context.Background(), cc, "/test.S/Unary", [][]byte{big}); err != nil {
		t.Fatal(err)
	}
	c := x.waitCall(t, 1, closed)
	for _, m := range c.Messages {
		if !m.Truncated || len(m.Raw) != 1000 || !bytes.Equal(m.Raw, big[:1000]) {
			t.Errorf("message %d: truncated %v, %d bytes", m.Seq, m.Truncated, len(m.Raw))
		}
	}
	if c.Messages[0].Size != 5000 || c.Messages[1].Size != 10000 || c.RequestBytes != 5000 || c.ResponseBytes != 10000 {
		t.Errorf("sizes: %+v %+v", c.Call, c.Messages)
	}
}

func mustAny(t *testing.T) proto.Message {
	st, err := status.New(codes.FailedPrecondition, "").WithDetails(durationpb.New(3 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return st.Proto().Details[0]
}

func mustUnmarshalAny(t *testing.T, b []byte) proto.Message {
	a := mustAny(t)
	m := proto.Clone(a)
	proto.Reset(m)
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// BenchmarkRecorder measures sustained recording throughput through the
// whole path (observer calls, queue, writer, SQLite) for 300-byte messages,
// until the last one is written. The producer, far faster than any proxy,
// backs off while the queue is over half full, so the figure is what the
// recorder sustains without dropping.
func BenchmarkRecorder(b *testing.B) {
	path := filepath.Join(b.TempDir(), "cap.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r, err := New(context.Background(), st, Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 300)
	b.ResetTimer()
	start := time.Now()
	var co proxy.CallObserver
	for i := 0; i < b.N; i++ {
		if i%10 == 0 {
			if co != nil {
				co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
			}
			for r.Stats().QueuedBytes > DefaultQueueBytes/2 {
				time.Sleep(time.Millisecond)
			}
			co = r.StartCall(&proxy.CallStart{Method: "/bench.S/M", Time: time.Now()})
		}
		co.Message(proxy.NewMessage(i%10+1, proxy.Request, time.Now(), body))
	}
	co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
	if err := r.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(r.Stats().Dropped), "dropped")
}

func TestRetention(t *testing.T) {
	x := newRec(t, Options{Retain: time.Hour, PruneEvery: 20 * time.Millisecond})
	old := time.Now().Add(-2 * time.Hour)
	// The old call may be pruned as soon as it is written: wait only for
	// the new one.
	for _, start := range []time.Time{old, time.Now()} {
		co := x.r.StartCall(&proxy.CallStart{Method: "/a/b", Time: start})
		co.Message(proxy.NewMessage(1, proxy.Request, start, []byte("x")))
		co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: start})
	}
	x.waitCall(t, 2, closed)
	deadline := time.Now().Add(5 * time.Second)
	for {
		calls, err := x.st.ListCalls(context.Background(), store.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) == 1 && calls[0].ID == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after retention: %d calls", len(calls))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A full disk (here: a capture capped at 40 pages) loses events, counts
// them, logs, and never blocks the observer; calls recorded before stay.
func TestFullDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap.db")
	st, err := store.Open(context.Background(), path, store.Options{MaxPages: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logBuf syncbuf.Buffer
	r, err := New(context.Background(), st, Options{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Bodies kept in SQLite (below store.SegmentThreshold), which
	// MaxPages fills like a full disk.
	body := bytes.Repeat([]byte{7}, store.SegmentThreshold-100)
	start := time.Now()
	for i := 0; i < 200; i++ {
		co := r.StartCall(&proxy.CallStart{Method: "/a/b", Time: time.Now()})
		co.Message(proxy.NewMessage(1, proxy.Request, time.Now(), body))
		co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
		if i == 9 { // let the first calls be written before the disk fills
			for r.Stats().Recorded < 30 && time.Since(start) < 5*time.Second {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := r.Stats()
	if s.Dropped == 0 || s.Recorded == 0 || s.Dropped+s.Recorded < 600 {
		t.Fatalf("stats %+v", s)
	}
	if !strings.Contains(logBuf.String(), "full") {
		t.Fatalf("log: %s", logBuf.String())
	}
	calls, err := st.ListCalls(context.Background(), store.Filter{})
	if err != nil || len(calls) == 0 {
		t.Fatalf("calls %d, %v", len(calls), err)
	}
	if err := st.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkEndToEnd sends unary calls (with and without recording) with 300-byte bodies through a real
// proxy with the recorder attached, from parallel clients, and reports the
// messages recorded per second (two per call) and any drops.
func BenchmarkEndToEnd(b *testing.B) {
	b.Run("record", func(b *testing.B) { benchEndToEnd(b, true) })
	b.Run("none", func(b *testing.B) { benchEndToEnd(b, false) })
}

func benchEndToEnd(b *testing.B, record bool) {
	path := filepath.Join(b.TempDir(), "cap.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r, err := New(context.Background(), st, Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	backSrv := grpc.NewServer(grpc.UnknownServiceHandler(backend), grpc.ForceServerCodecV2(rawCodec{}))
	backLis, _ := net.Listen("tcp", "127.0.0.1:0")
	go backSrv.Serve(backLis)
	defer backSrv.Stop()
	var obs proxy.Observer
	if record {
		obs = r
	}
	p, err := proxy.New(proxy.Options{Backend: backLis.Addr().String(), Observer: obs, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	srv := p.NewServer()
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(lis)
	defer srv.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	body := bytes.Repeat([]byte("x"), 300)
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, resp := body, []byte(nil)
			if err := cc.Invoke(context.Background(), "/test.S/Bidi", &req, &resp); err != nil {
				b.Error(err)
				return
			}
		}
	})
	el := time.Since(start)
	if err := r.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(2*b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(r.Stats().Dropped), "dropped")
}

// TestRecordedReportsTheCallsID: CallStart.Recorded hears each call's id
// in the capture once its start is written, and 0 for a call that is not
// stored (a reset call over the limit); the call maker finds the call by
// it after Flush, with no polling.
func TestRecordedReportsTheCallsID(t *testing.T) {
	x := newRec(t, Options{ResetBurst: 1, ResetRate: 0.001})
	got := make(chan int64, 4)
	report := func(id int64) { got <- id }
	// A call before, so that the id is not just the first.
	x.r.StartCall(&proxy.CallStart{Method: "/a/first", Time: time.Now()}).EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
	co := x.r.StartCall(&proxy.CallStart{Method: "/a/b", Time: time.Now(), Recorded: report})
	co.Message(proxy.NewMessage(1, proxy.Request, time.Now(), []byte("q")))
	co.EndCall(&proxy.CallEnd{Status: status.New(codes.OK, ""), Time: time.Now()})
	x.flush(t)
	var id int64
	select {
	case id = <-got:
	default:
		t.Fatal("Recorded was not called by the time Flush returned")
	}
	c, err := x.st.GetCall(context.Background(), id)
	if err != nil || c.Method != "/a/b" || c.State != "closed" || len(c.Messages) != 1 {
		t.Fatalf("call %d: %+v, %v", id, c, err)
	}

	// Two reset calls from one client: the first takes the only token, the
	// second is not stored, and says so.
	for i := 0; i < 2; i++ {
		co := x.r.StartCall(&proxy.CallStart{Method: "/a/reset", Peer: "10.0.0.1:5", Time: time.Now(), Recorded: report})
		co.EndCall(&proxy.CallEnd{Status: status.New(codes.Canceled, "reset"), Time: time.Now()})
	}
	x.flush(t)
	// (The one not stored hears so at once, the other once written.)
	a, b := <-got, <-got
	if min(a, b) != 0 || max(a, b) <= id {
		t.Errorf("reset calls reported %d and %d, want 0 and an id above %d", a, b, id)
	}
	select {
	case extra := <-got:
		t.Errorf("Recorded called again: %d", extra)
	default:
	}
}
