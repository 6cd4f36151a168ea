package proxy

import (
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Protocol names the wire protocol a call arrived with.
const (
	ProtocolGRPC        = "grpc"          // native gRPC over HTTP/2
	ProtocolGRPCWeb     = "grpc-web"      // gRPC-Web, binary
	ProtocolGRPCWebText = "grpc-web-text" // gRPC-Web, base64 text
)

// Direction says which way a message travelled.
type Direction uint8

const (
	// Request is a message from the client to the backend.
	Request Direction = iota + 1
	// Response is a message from the backend to the client.
	Response
)

// String returns "request" or "response".
func (d Direction) String() string {
	switch d {
	case Request:
		return "request"
	case Response:
		return "response"
	}
	return "unknown"
}

// Observer sees every call that passes through the proxy.
//
// StartCall is called once per call, before anything is forwarded, on the
// call's own goroutine. It returns the CallObserver that receives the rest of
// the call's events, or nil to ignore the call.
//
// Observers run on the forwarding path and must return quickly: they may
// copy, queue or drop, never wait on I/O or locks held across I/O.
type Observer interface {
	StartCall(start *CallStart) CallObserver
}

// CallObserver receives the events of one call. The proxy serialises the
// calls it makes to one CallObserver (the two directions of a stream never
// call it at the same time) and EndCall is always the last of them: nothing
// is reported after it. The values passed are the observer's to keep but
// read-only: the metadata maps are also read by the forwarding path (never
// written). A Message itself is only valid until Message returns: keep
// its Bytes (a copy) or its Retain'd payload, not the *Message.
type CallObserver interface {
	// ResponseHeader reports the backend's response headers, at most once,
	// when the backend sends them (a trailers-only response has none).
	ResponseHeader(h *Header)
	// Message reports one message, uncompressed, before it is forwarded.
	Message(m *Message)
	// EndCall reports how the call ended.
	EndCall(e *CallEnd)
}

// CallStart describes a call as the proxy received it.
type CallStart struct {
	Method    string // full method, "/pkg.Service/Method"
	Backend   string // address the call is routed to; "" when no route matched
	Authority string // the client's :authority
	Peer      string // the client's address
	Protocol  string // ProtocolGRPC, ProtocolGRPCWeb or ProtocolGRPCWebText
	// Header holds the request headers as received, with content-type,
	// user-agent and :authority among them; through a bridge, content-type
	// is the one the client sent (WithClientContentType).
	Header metadata.MD
	// ContentType is the request's content-type as forwarded, which says
	// how the messages are encoded, e.g. "application/grpc+json".
	ContentType string
	// Compression is the request's grpc-encoding; "" when uncompressed.
	Compression string
	// Deadline is the client's deadline; zero when it set none.
	Deadline time.Time
	Time     time.Time // when the call arrived
	// Recorded, when not nil, is how grpctap's own in-process calls
	// (LocalOptions.Recorded) learn the id of their recording: an observer
	// that stores calls calls it once, from any goroutine, with the call's
	// id once its start is stored, or with 0 when the call is not stored.
	// Observers that store nothing ignore it.
	Recorded func(id int64)
}

// Header is a set of response headers and when they arrived.
type Header struct {
	MD   metadata.MD
	Time time.Time
}

// Message is one message of a call. Its bytes are read with Bytes, a copy
// the observer may keep, or Retain, the proxy's own buffers without a copy,
// kept from reuse until the observer releases them.
type Message struct {
	// Seq numbers the messages of a call from 1 in the order the proxy saw
	// them, across both directions.
	Seq       int
	Direction Direction
	Time      time.Time
	// Size is the message's length in bytes, uncompressed.
	Size int

	// A message has data (NewMessage) or bufs (the proxy), never both.
	data   []byte
	bufs   mem.BufferSlice // valid until Message returns
	copied []byte          // Bytes' copy of bufs
}

// NewMessage returns a message holding data (not copied), for code that
// reports messages to an observer from a byte slice rather than through
// the proxy (tests, replays).
func NewMessage(seq int, dir Direction, t time.Time, data []byte) *Message {
	return &Message{Seq: seq, Direction: dir, Time: t, Size: len(data), data: data}
}

// Bytes returns the whole message, uncompressed, as one slice the observer
// may keep. From the proxy it is a copy, made on the first call and shared
// with later calls (observers behind a Tee get the same slice), so it must
// not be modified.
func (m *Message) Bytes() []byte {
	switch {
	case m.data != nil:
		return m.data
	case m.copied == nil:
		m.copied = m.bufs.Materialize()
	}
	return m.copied
}

// Prefix returns a copy of the message's first n bytes (all of them when
// it is shorter), without copying the rest.
func (m *Message) Prefix(n int) []byte {
	if m.bufs == nil {
		b := m.Bytes()
		return append([]byte(nil), b[:min(n, len(b))]...)
	}
	out := make([]byte, 0, min(n, m.Size))
	for _, buf := range m.bufs {
		if len(out) == n {
			break
		}
		d := buf.ReadOnlyData()
		out = append(out, d[:min(len(d), n-len(out))]...)
	}
	return out
}

// Retain returns the message's bytes without copying them. The proxy does
// not reuse their memory until the observer calls Release on the result,
// exactly once; an observer that keeps messages for a while (the recorder
// keeps them until they are written) saves a copy of each this way.
func (m *Message) Retain() *Payload {
	if m.bufs == nil {
		return &Payload{flat: m.Bytes()}
	}
	m.bufs.Ref()
	return &Payload{bufs: m.bufs}
}

// Payload is a message's bytes retained by an observer (Message.Retain).
// Its methods must not be called after Release.
type Payload struct {
	bufs mem.BufferSlice
	flat []byte
}

// Len returns the payload's length in bytes.
func (p *Payload) Len() int {
	if p.bufs != nil {
		return p.bufs.Len()
	}
	return len(p.flat)
}

// Bytes returns the payload as one slice, valid until Release: the
// buffer itself when the message came in one piece, else a copy made on
// the first call.
func (p *Payload) Bytes() []byte {
	if p.flat == nil {
		if len(p.bufs) == 1 {
			p.flat = p.bufs[0].ReadOnlyData()
		} else {
			p.flat = p.bufs.Materialize()
		}
	}
	return p.flat
}

// Release gives the payload's buffers back to the proxy.
func (p *Payload) Release() {
	if p.bufs != nil {
		p.bufs.Free()
		p.bufs = nil
	}
	p.flat = nil
}

// CallEnd says how a call ended.
type CallEnd struct {
	// Status is the status the client got, with its details.
	Status *status.Status
	// Trailer holds the trailers the client got (grpc-status-details-bin
	// among them when the backend sent it).
	Trailer metadata.MD
	Time    time.Time
	// Duration is the time from CallStart.Time to the end of the call.
	Duration time.Duration
}
