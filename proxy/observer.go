package proxy

import (
	"time"

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
// written), and message bytes are a copy made for the observers.
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
	// user-agent and :authority among them.
	Header metadata.MD
	// ContentType is the request's content-type, e.g. "application/grpc+json".
	ContentType string
	// Compression is the request's grpc-encoding; "" when uncompressed.
	Compression string
	// Deadline is the client's deadline; zero when it set none.
	Deadline time.Time
	Time     time.Time // when the call arrived
}

// Header is a set of response headers and when they arrived.
type Header struct {
	MD   metadata.MD
	Time time.Time
}

// Message is one message of a call.
type Message struct {
	// Seq numbers the messages of a call from 1 in the order the proxy saw
	// them, across both directions.
	Seq       int
	Direction Direction
	Time      time.Time
	// Data is the whole message, uncompressed; Size is its length.
	Data []byte
	Size int
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
