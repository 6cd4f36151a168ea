package recorder

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/internal/syncbuf"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// floodConn is a raw HTTP/2 client connection that opens streams and
// resets each before sending anything (HEADERS, then RST_STREAM): the
// "rapid reset" flood.
type floodConn struct {
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	next uint32 // the next stream id

	acks    chan struct{} // a PING ack arrived
	done    chan struct{} // the reader ended
	readErr error         // why, once done is closed
}

// dialFlood connects to a gRPC server at addr; the connection is closed
// when the test ends.
func dialFlood(t *testing.T, addr string) *floodConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fc := &floodConn{conn: conn, fr: http2.NewFramer(conn, conn), next: 1,
		acks: make(chan struct{}, 1), done: make(chan struct{})}
	fc.enc = hpack.NewEncoder(&fc.hbuf)
	// The reader drains what the server sends, so it never waits on a full
	// socket, and reports PING acks; it ends when the connection closes.
	go func() {
		defer close(fc.done)
		for {
			f, err := fc.fr.ReadFrame()
			if err != nil {
				fc.readErr = err
				return
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
				select {
				case fc.acks <- struct{}{}:
				default: // one is waiting to be seen already
				}
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-fc.done })
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := fc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return fc
}

// resetStreams opens n streams calling method and resets each at once
// with CANCEL, then waits for the answer to a PING sent after them: the
// server has read every frame by then.
func (fc *floodConn) resetStreams(method string, n int) error {
	for i := 0; i < n; i++ {
		id := fc.next
		fc.next += 2
		fc.hbuf.Reset()
		for _, f := range []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: method}, {Name: ":authority", Value: fc.conn.RemoteAddr().String()},
			{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		} {
			if err := fc.enc.WriteField(f); err != nil {
				return fmt.Errorf("encode headers: %w", err)
			}
		}
		if err := fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.hbuf.Bytes(), EndHeaders: true}); err != nil {
			return fmt.Errorf("stream %d: headers: %w", id, err)
		}
		if err := fc.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			return fmt.Errorf("stream %d: reset: %w", id, err)
		}
	}
	if err := fc.fr.WritePing(false, [8]byte{'f', 'l', 'o', 'o', 'd'}); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	select {
	case <-fc.acks:
		return nil
	case <-fc.done:
		return fmt.Errorf("the server ended the connection after %d reset streams: %w", n, fc.readErr)
	}
}

// TestResetFloodIsCountedNotRecorded sends an HTTP/2 rapid-reset flood
// through the proxy from a few connections while a gRPC client makes
// ordinary calls on another: the capture keeps at most the allowed burst
// (plus the rate) of the reset calls, counts the rest, keeps every
// ordinary call, and the proxy serves throughout.
func TestResetFloodIsCountedNotRecorded(t *testing.T) {
	var logs syncbuf.Buffer
	x, cc := e2e(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	const conns, each, ordinary = 3, 2000, 200
	floods := make([]*floodConn, conns)
	for i := range floods {
		floods[i] = dialFlood(t, cc.Target())
	}

	begin := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns+ordinary)
	for _, fc := range floods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The backend answers /test.S/Unary only after a request
			// message, so nothing comes back before the reset.
			if err := fc.resetStreams("/test.S/Unary", each); err != nil {
				errs <- err
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < ordinary; i++ {
			body := []byte(fmt.Sprintf("ordinary %d", i))
			got, err := stream(t, context.Background(), cc, "/test.S/Unary", [][]byte{body})
			if err != nil {
				errs <- fmt.Errorf("ordinary call %d during the flood: %w", i, err)
				return
			}
			if len(got) != 1 || !bytes.Equal(got[0], append(body, body...)) {
				errs <- fmt.Errorf("ordinary call %d: answer %q", i, got)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The proxy still serves after the flood.
	if got, err := stream(t, context.Background(), cc, "/test.S/Unary", [][]byte{[]byte("after")}); err != nil || len(got) != 1 {
		t.Fatalf("a call after the flood: %q, %v", got, err)
	}

	// Every reset stream became a call at the proxy: wait until each has
	// ended, recorded or counted.
	ctx := context.Background()
	sent := int64(conns * each)
	canceled := int(codes.Canceled)
	var resets []store.Call
	for tries := 0; ; tries++ {
		x.flush(t)
		var err error
		resets, err = x.st.ListCalls(ctx, store.Filter{Status: &canceled})
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(resets))+x.r.Stats().SkippedResets >= sent {
			break
		}
		if tries == 1000 {
			t.Fatalf("after %d reset streams: %d recorded, %d counted", sent, len(resets), x.r.Stats().SkippedResets)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(begin)
	stats := x.r.Stats()

	// At most the burst and what the rate refilled since the flood began.
	allowed := DefaultResetBurst + int(DefaultResetRate*elapsed.Seconds()) + 1
	t.Logf("%d reset streams in %v: %d recorded (at most %d allowed), %d counted", sent, elapsed.Round(time.Millisecond), len(resets), allowed, stats.SkippedResets)
	if len(resets) > allowed {
		t.Errorf("%d calls reset before any message recorded; at most %d allowed", len(resets), allowed)
	}
	if int64(len(resets))+stats.SkippedResets != sent {
		t.Errorf("%d recorded + %d counted, want the %d reset streams", len(resets), stats.SkippedResets, sent)
	}
	// The capture keeps the count, for 'grpctap calls' and other readers.
	if err := x.r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := x.st.SkippedCalls(ctx); err != nil || n != x.r.Stats().SkippedResets {
		t.Errorf("the capture counts %d skipped calls (%v), the recorder %d", n, err, x.r.Stats().SkippedResets)
	}
	for _, c := range resets {
		if c.Method != "/test.S/Unary" || c.RequestCount+c.ResponseCount != 0 {
			t.Fatalf("a recorded reset call: %+v", c)
		}
	}

	// Every ordinary call is in the capture, whole.
	calls, err := x.st.ListCalls(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range calls {
		if c.Status == nil || c.Status.Code != 0 {
			continue
		}
		m := mustMsgs(t, x.st, c.ID)
		if c.RequestCount != 1 || c.ResponseCount != 1 || len(m) != 2 {
			t.Fatalf("ordinary call %d: %d/%d messages, %d stored", c.ID, c.RequestCount, c.ResponseCount, len(m))
		}
		seen[string(m[0].Raw)] = true
	}
	for i := 0; i < ordinary; i++ {
		if body := fmt.Sprintf("ordinary %d", i); !seen[body] {
			t.Errorf("%q is not in the capture", body)
		}
	}
	if !seen["after"] || len(seen) != ordinary+1 {
		t.Errorf("%d ordinary calls recorded, want %d", len(seen), ordinary+1)
	}
	if stats.Dropped != 0 {
		t.Errorf("%d events dropped", stats.Dropped)
	}

	// The flood is logged, once per 10 s at most.
	lines := strings.Count(logs.String(), "reset before any message")
	if lines == 0 || lines > 1+int(elapsed/(10*time.Second)) {
		t.Errorf("%d log lines about reset calls in %v:\n%s", lines, elapsed, logs.String())
	}
}

// TestResetCallsOverTheRate drives the recorder as the proxy does, with
// the calls' own times, and checks which calls a client over its rate of
// reset calls still gets recorded.
func TestResetCallsOverTheRate(t *testing.T) {
	x := newRec(t, Options{ResetBurst: 5, ResetRate: 1})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cancelled := status.New(codes.Canceled, "context canceled")
	start := func(method, peer string, at time.Time) proxy.CallObserver {
		return x.r.StartCall(&proxy.CallStart{Method: method, Peer: peer, Time: at})
	}
	end := func(co proxy.CallObserver, st *status.Status, at time.Time) {
		co.EndCall(&proxy.CallEnd{Status: st, Time: at})
	}
	resets := func(method, peer string, n int, at time.Time) {
		for i := 0; i < n; i++ {
			end(start(method, peer, at), cancelled, at)
		}
	}

	// Client A: the burst is recorded, the rest counted, from any port.
	resets("/a/burst", "10.0.0.1:1000", 8, t0)
	resets("/a/other-port", "10.0.0.1:2000", 2, t0)
	// Client B has a bucket of its own; one IPv6 /64 is one client.
	resets("/b/burst", "10.0.0.2:1000", 5, t0)
	resets("/c/v6", "[2001:db8::1]:1", 4, t0)
	resets("/c/v6", "[2001:db8::2]:1", 4, t0)

	// A, over its rate: calls with a header or a message, or ended
	// otherwise, are recorded whole; so is one still open.
	co := start("/a/message", "10.0.0.1:1000", t0)
	co.Message(proxy.NewMessage(1, proxy.Request, t0, []byte("m")))
	end(co, cancelled, t0)
	co = start("/a/header", "10.0.0.1:1000", t0)
	co.ResponseHeader(&proxy.Header{MD: metadata.Pairs("h", "v"), Time: t0})
	end(co, cancelled, t0)
	end(start("/a/unimplemented", "10.0.0.1:1000", t0), status.New(codes.Unimplemented, "no route"), t0)
	open := start("/a/open", "10.0.0.1:1000", t0)
	open.Message(proxy.NewMessage(1, proxy.Request, t0, []byte("o")))

	// Two seconds on, A has earned two tokens: a call that started
	// without one is recorded if it ends with one.
	late := start("/a/late", "10.0.0.1:1000", t0)
	end(late, cancelled, t0.Add(2*time.Second))
	resets("/a/refilled", "10.0.0.1:1000", 2, t0.Add(2*time.Second))

	// Client D's ordinary calls give back the tokens they take at start:
	// ten of them, five at a time, then its whole burst of resets.
	for round := 0; round < 2; round++ {
		var cos []proxy.CallObserver
		for i := 0; i < 5; i++ {
			cos = append(cos, start("/d/ordinary", "10.0.0.4:1", t0))
		}
		// A sixth while the five hold every token: recorded all the same.
		cos = append(cos, start("/d/ordinary", "10.0.0.4:1", t0))
		for i, co := range cos {
			co.Message(proxy.NewMessage(1, proxy.Request, t0, []byte{byte(i)}))
			end(co, status.New(codes.OK, ""), t0)
		}
	}
	resets("/d/burst", "10.0.0.4:1", 5, t0)

	x.flush(t)
	calls, err := x.st.ListCalls(context.Background(), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, c := range calls {
		got[c.Method]++
		if c.Method == "/a/message" && c.RequestCount != 1 || c.Method == "/a/header" && c.ResponseHeaders["h"] == nil ||
			c.Method == "/a/open" && (c.State != "open" || c.RequestCount != 1) {
			t.Errorf("call %s: %+v", c.Method, c)
		}
	}
	want := map[string]int{
		"/a/burst": 5, "/b/burst": 5, "/c/v6": 5,
		"/a/message": 1, "/a/header": 1, "/a/unimplemented": 1, "/a/open": 1,
		"/a/late": 1, "/a/refilled": 1,
		"/d/ordinary": 12, "/d/burst": 5,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("calls recorded per method (-want +got):\n%s", d)
	}
	// Not recorded: 3 + 2 of A's first resets, 1 of its refilled ones, 3 of C's.
	if s := x.r.Stats(); s.SkippedResets != 9 || s.Dropped != 0 {
		t.Errorf("stats %+v, want 9 reset calls skipped, none dropped", s)
	}
	end(open, status.New(codes.OK, ""), t0)
}

// TestResetLimitOff records every reset call when ResetBurst is negative,
// and those without a peer (grpctap's own replays) always.
func TestResetLimitOff(t *testing.T) {
	for _, tc := range []struct {
		burst int
		peer  string
	}{{-1, "10.0.0.1:1"}, {0, ""}} {
		x := newRec(t, Options{ResetBurst: tc.burst})
		now := time.Now()
		for i := 0; i < 3*DefaultResetBurst; i++ {
			x.r.StartCall(&proxy.CallStart{Method: "/a/b", Peer: tc.peer, Time: now}).
				EndCall(&proxy.CallEnd{Status: status.New(codes.Canceled, ""), Time: now})
		}
		x.flush(t)
		calls, err := x.st.ListCalls(context.Background(), store.Filter{})
		if err != nil || len(calls) != 3*DefaultResetBurst || x.r.Stats().SkippedResets != 0 {
			t.Errorf("burst %d, peer %q: %d calls recorded, %d skipped, %v", tc.burst, tc.peer, len(calls), x.r.Stats().SkippedResets, err)
		}
	}
}
