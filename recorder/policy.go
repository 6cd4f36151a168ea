package recorder

import (
	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/store"
)

// Policy is what a capture keeps of a call, whichever way the call comes
// in (the proxy, or 'grpctap import'): which headers lose their values and
// how much of each body is stored.
type Policy struct {
	headers.Redaction
	maxMessage int
}

// NewPolicy makes a Policy from Options' Redact and MaxMessage, with their
// defaults.
func NewPolicy(redact []string, maxMessage int) Policy {
	if maxMessage <= 0 {
		maxMessage = DefaultMaxMessage
	}
	return Policy{Redaction: headers.NewRedaction(redact), maxMessage: maxMessage}
}

// MaxMessage is the most bytes of a body stored.
func (p Policy) MaxMessage() int { return p.maxMessage }

// metadata is Apply for store.Metadata.
func (p Policy) metadata(md store.Metadata) (store.Metadata, []string) {
	out, names := p.Apply(md)
	return store.Metadata(out), names
}

// Message cuts m's body to MaxMessage, marking it truncated and keeping
// its full size.
func (p Policy) Message(m *store.Message) {
	if m.Size < int64(len(m.Raw)) {
		m.Size = int64(len(m.Raw))
	}
	if len(m.Raw) > p.maxMessage {
		m.Raw = append([]byte(nil), m.Raw[:p.maxMessage]...)
		m.Truncated = true
	}
}

// Call applies the policy to a whole call: its headers, trailers and
// message bodies. The headers c names as redacted already stay so (a call
// exported from a capture); a call that names none (nil Redacted: a
// grpc-dump line, an export from before the list) is read the old way,
// its keys whose values all read headers.Redacted taken as redacted.
func (p Policy) Call(c *store.CallWithMessages) {
	had := c.Redacted
	if had == nil {
		had = headers.InBand(c.RequestHeaders, c.ResponseHeaders, c.Trailers)
	}
	var req, resp, trl []string
	c.RequestHeaders, req = p.metadata(c.RequestHeaders)
	c.ResponseHeaders, resp = p.metadata(c.ResponseHeaders)
	c.Trailers, trl = p.metadata(c.Trailers)
	c.Redacted = headers.Names(had, req, resp, trl)
	for i := range c.Messages {
		p.Message(&c.Messages[i])
	}
}
