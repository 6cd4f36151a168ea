// Package stubserver holds the gRPC test servers more than one package's
// tests need: a server on a loopback port stopped with the test, and a raw
// echo backend that needs no schema, which can count the calls it gets.
package stubserver

import (
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/grpctap/grpctap/internal/rawcodec"
)

// Serve serves srv on 127.0.0.1:0 until the test ends and returns its
// address.
func Serve(t testing.TB, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
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
