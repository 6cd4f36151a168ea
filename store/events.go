package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/grpctap/grpctap/internal/headers"
)

// ErrReadOnly is returned by writes on a store opened with ReadOnly.
var ErrReadOnly = errors.New("store is read-only")

// CallStart is the first event of a call: its row is inserted (state open).
type CallStart struct {
	// ID is the writer's key for the call until WriteBatch commits its
	// start, which sets it to the call's id in the capture. Keys come from
	// Store.NewKey (tests may number calls 1, 2, … themselves).
	ID          int64
	Method      string
	Protocol    string
	Backend     string
	Authority   string
	Peer        string
	ContentType string
	Compression string
	Deadline    time.Time // zero: none
	Time        time.Time
	Header      Metadata
	// Redacted names the headers whose values the writer replaced with
	// headers.Redacted, in this event and the call's others (see
	// Call.Redacted).
	Redacted []string
}

// ResponseHeader records a call's response headers. CallID, in this and
// the other events of a call, is the call's key (CallStart.ID) and becomes
// its id once WriteBatch has committed the event.
type ResponseHeader struct {
	CallID   int64
	Time     time.Time
	Header   Metadata
	Redacted []string // as CallStart.Redacted
}

// MessageRecord is one message to append to a call.
type MessageRecord struct {
	CallID    int64
	Seq       int
	Direction string // DirRequest or DirResponse
	Time      time.Time
	Size      int64 // full size
	Truncated bool
	Raw       []byte
}

// CallEnd closes a call.
type CallEnd struct {
	CallID   int64
	Time     time.Time
	Code     int
	Message  string
	Details  [][]byte
	Trailers Metadata
	Redacted []string // as CallStart.Redacted
	// Dropped counts this call's events that never reached the store.
	Dropped int64
}

// Event is one write. Exactly one of its pointers is set, except that
// Dropped may accompany any of them or stand alone.
type Event struct {
	Start   *CallStart
	Header  *ResponseHeader
	Message *MessageRecord
	End     *CallEnd
	// Dropped adds to the capture's count of dropped events.
	Dropped int64
	// SkippedCalls adds to the capture's count of calls left out on
	// purpose (reset by their client before any message, over its rate).
	SkippedCalls int64
}

// Size estimates the memory an event holds, for bounding queues.
func (e *Event) Size() int {
	n := 64
	switch {
	case e.Start != nil:
		n += 128 + len(e.Start.Method) + mdSize(e.Start.Header)
	case e.Header != nil:
		n += mdSize(e.Header.Header)
	case e.Message != nil:
		n += len(e.Message.Raw)
	case e.End != nil:
		n += len(e.End.Message) + mdSize(e.End.Trailers)
		for _, d := range e.End.Details {
			n += len(d)
		}
	}
	return n
}

func mdSize(md Metadata) int {
	n := 0
	for k, vs := range md {
		n += len(k) + 16
		for _, v := range vs {
			n += len(v) + 16
		}
	}
	return n
}

// redactedKey is the key under which a header column's JSON names the
// headers whose values were redacted (Call.Redacted). No header can have
// it: gRPC metadata keys are lower case (HTTP/2 forbids upper case in
// names, grpc-go, the recorder and import turn every key to lower case),
// hold no space, and the only pseudo-header grpc-go passes on is
// :authority; so it is out of band while readers of the column still see
// an object of key → values. The leading ':' makes grpctap versions from
// before the list take it for a pseudo-header: they show it, and leave it
// out of replays, mock answers, diffs and grpcurl commands. It is written
// only where a value is headers.Redacted, whoever put it there; a column
// without it is of a capture from before (headers.InBand reads those).
const redactedKey = ":Redacted headers"

// mdJSON encodes metadata as a JSON object with sorted keys, as
// encoding/json would (readers parse it with encoding/json), with
// redactedKey naming those of redacted that md holds when any value of md
// is headers.Redacted. It is written by hand because it runs for every
// call the proxy records: the reflective encoder cost a fifth of the
// writer's time.
func mdJSON(md Metadata, redacted []string) string {
	b, _ := appendMD(nil, nil, md, redacted)
	return string(b)
}

// appendMD appends md's JSON (as mdJSON writes it) to b, sorting its keys
// in keys (scratch; returned for reuse). A key redactedKey in md itself is
// left out: only redacted names it.
func appendMD(b []byte, keys []string, md Metadata, redacted []string) ([]byte, []string) {
	keys = keys[:0]
	for k := range md {
		if k != redactedKey {
			keys = append(keys, k)
		}
	}
	if headers.HasPlaceholder(md) {
		keys = append(keys, redactedKey)
	}
	if len(keys) == 0 {
		return append(b, "{}"...), keys
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		vs := md[k]
		if k == redactedKey {
			vs = []string{}
			for _, name := range redacted {
				if _, ok := md[name]; ok {
					vs = append(vs, name)
				}
			}
		}
		if vs == nil {
			b = append(b, ":null"...) // as encoding/json writes a nil slice
			continue
		}
		b = append(b, ':', '[')
		for j, v := range vs {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, v)
		}
		b = append(b, ']')
	}
	return append(b, '}'), keys
}

// parseMD reads a header column: its metadata and, when the column names
// them (redactedKey), the headers whose values were redacted; else, for
// columns of captures from before the names were kept, the keys whose
// values all read headers.Redacted.
func parseMD(s string) (Metadata, []string) {
	md := Metadata{}
	if s != "" {
		_ = json.Unmarshal([]byte(s), &md)
	}
	if names, ok := md[redactedKey]; ok {
		delete(md, redactedKey)
		return md, names
	}
	return md, headers.InBand(md)
}

// appendJSONString appends s as a JSON string. Printable ASCII without
// quotes or backslashes (nearly every header value) is copied as it is;
// anything else goes through encoding/json, which also turns invalid UTF-8
// into U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func detailsJSON(details [][]byte) string {
	if len(details) == 0 {
		return "[]"
	}
	// Base64 needs no escaping in JSON.
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range details {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(base64.StdEncoding.EncodeToString(d))
		b.WriteByte('"')
	}
	b.WriteByte(']')
	return b.String()
}
