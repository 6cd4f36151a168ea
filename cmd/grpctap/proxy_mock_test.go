package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
)

// TestProxyCommandMockOnUnavailable: record a call through 'grpctap proxy', stop
// the backend, and the same proxy command with --mock-on-unavailable
// answers a client from the capture.
func TestProxyCommandMockOnUnavailable(t *testing.T) {
	db := filepath.Join(t.TempDir(), "cap.db")
	backend, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backendAddr := backend.Addr()
	req := &demopb.EchoRequest{Message: "while it was up", Tags: []string{"x"}}

	first := start(t, "proxy", "--listen", "127.0.0.1:0", "--backend", backendAddr, "--db", db, "--ui", "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want, err := demoClient(t, first.waitFor(t, listeningLine)).Echo(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := backend.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	second := start(t, "proxy", "--listen", "127.0.0.1:0", "--backend", backendAddr, "--db", db, "--mock-on-unavailable", "--ui", "")
	var hdr metadata.MD
	got, err := demoClient(t, second.waitFor(t, listeningLine)).Echo(ctx, req, grpc.Header(&hdr))
	if err != nil {
		t.Fatalf("Echo with the backend down: %v", err)
	}
	if got.GetMessage() != want.GetMessage() || !got.GetReceivedAt().AsTime().Equal(want.GetReceivedAt().AsTime()) {
		t.Errorf("mocked answer %v, want the recorded %v", got, want)
	}
	if len(hdr.Get("grpctap-mock-match")) == 0 {
		t.Errorf("mocked answer lacks the grpctap-mock-match header: %v", hdr)
	}
	if err := second.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
