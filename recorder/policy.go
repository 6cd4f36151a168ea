package recorder

import (
	"strings"

	"github.com/grpctap/grpctap/store"
)

// Policy is what a capture keeps of a call, whichever way the call comes
// in (the proxy, or 'grpctap import'): which headers lose their values and
// how much of each body is stored.
type Policy struct {
	redact     map[string]bool
	maxMessage int
}

// NewPolicy makes a Policy from Options' Redact and MaxMessage, with their
// defaults.
func NewPolicy(redact []string, maxMessage int) Policy {
	if redact == nil {
		redact = DefaultRedact
	}
	if maxMessage <= 0 {
		maxMessage = DefaultMaxMessage
	}
	p := Policy{redact: map[string]bool{}, maxMessage: maxMessage}
	for _, h := range redact {
		p.redact[strings.ToLower(strings.TrimSpace(h))] = true
	}
	return p
}

// Redacts reports whether the values of header key (lower case) are not
// stored.
func (p Policy) Redacts(key string) bool { return p.redact[key] }

// MaxMessage is the most bytes of a body stored.
func (p Policy) MaxMessage() int { return p.maxMessage }

// Metadata returns md with the values of redacted headers replaced by
// Redacted and keys in lower case. md is not changed.
func (p Policy) Metadata(md store.Metadata) store.Metadata {
	if md == nil {
		return nil
	}
	out := make(store.Metadata, len(md))
	for k, vs := range md {
		k = strings.ToLower(k)
		if p.redact[k] {
			red := make([]string, len(vs))
			for i := range red {
				red[i] = Redacted
			}
			out[k] = red
			continue
		}
		out[k] = vs
	}
	return out
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
// message bodies.
func (p Policy) Call(c *store.CallWithMessages) {
	c.RequestHeaders = p.Metadata(c.RequestHeaders)
	c.ResponseHeaders = p.Metadata(c.ResponseHeaders)
	c.Trailers = p.Metadata(c.Trailers)
	for i := range c.Messages {
		p.Message(&c.Messages[i])
	}
}
