package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/grpctap/grpctap/internal/headers"
)

// Metadata is a set of headers or trailers: key → values. Keys ending in
// "-bin" hold binary values; in JSON they are base64 (standard alphabet,
// unpadded) as on the wire.
type Metadata map[string][]string

// Call is one recorded call as grpctap shows it. Its JSON form is the
// documented, stable schema of `grpctap calls --json`; see docs/capture.md.
type Call struct {
	ID      int64  `json:"id"`
	Method  string `json:"method"`  // "/pkg.Service/Method"
	Service string `json:"service"` // "pkg.Service"
	// RPC is the kind of RPC: "unary", "client_streaming",
	// "server_streaming" or "bidi_streaming". Without descriptors it is
	// guessed from the message counts; RPCFromSchema is false then and the
	// decoder may overwrite it.
	RPC           string     `json:"rpc"`
	RPCFromSchema bool       `json:"-"`
	Protocol      string     `json:"protocol"` // "grpc", "grpc-web" or "grpc-web-text"
	Backend       string     `json:"backend"`
	Authority     string     `json:"authority"`
	Peer          string     `json:"peer"`
	Start         time.Time  `json:"start"`
	End           *time.Time `json:"end"`         // null while the call is open
	DurationMS    *float64   `json:"duration_ms"` // null while the call is open
	State         string     `json:"state"`       // "open" or "closed"
	Status        *Status    `json:"status"`      // null while the call is open

	RequestHeaders  Metadata `json:"request_headers"`
	ResponseHeaders Metadata `json:"response_headers"`
	Trailers        Metadata `json:"trailers"`
	// Redacted names the headers (in any of the three above) whose values
	// the recorder stored as "[redacted]" rather than as received, sorted;
	// [] when none. A value "[redacted]" of a header not named here is the
	// value that was sent. Calls of captures from before this list read
	// it from the values (keys whose values are all "[redacted]").
	Redacted []string `json:"redacted"`

	RequestCount  int64 `json:"request_count"`
	ResponseCount int64 `json:"response_count"`
	RequestBytes  int64 `json:"request_bytes"`  // full sizes, truncated messages included
	ResponseBytes int64 `json:"response_bytes"` // full sizes, truncated messages included

	// DroppedEvents counts the events of this call the recorder could not
	// store (queue full or write failure): when it is not zero the call is
	// incomplete.
	DroppedEvents int64 `json:"dropped_events"`

	ContentType string `json:"content_type"`
	Compression string `json:"compression"`
	// Proxy names the grpctap process that recorded the call (its
	// --name, by default its host name); "" for calls of captures from
	// before names were kept.
	Proxy string `json:"proxy"`
}

// CallWithMessages is a call and all its messages, the JSON of
// `grpctap show --json` and of each `grpctap export` line.
type CallWithMessages struct {
	Call
	Messages []Message `json:"messages"`
}

// Status is how a call ended.
type Status struct {
	Code    int    `json:"code"`
	Name    string `json:"name"` // as in the gRPC spec: "OK", "NOT_FOUND", …
	Message string `json:"message"`
	// Details holds each google.protobuf.Any of grpc-status-details-bin,
	// serialized; base64 in JSON.
	Details [][]byte `json:"details"`
}

// Message is one recorded message.
type Message struct {
	Seq       int       `json:"seq"`       // from 1, across both directions
	Direction string    `json:"direction"` // "request" or "response"
	Time      time.Time `json:"time"`
	Size      int64     `json:"size"`      // full size
	Truncated bool      `json:"truncated"` // Raw holds only a prefix of Size bytes
	Raw       []byte    `json:"raw"`       // base64 in JSON
	// BodyError says why Raw is empty although Size is not: the body was
	// kept in a segment file that is gone or damaged.
	BodyError string `json:"body_error,omitempty"`
	// JSON, Schemaless and DecodeError are filled by the decoder on read;
	// the store leaves them empty (JSON null).
	JSON        json.RawMessage `json:"json"`
	Schemaless  json.RawMessage `json:"schemaless,omitempty"`
	DecodeError string          `json:"decode_error"`
}

// Directions as stored and shown.
const (
	DirRequest  = "request"
	DirResponse = "response"
)

// RPC kinds.
const (
	RPCUnary           = "unary"
	RPCClientStreaming = "client_streaming"
	RPCServerStreaming = "server_streaming"
	RPCBidiStreaming   = "bidi_streaming"
)

// GuessRPC derives an RPC kind from message counts, for calls whose schema
// is unknown. A call with at most one message each way reads as unary.
func GuessRPC(requests, responses int64) string {
	switch {
	case requests > 1 && responses > 1:
		return RPCBidiStreaming
	case requests > 1:
		return RPCClientStreaming
	case responses > 1:
		return RPCServerStreaming
	}
	return RPCUnary
}

// SplitMethod splits "/pkg.Service/Method" into "pkg.Service" and "Method".
// A service name holds no "/", so a path with more ("/pkg.Svc/a/b", which
// no schema defines but a client can send) splits at the first, as the
// proxy's routing reads it: "pkg.Svc" and "a/b".
func SplitMethod(full string) (service, method string) {
	s := strings.TrimPrefix(full, "/")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// CodeName returns the gRPC spec name of a status code ("NOT_FOUND"), or
// "CODE_<n>" for codes outside the spec.
func CodeName(code int) string {
	if code >= 0 && code < len(codeNames) {
		return codeNames[code]
	}
	return "CODE_" + strconv.Itoa(code)
}

// ParseCode reads a status code given as a number ("5"), a spec name in any
// case ("not_found", "NOT_FOUND") or a Go-style name ("NotFound",
// "Canceled").
func ParseCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("invalid status code %q", s)
		}
		return n, nil
	}
	norm := strings.ToUpper(strings.NewReplacer("_", "", "-", "", " ", "").Replace(s))
	if norm == "CANCELED" {
		return 1, nil
	}
	for i, name := range codeNames {
		if strings.ReplaceAll(name, "_", "") == norm {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown status code %q (want a number or a name such as NOT_FOUND)", s)
}

// EncodeBin is how "-bin" metadata values are written in Metadata: base64,
// standard alphabet, unpadded, as gRPC sends them.
// (headers.EncodeBin).
func EncodeBin(b []byte) string { return headers.EncodeBin(b) }

// DecodeBin reads a "-bin" value written padded or unpadded
// (headers.DecodeBin).
func DecodeBin(s string) ([]byte, error) { return headers.DecodeBin(s) }
