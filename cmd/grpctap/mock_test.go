package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/mock"
)

var mockListening = regexp.MustCompile(`grpctap mock listening.*addr=(127\.0\.0\.1:\d+)`)

// recordThenStop records the demo traffic and stops the backend.
func recordThenStop(t *testing.T) (string, recordedIDs) {
	t.Helper()
	backend := startDemo(t)
	db, ids := recordDemo(t, backend.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := backend.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return db, ids
}

func TestMockAnswersEveryRPCKindWithTheBackendStopped(t *testing.T) {
	db, ids := recordThenStop(t)
	m := start(t, "mock", "--db", db, "--listen", "127.0.0.1:0")
	addr := m.waitFor(t, mockListening)
	cl := demoClient(t, addr)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-trace", "t-1"), 10*time.Second)
	defer cancel()
	// The same calls as recorded get the recorded answers: headers,
	// trailers, status with details, and every message of every stream.
	driveDemo(t, ctx, cl)

	var hdr metadata.MD
	if _, err := cl.Echo(ctx, &demopb.EchoRequest{
		Message: "hello", Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_CURIOUS},
		Tags: []string{"a", "b"}, Labels: map[string]string{"k": "v"},
	}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get(mock.HeaderMatch); len(got) != 1 || got[0] != "exact; call="+itoa(ids.echo) {
		t.Errorf("%s = %v", mock.HeaderMatch, got)
	}
	// A request never recorded gets the most similar recorded answer.
	resp, err := cl.Echo(ctx, &demopb.EchoRequest{Message: "hello!", Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_CURIOUS},
		Tags: []string{"a", "b"}, Labels: map[string]string{"k": "v"}}, grpc.Header(&hdr))
	if err != nil || resp.GetMessage() != "hello" {
		t.Fatalf("similar Echo: %v, %v", resp, err)
	}
	if got := hdr.Get(mock.HeaderMatch); len(got) != 1 || !strings.HasPrefix(got[0], "similar; call="+itoa(ids.echo)+"; differing=1") {
		t.Errorf("similar: %s = %v", mock.HeaderMatch, got)
	}

	// A method never recorded is UNIMPLEMENTED.
	err = grpc.Invoke(ctx, "/grpctap.demo.v1.DemoService/Nope", &demopb.EchoRequest{}, &demopb.EchoResponse{}, grpcConn(t, addr))
	if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "/grpctap.demo.v1.DemoService/Echo") {
		t.Errorf("unknown method: %v", err)
	}
	if err := m.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.errOut.String(), "mock answered") || !strings.Contains(m.errOut.String(), "match=similar") {
		t.Errorf("log lacks match lines:\n%s", m.errOut)
	}
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestMockStrictMatchNotFound(t *testing.T) {
	db, ids := recordThenStop(t)
	m := start(t, "mock", "--db", db, "--listen", "127.0.0.1:0", "--match", "exact", "--timing")
	addr := m.waitFor(t, mockListening)
	cl := demoClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cl.Echo(ctx, &demopb.EchoRequest{Message: "never sent"})
	st := status.Convert(err)
	if st.Code() != codes.NotFound || !strings.Contains(st.Message(), "nearest: call ") {
		t.Fatalf("strict mock: %v", err)
	}
	if !strings.Contains(st.Message(), "call "+itoa(ids.echoFail)) && !strings.Contains(st.Message(), "call "+itoa(ids.echo)) {
		t.Errorf("nearest calls not named: %s", st.Message())
	}
}
