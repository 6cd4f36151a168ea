package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// rawBackend starts a backend whose every method is handled by h.
func rawBackend(t testing.TB, h grpc.StreamHandler, opts ...grpc.ServerOption) string {
	t.Helper()
	opts = append([]grpc.ServerOption{
		grpc.UnknownServiceHandler(h),
		grpc.ForceServerCodecV2(rawcodec.Codec{}),
	}, opts...)
	return stubserver.Serve(t, grpc.NewServer(opts...))
}

// startProxy starts a proxy with opts and returns its address.
func startProxy(t testing.TB, opts proxy.Options, srvOpts ...grpc.ServerOption) (string, *proxy.Proxy) {
	t.Helper()
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr := stubserver.Serve(t, p.NewServer(srvOpts...))
	t.Cleanup(func() { _ = p.Close() })
	return addr, p
}

// dial connects a client to addr; tlsCfg nil means h2c.
func dial(t testing.TB, addr string, tlsCfg *tls.Config, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// rawStream opens a bidi stream for method on cc with the bytes codec.
func rawStream(ctx context.Context, t testing.TB, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) grpc.ClientStream {
	t.Helper()
	opts = append([]grpc.CallOption{grpc.ForceCodecV2(rawcodec.Codec{})}, opts...)
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// unaryRaw makes one unary call with raw bytes.
func unaryRaw(ctx context.Context, cc *grpc.ClientConn, method string, req []byte, opts ...grpc.CallOption) ([]byte, error) {
	var resp []byte
	opts = append([]grpc.CallOption{grpc.ForceCodecV2(rawcodec.Codec{})}, opts...)
	err := cc.Invoke(ctx, method, &req, &resp, opts...)
	return resp, err
}

// echoHandler answers every request message with the same bytes.
func echoHandler(_ any, ss grpc.ServerStream) error {
	for {
		var b []byte
		if err := ss.RecvMsg(&b); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(&b); err != nil {
			return err
		}
	}
}

// eventLog is an Observer that writes down every event as a line.
type eventLog struct {
	mu     sync.Mutex
	events []string
	starts []*proxy.CallStart
	msgs   []loggedMessage
	ends   []*proxy.CallEnd
	hdrs   []*proxy.Header
	done   chan struct{} // gets a value per ended call
}

func newEventLog() *eventLog { return &eventLog{done: make(chan struct{}, 1024)} }

func (l *eventLog) StartCall(s *proxy.CallStart) proxy.CallObserver {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, "start "+s.Method)
	l.starts = append(l.starts, s)
	return &callLog{l: l}
}

type callLog struct{ l *eventLog }

func (c *callLog) ResponseHeader(h *proxy.Header) {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.l.events = append(c.l.events, "header")
	c.l.hdrs = append(c.l.hdrs, h)
}

func (c *callLog) Message(m *proxy.Message) {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.l.events = append(c.l.events, fmt.Sprintf("%d %s %d", m.Seq, m.Direction, m.Size))
	c.l.msgs = append(c.l.msgs, loggedMessage{Seq: m.Seq, Direction: m.Direction, Time: m.Time, Size: m.Size, Data: m.Bytes()})
}

// loggedMessage is what an eventLog keeps of a message: a *proxy.Message
// is only valid during the Message call.
type loggedMessage struct {
	Seq       int
	Direction proxy.Direction
	Time      time.Time
	Size      int
	Data      []byte
}

func (c *callLog) EndCall(e *proxy.CallEnd) {
	c.l.mu.Lock()
	c.l.events = append(c.l.events, "end "+e.Status.Code().String())
	c.l.ends = append(c.l.ends, e)
	c.l.mu.Unlock()
	c.l.done <- struct{}{}
}

// wait blocks until n calls have ended, or fails the test after 5s.
func (l *eventLog) wait(t testing.TB, n int) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-l.done:
		case <-deadline:
			t.Fatalf("only %d of %d calls ended; events: %q", i, n, l.snapshot())
		}
	}
	return l.snapshot()
}

func (l *eventLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }
