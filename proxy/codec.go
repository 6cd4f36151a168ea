package proxy

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
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
// A proto.Message (from the handlers of Options.Own) is marshalled.
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch v := v.(type) {
	case *frame:
		d := v.data
		v.data = nil
		return d, nil
	case proto.Message:
		b, err := proto.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("grpctap: marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, fmt.Errorf("grpctap: raw codec cannot marshal %T", v)
}

// Unmarshal keeps a reference to the received buffers; grpc-go frees its
// own. A proto.Message (from the handlers of Options.Own) is unmarshalled.
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch v := v.(type) {
	case *frame:
		data.Ref()
		v.data = data
		return nil
	case proto.Message:
		if err := proto.Unmarshal(data.Materialize(), v); err != nil {
			return fmt.Errorf("grpctap: unmarshal %T: %w", v, err)
		}
		return nil
	}
	return fmt.Errorf("grpctap: raw codec cannot unmarshal into %T", v)
}

func (rawCodec) Name() string { return "" }
