// Package stubserver is the home of the test helpers more than one
// package's tests need: a gRPC server on a loopback port stopped with the
// test (or earlier), a raw echo backend that needs no schema, which can
// count the calls it gets, a loopback address nobody listens on, a bounded
// wait on a condition (tests wait on what they need, never for a fixed
// time), and where to find grpcurl. Messages as bytes go through
// internal/rawcodec.
package stubserver

import (
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/grpctap/grpctap/internal/rawcodec"
)

// Serve serves srv on 127.0.0.1:0 until the test ends and returns its
// address.
func Serve(t testing.TB, srv *grpc.Server) string {
	t.Helper()
	addr, _ := Start(t, srv)
	return addr
}

// Start is Serve, and stop, which stops srv (cancelling its calls) and
// waits for it, for a test that needs the server gone before it ends; it
// may be called more than once, and runs when the test ends anyway.
func Start(t testing.TB, srv *grpc.Server) (addr string, stop func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	var once sync.Once
	stop = func() { once.Do(func() { srv.Stop(); <-done }) }
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

// DeadAddr is a loopback address nobody listens on (it did a moment ago).
func DeadAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// WaitFor calls check every 20 ms until it returns nil, and fails the test
// with check's last error (what is still missing) when that takes longer
// than within.
func WaitFor(t testing.TB, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RawEcho starts a backend that answers every method of every service by
// sending each request message back, byte for byte, messages up to 64 MiB.
func RawEcho(t testing.TB) string {
	t.Helper()
	addr, _ := CountedRawEcho(t)
	return addr
}

// CountedRawEcho is RawEcho, and the number of calls that reached it so
// far (reflection requests included).
func CountedRawEcho(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	return Serve(t, grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}),
		grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20),
		grpc.UnknownServiceHandler(func(srv any, ss grpc.ServerStream) error {
			calls.Add(1)
			return rawcodec.Echo(srv, ss)
		}))), &calls
}

// Grpcurl finds the grpcurl binary on PATH or in $(go env GOPATH)/bin,
// where scripts/setup installs it. Without it the test is skipped, except
// in CI (CI=true), where it fails.
func Grpcurl(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	p := filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin", "grpcurl")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	msg := "grpcurl is not installed (on PATH or in $(go env GOPATH)/bin): run bash scripts/setup"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
