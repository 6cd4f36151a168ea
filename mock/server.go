package mock

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // answer gzip-compressing clients
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
)

// NewServer returns a grpc.Server that answers every method from the
// Mock. Extra options are appended.
func (m *Mock) NewServer(extra ...grpc.ServerOption) *grpc.Server {
	opts := append([]grpc.ServerOption{
		grpc.UnknownServiceHandler(m.handle),
		grpc.ForceServerCodecV2(rawCodec{}),
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
func (s serverStream) Send(b []byte) error             { return s.ss.SendMsg(&rawMsg{b: b}) }
func (s serverStream) Recv() ([]byte, error) {
	m := &rawMsg{}
	if err := s.ss.RecvMsg(m); err != nil {
		return nil, err
	}
	return m.b, nil
}

type rawMsg struct{ b []byte }

// rawCodec passes message bytes through; its empty name keeps the
// client's content subtype.
type rawCodec struct{}

var _ encoding.CodecV2 = rawCodec{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("mock: raw codec cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("mock: raw codec cannot unmarshal into %T", v)
	}
	m.b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "" }
