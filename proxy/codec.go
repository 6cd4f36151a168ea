package proxy

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// frame is one message's bytes as grpc-go handed them to us. Holding the
// BufferSlice (not a copy) lets the proxy pass a message on without copying.
type frame struct {
	data mem.BufferSlice
}

// rawCodec moves frames through grpc-go untouched. Its name is empty so that
// a call forced to use it keeps the client's own content-type: grpc-go sends
// "application/grpc" for an empty subtype, and CallContentSubtype sets any
// other one explicitly.
type rawCodec struct{}

var _ encoding.CodecV2 = rawCodec{}

// Marshal hands the frame's buffers to grpc-go, which frees them once sent.
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("grpctap: raw codec cannot marshal %T", v)
	}
	d := f.data
	f.data = nil
	return d, nil
}

// Unmarshal keeps a reference to the received buffers; grpc-go frees its own.
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("grpctap: raw codec cannot unmarshal into %T", v)
	}
	data.Ref()
	f.data = data
	return nil
}

func (rawCodec) Name() string { return "" }
