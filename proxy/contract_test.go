package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/proxy"
)

// TestRequestMetadata checks that request metadata reaches the backend
// byte for byte, multi-value and -bin keys included, and that hop-by-hop
// headers do not.
func TestRequestMetadata(t *testing.T) {
	got := make(chan metadata.MD, 1)
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		got <- md
		return echoHandler(nil, ss)
	})
	addr, _ := startProxy(t, proxy.Options{Backend: backend})
	cc := dial(t, addr, nil)

	bin := []byte{0, 1, 2, 0xff, 0xfe, '\n'}
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"x-multi", "one", "x-multi", "two", "x-multi", "three",
		"x-trace-bin", string(bin),
		"x-trace-bin", string([]byte{}),
		"keep-alive", "timeout=5",
		"proxy-foo", "secret-hop",
		"upgrade", "websocket",
		"grpctap-origin", "composer",
	)
	if _, err := unaryRaw(ctx, cc, "/t.S/M", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	md := <-got
	if diff := cmp.Diff([]string{"one", "two", "three"}, md.Get("x-multi")); diff != "" {
		t.Errorf("x-multi (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{string(bin), ""}, md.Get("x-trace-bin")); diff != "" {
		t.Errorf("x-trace-bin (-want +got):\n%s", diff)
	}
	for _, k := range []string{"keep-alive", "proxy-foo", "upgrade", "connection", "te", "grpctap-origin"} {
		if v := md.Get(k); len(v) > 0 {
			t.Errorf("hop-by-hop header %s reached the backend: %q", k, v)
		}
	}
}

// TestHeadersKeptWhenBackendFailsEarly is grpc-proxy's issue #79: response
// headers sent before an error, with no message, must reach the client,
// and so must the trailers, code, message and details, byte for byte.
func TestHeadersKeptWhenBackendFailsEarly(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "précondition: ünicode ✓\nline two").WithDetails(
		&errdetails.ErrorInfo{Reason: "QUOTA", Domain: "grpctap.test", Metadata: map[string]string{"a": "b"}},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "x", Description: "bad"}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	wantDetails, _ := proto.Marshal(st.Proto())
	for _, tc := range []struct {
		name       string
		sendHeader bool
	}{{"headers then error", true}, {"trailers only", false}} {
		t.Run(tc.name, func(t *testing.T) {
			backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
				if tc.sendHeader {
					if err := ss.SendHeader(metadata.Pairs("x-early", "yes", "x-early-bin", "\x00\x01")); err != nil {
						return err
					}
				}
				ss.SetTrailer(metadata.Pairs("x-trailer", "t1", "x-trailer", "t2"))
				return st.Err()
			})
			log := newEventLog()
			addr, _ := startProxy(t, proxy.Options{Backend: backend, Observer: log})
			cc := dial(t, addr, nil)
			var hdr, tr metadata.MD
			_, err := unaryRaw(context.Background(), cc, "/t.S/Fail", []byte("x"), grpc.Header(&hdr), grpc.Trailer(&tr))
			got := status.Convert(err)
			if got.Code() != codes.FailedPrecondition || got.Message() != st.Message() {
				t.Fatalf("status = %v %q, want %v %q", got.Code(), got.Message(), st.Code(), st.Message())
			}
			if !proto.Equal(got.Proto(), st.Proto()) {
				t.Errorf("status details differ: got %v", got.Proto())
			}
			if diff := cmp.Diff([]string{string(wantDetails)}, tr.Get("grpc-status-details-bin")); diff != "" {
				t.Errorf("grpc-status-details-bin not byte-exact (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"t1", "t2"}, tr.Get("x-trailer")); diff != "" {
				t.Errorf("trailer (-want +got):\n%s", diff)
			}
			if tc.sendHeader {
				if diff := cmp.Diff([]string{"yes"}, hdr.Get("x-early")); diff != "" {
					t.Errorf("early header lost (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]string{"\x00\x01"}, hdr.Get("x-early-bin")); diff != "" {
					t.Errorf("early -bin header (-want +got):\n%s", diff)
				}
			} else if len(hdr.Get("x-early")) != 0 {
				t.Errorf("trailers-only response grew headers: %v", hdr)
			}
			log.wait(t, 1)
			end := log.ends[0]
			if !proto.Equal(end.Status.Proto(), st.Proto()) {
				t.Errorf("observer status = %v, want %v", end.Status.Proto(), st.Proto())
			}
		})
	}
}

// TestResponseHeadersArriveBeforeFirstMessage: a streaming client sees the
// backend's headers as soon as they are sent, not with the first message.
func TestResponseHeadersArriveBeforeFirstMessage(t *testing.T) {
	release := make(chan struct{})
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		if err := ss.SendHeader(metadata.Pairs("x-now", "1")); err != nil {
			return err
		}
		select {
		case <-release:
		case <-ss.Context().Done():
		}
		return nil
	})
	addr, _ := startProxy(t, proxy.Options{Backend: backend})
	cc := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs := rawStream(ctx, t, cc, "/t.S/Slow")
	hdr, err := cs.Header()
	close(release)
	if err != nil || len(hdr.Get("x-now")) != 1 {
		t.Fatalf("header = %v, %v; want x-now before any message", hdr, err)
	}
	_ = cs.CloseSend()
	var b []byte
	if err := cs.RecvMsg(&b); !errors.Is(err, io.EOF) {
		t.Fatalf("RecvMsg = %v, want EOF", err)
	}
}

// TestContentSubtypeAndCompression: application/grpc+json passes through
// as such, and a gzip request reaches the backend gzip'd and is answered
// gzip'd.
func TestContentSubtypeAndCompression(t *testing.T) {
	type seen struct {
		ct, enc string
	}
	got := make(chan seen, 1)
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		var enc string
		if s, ok := grpc.ServerTransportStreamFromContext(ss.Context()).(interface{ RecvCompress() string }); ok {
			enc = s.RecvCompress()
		}
		got <- seen{strings.Join(md.Get("content-type"), ","), enc}
		return echoHandler(nil, ss)
	})
	addr, _ := startProxy(t, proxy.Options{Backend: backend})

	var respEnc respCompression
	cc := dial(t, addr, nil, grpc.WithStatsHandler(&respEnc))
	body := []byte(`{"name":"` + strings.Repeat("a", 2000) + `"}`)
	resp, err := unaryRaw(context.Background(), cc, "/t.S/Json", body,
		grpc.CallContentSubtype("json"), grpc.ForceCodecV2(rawcodec.Codec{}), grpc.UseCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp, body) {
		t.Errorf("response body changed")
	}
	s := <-got
	if s.ct != "application/grpc+json" {
		t.Errorf("backend content-type = %q, want application/grpc+json", s.ct)
	}
	if s.enc != "gzip" {
		t.Errorf("backend request encoding = %q, want gzip", s.enc)
	}
	if e := respEnc.get(); e != "gzip" {
		t.Errorf("client response encoding = %q, want gzip", e)
	}
}

// respCompression records the grpc-encoding of the response headers.
type respCompression struct {
	mu  sync.Mutex
	enc string
}

func (r *respCompression) get() string { r.mu.Lock(); defer r.mu.Unlock(); return r.enc }
func (r *respCompression) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (r *respCompression) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		r.mu.Lock()
		r.enc = h.Compression
		r.mu.Unlock()
	}
}
func (r *respCompression) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (r *respCompression) HandleConn(context.Context, stats.ConnStats) {}

// TestDeadlineAndCancellation: the client's deadline reaches the backend,
// and a client that cancels mid-stream cancels the backend's stream.
func TestDeadlineAndCancellation(t *testing.T) {
	deadlines := make(chan time.Time, 1)
	cancelled := make(chan error, 1)
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		dl, _ := ss.Context().Deadline()
		deadlines <- dl
		var b []byte
		if err := ss.RecvMsg(&b); err != nil {
			return err
		}
		if err := ss.SendMsg(&b); err != nil {
			return err
		}
		<-ss.Context().Done()
		cancelled <- ss.Context().Err()
		return ss.Context().Err()
	})
	addr, _ := startProxy(t, proxy.Options{Backend: backend})
	cc := dial(t, addr, nil)

	want := time.Now().Add(30 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), want)
	cs := rawStream(ctx, t, cc, "/t.S/Stream")
	b := []byte("ping")
	if err := cs.SendMsg(&b); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&b); err != nil {
		t.Fatal(err)
	}
	dl := <-deadlines
	if d := want.Sub(dl); d < -50*time.Millisecond || d > 2*time.Second {
		t.Errorf("backend deadline %v is %v from the client's", dl, d)
	}
	cancel()
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("backend context ended with %v, want Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend stream was not cancelled when the client cancelled")
	}
}

// TestClientVanishes: a client whose connection dies mid-stream cancels the
// backend stream.
func TestClientVanishes(t *testing.T) {
	cancelled := make(chan struct{})
	started := make(chan struct{})
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		close(started)
		<-ss.Context().Done()
		close(cancelled)
		return nil
	})
	addr, _ := startProxy(t, proxy.Options{Backend: backend})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecureCreds()))
	if err != nil {
		t.Fatal(err)
	}
	cs := rawStream(context.Background(), t, cc, "/t.S/Hang")
	b := []byte("x")
	_ = cs.SendMsg(&b)
	<-started
	_ = cc.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("backend stream still running after the client's connection closed")
	}
}

// TestBackendEndsWhileClientStreams: the backend answering early ends the
// call for the client with the backend's status, though it still sends.
func TestBackendEndsWhileClientStreams(t *testing.T) {
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		var b []byte
		_ = ss.RecvMsg(&b)
		return status.Error(codes.ResourceExhausted, "enough")
	})
	addr, _ := startProxy(t, proxy.Options{Backend: backend})
	cc := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs := rawStream(ctx, t, cc, "/t.S/Upload")
	b := []byte("chunk")
	for i := 0; i < 50; i++ {
		if cs.SendMsg(&b) != nil {
			break
		}
	}
	err := cs.RecvMsg(&b)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "enough" {
		t.Fatalf("got %v, want ResourceExhausted \"enough\"", err)
	}
}

// TestRouting: the longest matching prefix wins, else the default; with no
// match and no default the call fails naming the method.
func TestRouting(t *testing.T) {
	named := func(name string) grpc.StreamHandler {
		return func(_ any, ss grpc.ServerStream) error {
			var b []byte
			if err := ss.RecvMsg(&b); err != nil {
				return err
			}
			out := []byte(name)
			return ss.SendMsg(&out)
		}
	}
	a, b, c := rawBackend(t, named("a")), rawBackend(t, named("b")), rawBackend(t, named("c"))
	routes := []proxy.Route{{Prefix: "pkg.Svc", Backend: b}, {Prefix: "/pkg.Svc/Special", Backend: c}}

	addr, _ := startProxy(t, proxy.Options{Backend: a, Routes: routes})
	cc := dial(t, addr, nil)
	for method, want := range map[string]string{
		"/pkg.Svc/Plain":        "b",
		"/pkg.Svc/SpecialThing": "c",
		"/pkg.Svc2/Plain":       "a", // a service-name prefix does not match a longer name
		"/other.Svc/X":          "a",
	} {
		got, err := unaryRaw(context.Background(), cc, method, []byte("?"))
		if err != nil || string(got) != want {
			t.Errorf("%s went to %q (%v), want %q", method, got, err, want)
		}
	}

	addr2, _ := startProxy(t, proxy.Options{Routes: routes})
	cc2 := dial(t, addr2, nil)
	_, err := unaryRaw(context.Background(), cc2, "/other.Svc/X", []byte("?"))
	st := status.Convert(err)
	if st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "/other.Svc/X") || !strings.Contains(st.Message(), "no route") {
		t.Errorf("unrouted call: %v, want UNIMPLEMENTED naming the method and saying no route matches", err)
	}
}

func TestParseRoute(t *testing.T) {
	for in, want := range map[string]proxy.Route{
		"pkg.Svc=127.0.0.1:1":     {Prefix: "pkg.Svc", Backend: "127.0.0.1:1"},
		" /pkg.Svc/M = host:443 ": {Prefix: "/pkg.Svc/M", Backend: "host:443"},
		"a.B=[::1]:9000":          {Prefix: "a.B", Backend: "[::1]:9000"},
	} {
		got, err := proxy.ParseRoute(in)
		if err != nil || got != want {
			t.Errorf("ParseRoute(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "pkg.Svc", "=addr", "pkg.Svc=", "/=addr"} {
		if _, err := proxy.ParseRoute(bad); err == nil {
			t.Errorf("ParseRoute(%q) succeeded", bad)
		}
	}
}

// TestDeadBackend: a backend nobody listens on gives UNAVAILABLE quickly,
// naming the backend; the proxy keeps serving other backends.
func TestDeadBackend(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	_ = lis.Close()
	live := rawBackend(t, echoHandler)
	addr, _ := startProxy(t, proxy.Options{Backend: dead, Routes: []proxy.Route{{Prefix: "live.Svc", Backend: live}}})
	cc := dial(t, addr, nil)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = unaryRaw(ctx, cc, "/dead.Svc/M", []byte("x"))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), dead) {
		t.Fatalf("got %v, want UNAVAILABLE naming %s", err, dead)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to report a dead backend", d)
	}
	if got, err := unaryRaw(ctx, cc, "/live.Svc/M", []byte("still here")); err != nil || string(got) != "still here" {
		t.Errorf("live backend after a dead one: %q, %v", got, err)
	}
}

// TestBadConnections: garbage bytes and HTTP/1.1 on the gRPC port close
// only that connection; a non-gRPC content type gets HTTP 415; a stream in
// flight on another connection is unaffected throughout.
func TestBadConnections(t *testing.T) {
	backend := rawBackend(t, echoHandler)
	addr, _ := startProxy(t, proxy.Options{Backend: backend})
	cc := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	live := rawStream(ctx, t, cc, "/t.S/Live")
	ping := func(s string) {
		t.Helper()
		b := []byte(s)
		if err := live.SendMsg(&b); err != nil {
			t.Fatalf("live stream send after %s: %v", s, err)
		}
		if err := live.RecvMsg(&b); err != nil || string(b) != s {
			t.Fatalf("live stream after %s: %q, %v", s, b, err)
		}
	}
	ping("before")

	for name, payload := range map[string]string{
		"garbage":  "\x00\xff\x13 this is not http/2 at all \r\n\r\n",
		"http/1.1": "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte(payload))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: connection still open after 5s", name)
		}
		_ = conn.Close()
		ping("after " + name)
	}

	h2 := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, a)
		},
	}}
	defer h2.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/t.S/M", strings.NewReader("hello"))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("non-gRPC content type: HTTP %d, want 415", resp.StatusCode)
	}
	ping("after 415")
	_ = live.CloseSend()
}

// TestLargeMessages: the proxy's 64 MiB default lets a 20 MiB message
// through both ways where gRPC's own 4 MiB default would not.
func TestLargeMessages(t *testing.T) {
	const size = 20 << 20
	backend := rawBackend(t, echoHandler, grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	addr, _ := startProxy(t, proxy.Options{Backend: backend})
	cc := dial(t, addr, nil, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	body := bytes.Repeat([]byte{7}, size)
	got, err := unaryRaw(context.Background(), cc, "/t.S/Big", body)
	if err != nil || len(got) != size {
		t.Fatalf("20 MiB echo: len %d, %v", len(got), err)
	}

	small, _ := startProxy(t, proxy.Options{Backend: backend, MaxMsgSize: 1 << 20})
	_, err = unaryRaw(context.Background(), dial(t, small, nil), "/t.S/Big", bytes.Repeat([]byte{1}, 2<<20))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("2 MiB through a 1 MiB proxy: %v, want RESOURCE_EXHAUSTED", err)
	}
}
