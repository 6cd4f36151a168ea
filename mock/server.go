package mock

import (
	"context"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // answer gzip-compressing clients
	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/internal/rawcodec"
)

// NewServer returns a grpc.Server that answers every method from the
// Mock. Extra options are appended.
func (m *Mock) NewServer(extra ...grpc.ServerOption) *grpc.Server {
	opts := append([]grpc.ServerOption{
		grpc.UnknownServiceHandler(m.handle),
		grpc.ForceServerCodecV2(rawcodec.Codec{}),
		grpc.MaxRecvMsgSize(64 << 20),
		grpc.MaxSendMsgSize(64 << 20),
	}, extra...)
	return grpc.NewServer(opts...)
}

func (m *Mock) handle(_ any, ss grpc.ServerStream) error {
	fullMethod, _ := grpc.MethodFromServerStream(ss)
	md, _ := metadata.FromIncomingContext(ss.Context())
	authority := ""
	if v := md.Get(":authority"); len(v) > 0 {
		authority = v[0]
	}
	return m.Serve(serverStream{ss}, fullMethod, authority)
}

// serverStream adapts a grpc.ServerStream to Stream.
type serverStream struct{ ss grpc.ServerStream }

func (s serverStream) Context() context.Context        { return s.ss.Context() }
func (s serverStream) SendHeader(md metadata.MD) error { return s.ss.SendHeader(md) }
func (s serverStream) SetTrailer(md metadata.MD)       { s.ss.SetTrailer(md) }
func (s serverStream) Send(b []byte) error             { return s.ss.SendMsg(&b) }
func (s serverStream) Recv() ([]byte, error) {
	var b []byte
	if err := s.ss.RecvMsg(&b); err != nil {
		return nil, err
	}
	return b, nil
}
