package benchutil

import (
	"context"

	"google.golang.org/grpc"

	"github.com/grpctap/grpctap/internal/rawcodec"
)

// Methods of the echo backend; it answers any method alike.
const (
	EchoUnary  = "/bench.Echo/Unary"
	EchoStream = "/bench.Echo/Stream"
)

// NewEchoServer returns a gRPC server that answers every method by sending
// each request message back as it came, as raw bytes (no proto work skews
// the figures).
func NewEchoServer() *grpc.Server {
	return grpc.NewServer(grpc.UnknownServiceHandler(rawcodec.Echo), grpc.ForceServerCodecV2(rawcodec.Codec{}))
}

// Unary sends payload to the echo backend (through cc) in one unary call.
func Unary(ctx context.Context, cc *grpc.ClientConn, payload []byte) error {
	var resp []byte
	return cc.Invoke(ctx, EchoUnary, &payload, &resp, grpc.ForceCodecV2(rawcodec.Codec{}))
}

// OpenStream opens a bidi stream to the echo backend through cc.
func OpenStream(ctx context.Context, cc *grpc.ClientConn) (grpc.ClientStream, error) {
	return cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, EchoStream, grpc.ForceCodecV2(rawcodec.Codec{}))
}
