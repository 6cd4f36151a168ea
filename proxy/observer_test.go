package proxy_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
)

// TestObserverEventSequence checks the exact events an Observer sees for
// each RPC kind, with the sizes of the messages the client really sent and
// received.
func TestObserverEventSequence(t *testing.T) {
	backendSrv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(backendSrv, interop.NewTestServer())
	backend := stubserver.Serve(t, backendSrv)
	size := func(m proto.Message) int { return proto.Size(m) }
	payload := func(n int) *testgrpc.Payload { return &testgrpc.Payload{Body: make([]byte, n)} }

	cases := []struct {
		name   string
		method string
		run    func(ctx context.Context, tc testgrpc.TestServiceClient) ([]string, error)
	}{
		{"unary", "/grpc.testing.TestService/UnaryCall", func(ctx context.Context, tc testgrpc.TestServiceClient) ([]string, error) {
			req := &testgrpc.SimpleRequest{ResponseSize: 300, Payload: payload(100)}
			resp, err := tc.UnaryCall(ctx, req)
			if err != nil {
				return nil, err
			}
			return []string{fmt.Sprintf("1 request %d", size(req)), "header", fmt.Sprintf("2 response %d", size(resp))}, nil
		}},
		{"client streaming", "/grpc.testing.TestService/StreamingInputCall", func(ctx context.Context, tc testgrpc.TestServiceClient) ([]string, error) {
			s, err := tc.StreamingInputCall(ctx)
			if err != nil {
				return nil, err
			}
			var want []string
			for i, n := range []int{10, 2000, 0, 70000} {
				req := &testgrpc.StreamingInputCallRequest{Payload: payload(n)}
				if err := s.Send(req); err != nil {
					return nil, err
				}
				want = append(want, fmt.Sprintf("%d request %d", i+1, size(req)))
			}
			resp, err := s.CloseAndRecv()
			if err != nil {
				return nil, err
			}
			return append(want, "header", fmt.Sprintf("5 response %d", size(resp))), nil
		}},
		{"server streaming", "/grpc.testing.TestService/StreamingOutputCall", func(ctx context.Context, tc testgrpc.TestServiceClient) ([]string, error) {
			req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 5}, {Size: 50000}, {Size: 1}}}
			s, err := tc.StreamingOutputCall(ctx, req)
			if err != nil {
				return nil, err
			}
			want := []string{fmt.Sprintf("1 request %d", size(req)), "header"}
			for i := 2; ; i++ {
				resp, err := s.Recv()
				if err == io.EOF {
					return want, nil
				}
				if err != nil {
					return nil, err
				}
				want = append(want, fmt.Sprintf("%d response %d", i, size(resp)))
			}
		}},
		{"bidi ping-pong", "/grpc.testing.TestService/FullDuplexCall", func(ctx context.Context, tc testgrpc.TestServiceClient) ([]string, error) {
			s, err := tc.FullDuplexCall(ctx)
			if err != nil {
				return nil, err
			}
			var want []string
			seq := 0
			for i, n := range []int32{31, 9000, 4} {
				req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: n}}, Payload: payload(int(n) / 2)}
				if err := s.Send(req); err != nil {
					return nil, err
				}
				seq++
				want = append(want, fmt.Sprintf("%d request %d", seq, size(req)))
				resp, err := s.Recv()
				if err != nil {
					return nil, err
				}
				if i == 0 {
					want = append(want, "header")
				}
				seq++
				want = append(want, fmt.Sprintf("%d response %d", seq, size(resp)))
			}
			if err := s.CloseSend(); err != nil {
				return nil, err
			}
			if _, err := s.Recv(); err != io.EOF {
				return nil, fmt.Errorf("after CloseSend: %v", err)
			}
			return want, nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			log := newEventLog()
			addr, _ := startProxy(t, proxy.Options{Backend: backend, Observer: log})
			tc := testgrpc.NewTestServiceClient(dial(t, addr, nil))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "x-user", "u1")
			mid, err := c.run(ctx, tc)
			if err != nil {
				t.Fatal(err)
			}
			want := append(append([]string{"start " + c.method}, mid...), "end OK")
			if diff := cmp.Diff(want, log.wait(t, 1)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			s := log.starts[0]
			if s.Backend != backend || s.Protocol != proxy.ProtocolGRPC || s.Peer == "" || s.Authority == "" ||
				s.ContentType != "application/grpc" || s.Deadline.IsZero() || s.Time.IsZero() {
				t.Errorf("start event incomplete: %+v", s)
			}
			if got := s.Header.Get("x-user"); len(got) != 1 || got[0] != "u1" {
				t.Errorf("start headers lack x-user: %v", s.Header)
			}
			e := log.ends[0]
			if e.Duration <= 0 || e.Time.Before(s.Time) {
				t.Errorf("end event times: %+v", e)
			}
			for i, m := range log.msgs {
				if len(m.Data) != m.Size || m.Time.Before(s.Time) || m.Time.After(e.Time) {
					t.Errorf("message %d: size %d, data %d, time %v", i, m.Size, len(m.Data), m.Time)
				}
			}
		})
	}
}

// TestObserverSeesCompressionAndRawBytes: the observer gets the request's
// encoding and the message bytes uncompressed, exactly as the client sent.
func TestObserverSeesCompressionAndRawBytes(t *testing.T) {
	backend := rawBackend(t, echoHandler)
	log := newEventLog()
	addr, _ := startProxy(t, proxy.Options{Backend: backend, Observer: log})
	body := []byte("compress me compress me compress me compress me")
	if _, err := unaryRaw(context.Background(), dial(t, addr, nil), "/t.S/Z", body, grpc.UseCompressor("gzip")); err != nil {
		t.Fatal(err)
	}
	log.wait(t, 1)
	if c := log.starts[0].Compression; c != "gzip" {
		t.Errorf("compression = %q, want gzip", c)
	}
	for _, m := range log.msgs {
		if string(m.Data) != string(body) {
			t.Errorf("%s message = %q, want the uncompressed body", m.Direction, m.Data)
		}
	}
}

// TestObserverSeesClientSideFailure: a request over the size limit ends
// the call, for the client and the observer alike, with RESOURCE_EXHAUSTED.
func TestObserverSeesClientSideFailure(t *testing.T) {
	backend := rawBackend(t, echoHandler)
	log := newEventLog()
	addr, _ := startProxy(t, proxy.Options{Backend: backend, Observer: log, MaxMsgSize: 1024})
	cc := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs := rawStream(ctx, t, cc, "/t.S/TooBig")
	big := make([]byte, 4096)
	_ = cs.SendMsg(&big)
	var b []byte
	if err := cs.RecvMsg(&b); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("client got %v, want RESOURCE_EXHAUSTED", err)
	}
	log.wait(t, 1)
	if got := log.ends[0].Status.Code(); got != codes.ResourceExhausted {
		t.Errorf("observer saw %v, want RESOURCE_EXHAUSTED", got)
	}
}

// TestTee: every observer behind a Tee sees the same events.
func TestTee(t *testing.T) {
	backend := rawBackend(t, echoHandler)
	a, b := newEventLog(), newEventLog()
	addr, _ := startProxy(t, proxy.Options{Backend: backend, Observer: proxy.Tee(nil, a, b)})
	if _, err := unaryRaw(context.Background(), dial(t, addr, nil), "/t.S/Tee", []byte("x")); err != nil {
		t.Fatal(err)
	}
	ea, eb := a.wait(t, 1), b.wait(t, 1)
	if diff := cmp.Diff(ea, eb); diff != "" || len(ea) != 5 {
		t.Errorf("tee'd observers differ or are incomplete (%d events): %s", len(ea), diff)
	}
}
