// Package headers is grpctap's one policy on gRPC metadata: what kind of
// header a key is (Classify), which kinds pass on each path a header
// takes through grpctap (Passes: the proxy forwarding a call, a replay or
// a saved request sending a recorded one, the mock answering from a
// capture, the inspector's composer, a grpcurl command line), which
// headers are redacted when a call is recorded (Redaction), and how a
// redacted value is marked.
//
// Marking: the recorder stores a redacted header's values as Redacted
// ("[redacted]") so that every reader still sees that a value was there,
// and names the key in the call's list of redacted headers
// (store.Call.Redacted). That list, not the value, is what says a value
// was redacted: a header whose real value is "[redacted]" is sent on
// replay like any other. Captures written before the list existed have
// only the values; InBand reads them the old way.
//
// The package knows nothing of storage or transport; keys are gRPC
// metadata keys (lower case, as grpc-go gives them) unless said otherwise.
package headers

import (
	"encoding/base64"
	"slices"
	"strings"

	"google.golang.org/grpc/metadata"
)

// Redacted is the value stored in place of each value of a redacted
// header.
const Redacted = "[redacted]"

// DefaultRedact lists the headers redacted unless told otherwise.
var DefaultRedact = []string{"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"}

// LabelPrefix starts the headers grpctap uses to label calls it makes
// itself (the composer's, replays, the mock's answers): observers see them,
// backends never do.
const LabelPrefix = "grpctap-"

// ClientLabelPrefix is where observers find the LabelPrefix headers a
// client sent itself: "grpctap-origin: composer" from a client is recorded
// as "x-client-grpctap-origin: composer", never as grpctap's label.
const ClientLabelPrefix = "x-client-" + LabelPrefix

// Class is the kind of a header, as far as grpctap's paths care.
type Class int

// The classes of headers.
const (
	// Ordinary headers are the application's: they pass everywhere.
	Ordinary Class = iota
	// Pseudo headers (":path", ":authority", …) and the empty key.
	Pseudo
	// HopByHop headers belong to one connection (RFC 9110 §7.6.1, plus
	// the proxy-* family): connection, keep-alive, te, upgrade, host, ….
	HopByHop
	// Label headers (LabelPrefix) are grpctap's own.
	Label
	// ClientLabel headers (ClientLabelPrefix) are a client's own
	// grpctap-* headers as observers see them.
	ClientLabel
	// Transport headers grpc-go writes itself on both sides of a call:
	// content-type, grpc-encoding, grpc-accept-encoding.
	Transport
	// RequestTransport headers grpc-go writes itself on a request, from
	// the call's options: user-agent, grpc-timeout.
	RequestTransport
	// Status headers carry a call's status in its trailers: grpc-status,
	// grpc-message, grpc-status-details-bin.
	Status
	// ContentLength is HTTP's content-length (a gRPC-Web request's, a
	// response's through an HTTP/1 hop).
	ContentLength
	// Date is the date a server stamps on its response.
	Date
	// Browser headers are those a browser adds to a gRPC-Web request
	// (accept*, origin, referer, x-grpc-web, x-user-agent, sec-*, …) and
	// cookie.
	Browser
	numClasses
)

var classNames = [numClasses]string{"ordinary", "pseudo", "hop-by-hop", "label", "client-label",
	"transport", "request-transport", "status", "content-length", "date", "browser"}

func (c Class) String() string {
	if c < 0 || c >= numClasses {
		return "unknown"
	}
	return classNames[c]
}

var byName = map[string]Class{
	// RFC 9110 §7.6.1 and the proxy headers; grpc-go sets "te" itself, so
	// a client's is never forwarded either.
	"connection": HopByHop, "keep-alive": HopByHop, "proxy-connection": HopByHop, "te": HopByHop,
	"transfer-encoding": HopByHop, "upgrade": HopByHop, "host": HopByHop, "http2-settings": HopByHop,
	"proxy-authenticate": HopByHop, "proxy-authorization": HopByHop,

	"content-type": Transport, "grpc-encoding": Transport, "grpc-accept-encoding": Transport,
	"user-agent": RequestTransport, "grpc-timeout": RequestTransport,
	"grpc-status": Status, "grpc-message": Status, "grpc-status-details-bin": Status,
	"content-length": ContentLength,
	"date":           Date,

	"accept": Browser, "accept-encoding": Browser, "accept-language": Browser, "origin": Browser,
	"referer": Browser, "x-grpc-web": Browser, "x-user-agent": Browser, "cookie": Browser,
	"priority": Browser, "pragma": Browser, "cache-control": Browser,
}

// Classify returns the class of a header key, in any case.
func Classify(key string) Class {
	key = strings.ToLower(key)
	switch {
	case key == "" || key[0] == ':':
		return Pseudo
	case strings.HasPrefix(key, LabelPrefix):
		return Label
	case strings.HasPrefix(key, ClientLabelPrefix):
		return ClientLabel
	}
	if c, ok := byName[key]; ok {
		return c
	}
	switch {
	case strings.HasPrefix(key, "proxy-"):
		return HopByHop
	case strings.HasPrefix(key, "sec-"):
		return Browser
	}
	return Ordinary
}

// IsHopByHop reports whether a header (any case) belongs to one connection
// and must not be forwarded.
func IsHopByHop(key string) bool { return Classify(key) == HopByHop }

// Path is a way headers take through grpctap.
type Path int

// The paths.
const (
	// ProxyRequest: a client's request headers, forwarded to the backend.
	// grpc-go writes the transport ones itself; a client's grpctap-*
	// headers are its own and go nowhere.
	ProxyRequest Path = iota
	// ProxyResponse: a backend's response headers and trailers, forwarded
	// to the client (grpc-go leaves out the reserved ones itself).
	ProxyResponse
	// Replay: recorded request headers sent again, by replay and by saved
	// requests (collections).
	Replay
	// Mock: recorded response headers and trailers, answered by the mock.
	Mock
	// Composer: headers typed in the inspector's composer, handed to the
	// proxy (which then applies ProxyRequest): only grpctap's own labels
	// are refused, as the composer sets its own.
	Composer
	// Grpcurl: recorded request headers written into a grpcurl command
	// line; grpcurl writes the transport ones, a browser's are of no use.
	Grpcurl
	numPaths
)

var pathNames = [numPaths]string{"proxy-request", "proxy-response", "replay", "mock", "composer", "grpcurl"}

func (p Path) String() string {
	if p < 0 || p >= numPaths {
		return "unknown"
	}
	return pathNames[p]
}

// dropped is, for each path, the set of classes it leaves out (a bit per
// class).
var dropped = [numPaths]uint32{
	ProxyRequest:  bits(Pseudo, HopByHop, Label, Transport, RequestTransport),
	ProxyResponse: bits(Pseudo, HopByHop),
	Replay:        bits(Pseudo, HopByHop, Label, ClientLabel, Transport, RequestTransport, ContentLength),
	Mock:          bits(Pseudo, HopByHop, Transport, Status, ContentLength, Date),
	Composer:      bits(Pseudo, Label),
	Grpcurl:       bits(Pseudo, HopByHop, Label, ClientLabel, Transport, RequestTransport, ContentLength, Browser),
}

func bits(cs ...Class) uint32 {
	var b uint32
	for _, c := range cs {
		b |= 1 << c
	}
	return b
}

// Passes reports whether a header (any case) goes on along path p.
func Passes(p Path, key string) bool { return dropped[p]&(1<<Classify(key)) == 0 }

// Connection returns the names a "connection" header lists (lower case):
// they are hop-by-hop too (RFC 9110 §7.6.1).
func Connection(values []string) []string {
	var out []string
	for _, c := range values {
		for _, name := range strings.Split(c, ",") {
			if name = strings.ToLower(strings.TrimSpace(name)); name != "" {
				out = append(out, name)
			}
		}
	}
	return out
}

// Resend turns recorded headers or trailers into metadata to send along
// path p (Replay or Mock): keys that p passes, in lower case, less those
// named in redacted (the call's redacted headers: their values are not
// the ones sent); "-bin" values decoded from their recorded base64 (a value
// that does not decode is left out).
func Resend(p Path, recorded map[string][]string, redacted []string) metadata.MD {
	md := metadata.MD{}
	for k, vs := range recorded {
		k = strings.ToLower(k)
		if !Passes(p, k) || slices.Contains(redacted, k) {
			continue
		}
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				b, err := DecodeBin(v)
				if err != nil {
					continue
				}
				v = string(b)
			}
			md[k] = append(md[k], v)
		}
	}
	return md
}

// EncodeBin is how "-bin" values are recorded: base64, standard alphabet,
// unpadded, as gRPC sends them.
func EncodeBin(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// DecodeBin reads a recorded "-bin" value, padded or unpadded.
func DecodeBin(s string) ([]byte, error) {
	if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err == nil {
		return b, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// Redaction is a set of headers whose values are not recorded.
type Redaction struct {
	names map[string]bool
}

// NewRedaction returns the Redaction of names (any case). nil means
// DefaultRedact; an empty non-nil slice redacts nothing.
func NewRedaction(names []string) Redaction {
	if names == nil {
		names = DefaultRedact
	}
	r := Redaction{names: make(map[string]bool, len(names))}
	for _, h := range names {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			r.names[h] = true
		}
	}
	return r
}

// Redacts reports whether the values of header key (lower case) are not
// recorded.
func (r Redaction) Redacts(key string) bool { return r.names[key] }

// Apply returns md with keys in lower case and the values of redacted
// headers replaced by Redacted, and the names it redacted (sorted). md is
// not changed; value lists it keeps as they are are shared.
func (r Redaction) Apply(md map[string][]string) (map[string][]string, []string) {
	if md == nil {
		return nil, nil
	}
	out := make(map[string][]string, len(md))
	var names []string
	for k, vs := range md {
		k = strings.ToLower(k)
		if r.names[k] {
			out[k] = Placeholders(len(vs))
			names = append(names, k)
			continue
		}
		out[k] = vs
	}
	slices.Sort(names)
	return out, names
}

// Placeholders returns n Redacted values.
func Placeholders(n int) []string {
	red := make([]string, n)
	for i := range red {
		red[i] = Redacted
	}
	return red
}

// InBand returns the keys of mds whose values are all Redacted, sorted,
// never nil: the redacted headers of a call recorded before redaction was
// marked out of band (an old capture, an old export or saved example),
// when the value was the only mark.
func InBand(mds ...map[string][]string) []string {
	out := []string{}
	for _, md := range mds {
		for k, vs := range md {
			if len(vs) > 0 && !slices.ContainsFunc(vs, func(v string) bool { return v != Redacted }) {
				out = append(out, k)
			}
		}
	}
	return Names(out)
}

// HasPlaceholder reports whether any value of md is Redacted.
func HasPlaceholder(md map[string][]string) bool {
	for _, vs := range md {
		if slices.Contains(vs, Redacted) {
			return true
		}
	}
	return false
}

// Names returns the union of lists of header names, sorted, without
// repeats; never nil.
func Names(lists ...[]string) []string {
	out := []string{}
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
