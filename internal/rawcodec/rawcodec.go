// Package rawcodec is the gRPC codec grpctap's own clients and servers
// (replay, mock, the composer) use to send and receive message bytes as they
// are, without parsing them: the message value is a *[]byte.
//
// Its name is empty, so a call keeps the plain "application/grpc"
// content-type; a recorded subtype is set with grpc.CallContentSubtype.
// (The proxy has its own codec, which passes grpc-go's buffers on without a
// copy.)
package rawcodec

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// Codec carries *[]byte messages through grpc-go untouched.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Marshal sends the bytes v points to.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("grpctap raw codec cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

// Unmarshal copies the received message into the []byte v points to.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("grpctap raw codec cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

// Name is empty: see the package comment.
func (Codec) Name() string { return "" }

// Echo is a stream handler (grpc.UnknownServiceHandler) that sends each
// request message back as it came: the schemaless backend of benchmarks and
// tests. It needs a server forced to this codec.
func Echo(_ any, ss grpc.ServerStream) error {
	for {
		var b []byte
		if err := ss.RecvMsg(&b); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(&b); err != nil {
			return err
		}
	}
}
