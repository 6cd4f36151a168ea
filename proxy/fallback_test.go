package proxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/proxy"
)

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestFallbackAnswersWhenTheBackendIsDown(t *testing.T) {
	var gotCause error
	fb := proxy.FallbackFunc(func(s *proxy.FallbackStream, cause error) error {
		gotCause = cause
		if s.Method != "/t.S/Stream" || s.Authority == "" || len(s.Header.Get("x-client")) != 1 {
			return status.Errorf(codes.Internal, "fallback got method %q authority %q header %v", s.Method, s.Authority, s.Header)
		}
		var reqs [][]byte
		for {
			b, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			reqs = append(reqs, b)
		}
		if err := s.SendHeader(metadata.Pairs("x-h", "1")); err != nil {
			return err
		}
		for _, r := range reqs {
			if err := s.Send(append([]byte("re:"), r...)); err != nil {
				return err
			}
		}
		s.SetTrailer(metadata.Pairs("x-t", "2"))
		return status.Error(codes.NotFound, "from the fallback")
	})
	obs := newEventLog()
	backend := deadAddr(t)
	addr, _ := startProxy(t, proxy.Options{Backend: backend, Observer: obs, Fallback: fb, Logger: quietLogger()})
	cc := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-client", "c"), 10*time.Second)
	defer cancel()
	cs := rawStream(ctx, t, cc, "/t.S/Stream")
	for _, m := range []string{"a", "b"} {
		b := []byte(m)
		if err := cs.SendMsg(&b); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	hdr, err := cs.Header()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Get("x-h")[0] != "1" || hdr.Get(proxy.HeaderFallback)[0] != backend {
		t.Errorf("headers %v", hdr)
	}
	var got []string
	for {
		var b []byte
		err := cs.RecvMsg(&b)
		if err != nil {
			if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "from the fallback" {
				t.Errorf("status %v", err)
			}
			break
		}
		got = append(got, string(b))
	}
	if strings.Join(got, ",") != "re:a,re:b" {
		t.Errorf("responses %q", got)
	}
	if cs.Trailer().Get("x-t")[0] != "2" {
		t.Errorf("trailers %v", cs.Trailer())
	}
	if status.Code(gotCause) != codes.Unavailable {
		t.Errorf("cause %v", gotCause)
	}
	events := obs.wait(t, 1)
	want := "start /t.S/Stream|1 request 1|2 request 1|header|3 response 4|4 response 4|end NotFound"
	if strings.Join(events, "|") != want {
		t.Errorf("observer saw %q, want %q", strings.Join(events, "|"), want)
	}
}

func TestFallbackWithoutHeadersMarksTheTrailer(t *testing.T) {
	backend := deadAddr(t)
	fb := proxy.FallbackFunc(func(*proxy.FallbackStream, error) error {
		return status.Error(codes.Unimplemented, "nothing recorded")
	})
	addr, _ := startProxy(t, proxy.Options{Backend: backend, Fallback: fb, Logger: quietLogger()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tr metadata.MD
	_, err := unaryRaw(ctx, dial(t, addr, nil), "/t.S/U", []byte("x"), grpc.Trailer(&tr))
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("got %v", err)
	}
	if v := tr.Get(proxy.HeaderFallback); len(v) != 1 || v[0] != backend {
		t.Errorf("trailers %v", tr)
	}
}

func TestNoFallbackWhenTheBackendIsUp(t *testing.T) {
	backend := rawBackend(t, echoHandler)
	called := false
	fb := proxy.FallbackFunc(func(*proxy.FallbackStream, error) error { called = true; return nil })
	addr, _ := startProxy(t, proxy.Options{Backend: backend, Fallback: fb, Logger: quietLogger()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := unaryRaw(ctx, dial(t, addr, nil), "/t.S/U", []byte("x"))
	if err != nil || string(resp) != "x" || called {
		t.Fatalf("got %q, %v (fallback called: %v)", resp, err, called)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
