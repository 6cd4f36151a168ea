package replay

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// slowBidi answers each request 50ms after it arrives, reading requests on
// its own goroutine so it notes when each one really arrived.
type slowBidi struct {
	mu      sync.Mutex
	arrived []time.Time
	md      metadata.MD
}

func (s *slowBidi) handle(_ any, ss grpc.ServerStream) error {
	s.mu.Lock()
	s.md, _ = metadata.FromIncomingContext(ss.Context())
	s.mu.Unlock()
	reqs := make(chan []byte, 16)
	errc := make(chan error, 1)
	go func() {
		defer close(reqs)
		for {
			var m []byte
			if err := ss.RecvMsg(&m); err != nil {
				if !errors.Is(err, io.EOF) {
					errc <- err
				}
				return
			}
			s.mu.Lock()
			s.arrived = append(s.arrived, time.Now())
			s.mu.Unlock()
			reqs <- m
		}
	}()
	for b := range reqs {
		time.Sleep(50 * time.Millisecond)
		out := append([]byte("re:"), b...)
		if err := ss.SendMsg(&out); err != nil {
			return err
		}
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func serveRaw(t *testing.T, h grpc.StreamHandler) string {
	t.Helper()
	return stubserver.Serve(t, grpc.NewServer(grpc.UnknownServiceHandler(h), grpc.ForceServerCodecV2(rawcodec.Codec{})))
}

type endCounter struct {
	mu     sync.Mutex
	starts []*proxy.CallStart
	msgs   []string
}

func (e *endCounter) StartCall(cs *proxy.CallStart) proxy.CallObserver {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.starts = append(e.starts, cs)
	return e
}
func (e *endCounter) ResponseHeader(*proxy.Header) {}
func (e *endCounter) Message(m *proxy.Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.msgs = append(e.msgs, m.Direction.String()+":"+string(m.Bytes()))
}
func (e *endCounter) EndCall(*proxy.CallEnd) {}

func TestBidiRequestsWaitForPrecedingResponses(t *testing.T) {
	b := &slowBidi{}
	addr := serveRaw(t, b.handle)
	at := time.Now()
	c := &store.CallWithMessages{
		Call: store.Call{ID: 42, Method: "/t.S/Chat", Backend: addr,
			RequestHeaders: store.Metadata{"x-user": {"ann"}, "authorization": {headers.Redacted}, "te": {"trailers"},
				HeaderOrigin: {"x"}, "x-bin-bin": {store.EncodeBin([]byte{0, 1})}}, Redacted: []string{"authorization"}},
		Messages: []store.Message{
			{Seq: 1, Direction: store.DirRequest, Time: at, Raw: []byte("1")},
			{Seq: 2, Direction: store.DirResponse, Time: at, Raw: []byte("re:1")},
			{Seq: 3, Direction: store.DirRequest, Time: at, Raw: []byte("2")},
			{Seq: 4, Direction: store.DirRequest, Time: at, Raw: []byte("3")},
			{Seq: 5, Direction: store.DirResponse, Time: at, Raw: []byte("re:2")},
			{Seq: 6, Direction: store.DirResponse, Time: at, Raw: []byte("re:3")},
		},
	}
	obs := &endCounter{}
	r := New(Options{Observer: obs, Header: metadata.Pairs("Authorization", "Bearer new")})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := r.Send(ctx, c, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status.Code() != 0 || len(out.Responses) != 3 || out.Sent != 3 {
		t.Fatalf("outcome %v, %d responses, %d sent", out.Status, len(out.Responses), out.Sent)
	}
	b.mu.Lock()
	arrived, md := b.arrived, b.md
	b.mu.Unlock()
	if len(arrived) != 3 {
		t.Fatalf("%d requests arrived", len(arrived))
	}
	// Request 2 waits for response 1 (50ms); request 3 does not wait for
	// response 2, as recorded.
	if gap := arrived[1].Sub(arrived[0]); gap < 45*time.Millisecond {
		t.Errorf("request 2 came %v after request 1, before response 1", gap)
	}
	if gap := arrived[2].Sub(arrived[1]); gap > 40*time.Millisecond {
		t.Errorf("request 3 came %v after request 2; it should not wait", gap)
	}
	if md.Get("x-user")[0] != "ann" || md.Get("authorization")[0] != "Bearer new" || len(md.Get(HeaderOrigin)) != 0 || md.Get("x-bin-bin")[0] != "\x00\x01" {
		t.Errorf("backend got metadata %v", md)
	}
	if len(obs.starts) != 1 || obs.starts[0].Header.Get(HeaderReplayOf)[0] != "42" || obs.starts[0].Header.Get(HeaderOrigin)[0] != OriginReplay {
		t.Errorf("observer start %+v", obs.starts)
	}
	if len(obs.msgs) != 6 {
		t.Errorf("observer messages %v", obs.msgs)
	}
}

func TestTruncatedRequestIsNotReplayable(t *testing.T) {
	r := New(Options{Target: "127.0.0.1:1"})
	defer r.Close()
	c := &store.CallWithMessages{Call: store.Call{ID: 1, Method: "/t.S/M"}, Messages: []store.Message{
		{Seq: 1, Direction: store.DirRequest, Raw: []byte("ab"), Size: 10, Truncated: true}}}
	if _, err := r.Send(context.Background(), c, time.Second); !errors.Is(err, ErrNotReplayable) {
		t.Errorf("got %v", err)
	}
}
