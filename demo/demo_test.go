package demo_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	srv, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return cc
}

func TestEchoHeadersAndTrailers(t *testing.T) {
	c := demopb.NewDemoServiceClient(dial(t))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-trace", "abc", "other", "no")
	var hdr, trl metadata.MD
	resp, err := c.Echo(ctx, &demopb.EchoRequest{Message: "hi", Tags: []string{"a"}, Labels: map[string]string{"k": "v"}},
		grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetMessage() != "hi" || resp.GetLabels()["k"] != "v" || resp.GetReceivedAt() == nil {
		t.Errorf("resp = %v", resp)
	}
	if got := hdr.Get("x-trace"); len(got) != 1 || got[0] != "abc" {
		t.Errorf("header x-trace = %v", got)
	}
	if got := hdr.Get("other"); len(got) != 0 {
		t.Errorf("header other echoed: %v", got)
	}
	if len(trl.Get("x-echo-handled-at")) != 1 {
		t.Errorf("trailers = %v", trl)
	}
}

func TestEchoErrorWithDetails(t *testing.T) {
	c := demopb.NewDemoServiceClient(dial(t))
	var trl metadata.MD
	_, err := c.Echo(context.Background(), &demopb.EchoRequest{Fail: &demopb.FailWith{Code: int32(codes.FailedPrecondition), Message: "nope"}}, grpc.Trailer(&trl))
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "nope" {
		t.Fatalf("status = %v", st)
	}
	var info, bad bool
	for _, d := range st.Details() {
		switch d.(type) {
		case *errdetails.ErrorInfo:
			info = true
		case *errdetails.BadRequest:
			bad = true
		}
	}
	if !info || !bad {
		t.Errorf("details = %v", st.Details())
	}
	if len(trl.Get("x-echo-handled-at")) != 1 {
		t.Errorf("trailers on error = %v", trl)
	}
}

func TestEchoDelayHonoursDeadline(t *testing.T) {
	c := demopb.NewDemoServiceClient(dial(t))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Echo(ctx, &demopb.EchoRequest{Delay: durationpb.New(10 * time.Second)})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	if _, err := c.Echo(context.Background(), &demopb.EchoRequest{Delay: durationpb.New(50 * time.Millisecond)}); err != nil {
		t.Errorf("short delay: %v", err)
	}
}

func TestSum(t *testing.T) {
	c := demopb.NewDemoServiceClient(dial(t))
	st, err := c.Sum(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*demopb.SumRequest{
		{Value: &demopb.SumRequest_Integer{Integer: 2}},
		{Value: &demopb.SumRequest_Real{Real: 0.5}},
		{Value: &demopb.SumRequest_Integer{Integer: 40}},
	} {
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := st.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTotal() != 42.5 || resp.GetCount() != 3 {
		t.Errorf("resp = %v", resp)
	}
}

func TestCountdownIncrementalAndCancel(t *testing.T) {
	c := demopb.NewDemoServiceClient(dial(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.Countdown(ctx, &demopb.CountdownRequest{Count: 50, Interval: durationpb.New(50 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for want := int32(49); want >= 47; want-- {
		tick, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if tick.GetRemaining() != want {
			t.Fatalf("remaining = %d, want %d", tick.GetRemaining(), want)
		}
	}
	// Three ticks arrived long before all 50 could have been sent (2.5s).
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("first ticks took %v: not incremental", el)
	}
	cancel()
	for {
		_, err := st.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Canceled {
			t.Errorf("after cancel: %v", err)
		}
		break
	}
}

func TestCountdownCompletes(t *testing.T) {
	c := demopb.NewDemoServiceClient(dial(t))
	st, err := c.Countdown(context.Background(), &demopb.CountdownRequest{Count: 3, Interval: durationpb.New(time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("ticks = %d", n)
	}
}

func TestChatAnswersEachMessage(t *testing.T) {
	c := demopb.NewDemoServiceClient(dial(t))
	st, err := c.Chat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"one", "two", "three"} {
		if err := st.Send(&demopb.ChatMessage{Author: &demopb.Author{Name: "ann"}, Text: text}); err != nil {
			t.Fatal(err)
		}
		got, err := st.Recv() // answered before the next message is sent
		if err != nil {
			t.Fatal(err)
		}
		if want := "ann said: " + text; got.GetText() != want {
			t.Errorf("text = %q, want %q", got.GetText(), want)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after CloseSend: %v", err)
	}
}

func TestReflectionListsService(t *testing.T) {
	rc := rpb.NewServerReflectionClient(dial(t))
	st, err := rc.ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range resp.GetListServicesResponse().GetService() {
		if s.GetName() == "grpctap.demo.v1.DemoService" {
			found = true
		}
	}
	if !found {
		t.Errorf("services = %v", resp.GetListServicesResponse().GetService())
	}
	st.CloseSend()
}
