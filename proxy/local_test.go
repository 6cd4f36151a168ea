package proxy_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/proxy"
)

// TestOpenTalksToAStream: a local call is a conversation: each message
// sent comes back before the next is sent, the half-close ends the
// call, and observers see it as any call, labels and Recorded included.
func TestOpenTalksToAStream(t *testing.T) {
	backend := rawBackend(t, func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if len(md.Get(proxy.InternalHeaderPrefix+"origin")) != 0 {
			return status.Error(codes.FailedPrecondition, "the backend got grpctap's label")
		}
		_ = ss.SendHeader(metadata.Pairs("x-seen", strings.Join(md.Get("x-trace"), ",")))
		ss.SetTrailer(metadata.Pairs("x-bye", "1"))
		return echoHandler(nil, ss)
	})
	log := newEventLog()
	p, err := proxy.New(proxy.Options{Backend: backend, Observer: log})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var recordedAs int64 = -1
	c := p.Open(ctx, proxy.LocalOptions{Method: "/t.S/Chat",
		Header:   metadata.Pairs("x-trace", "t1", proxy.InternalHeaderPrefix+"origin", "composer"),
		Recorded: func(id int64) { recordedAs = id }})
	for _, msg := range []string{"one", "two"} {
		if err := c.Send([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, err := c.Recv()
		if err != nil || string(got) != msg {
			t.Fatalf("after sending %q: got %q, %v", msg, got, err)
		}
	}
	if h := c.Header(); len(h.Get("x-seen")) != 1 || h.Get("x-seen")[0] != "t1" {
		t.Errorf("header %v", h)
	}
	c.CloseSend()
	if _, err := c.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the half-close: %v, want io.EOF", err)
	}
	<-c.Done()
	if st := c.Status(); st.Code() != codes.OK {
		t.Errorf("status %v", st)
	}
	if tr := c.Trailer(); len(tr.Get("x-bye")) != 1 {
		t.Errorf("trailer %v", tr)
	}
	events := log.wait(t, 1)
	if got := strings.Join(events, "|"); got != "start /t.S/Chat|1 request 3|header|2 response 3|3 request 3|4 response 3|end OK" {
		t.Errorf("observed %s", got)
	}
	start := log.starts[0]
	if v := start.Header.Get(proxy.InternalHeaderPrefix + "origin"); len(v) != 1 || start.Recorded == nil {
		t.Errorf("start: label %v, Recorded set %v", v, start.Recorded != nil)
	}
	start.Recorded(7)
	if recordedAs != 7 {
		t.Errorf("Recorded did not reach the caller: %d", recordedAs)
	}
}

// TestOpenCancelAndOtherBackend: a local call to a backend no route names
// goes there; cancelling it ends it as CANCELLED for observers, and Recv
// says so.
func TestOpenCancelAndOtherBackend(t *testing.T) {
	routed := rawBackend(t, func(_ any, ss grpc.ServerStream) error { return status.Error(codes.Internal, "wrong backend") })
	other := rawBackend(t, echoHandler)
	log := newEventLog()
	p, err := proxy.New(proxy.Options{Backend: routed, Observer: log})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := p.Open(ctx, proxy.LocalOptions{Method: "/t.S/Chat", Backend: other})
	if err := c.Send([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Recv(); err != nil || string(got) != "hi" {
		t.Fatalf("got %q, %v", got, err)
	}
	c.Cancel()
	if _, err := c.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("after Cancel: %v", err)
	}
	log.wait(t, 1)
	if b := log.starts[0].Backend; b != other {
		t.Errorf("observed backend %s, want %s", b, other)
	}
	if got := log.ends[0].Status.Code(); got != codes.Canceled {
		t.Errorf("observed end %v", got)
	}
	if err := c.Send([]byte("late")); !errors.Is(err, io.EOF) {
		t.Errorf("send after the end: %v", err)
	}
}
