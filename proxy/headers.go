package proxy

import (
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/internal/headers"
)

// IsHopByHop reports whether a header belongs to one connection only and
// must not be forwarded (headers.IsHopByHop).
func IsHopByHop(key string) bool { return headers.IsHopByHop(key) }

// requestMD returns the metadata to send to the backend: the client's as
// headers.ProxyRequest passes it, less the headers its "connection" header
// lists. Values are shared with in, which is not modified.
func requestMD(in metadata.MD) metadata.MD {
	out := make(metadata.MD, len(in))
	for k, v := range in {
		if headers.Passes(headers.ProxyRequest, k) {
			out[k] = v
		}
	}
	for _, name := range headers.Connection(in["connection"]) {
		delete(out, name)
	}
	return out
}

// InternalHeaderPrefix starts the headers grpctap uses to label calls it
// makes itself (headers.LabelPrefix).
const InternalHeaderPrefix = headers.LabelPrefix

// ClientLabelPrefix is where observers find the InternalHeaderPrefix
// headers a client sent itself (headers.ClientLabelPrefix).
const ClientLabelPrefix = headers.ClientLabelPrefix

// clientLabels returns md with each InternalHeaderPrefix key moved under
// ClientLabelPrefix; md itself when it has none (no copy).
func clientLabels(md metadata.MD) metadata.MD {
	found := false
	for k := range md {
		if strings.HasPrefix(k, InternalHeaderPrefix) {
			found = true
			break
		}
	}
	if !found {
		return md
	}
	out := make(metadata.MD, len(md))
	for k, v := range md {
		if strings.HasPrefix(k, InternalHeaderPrefix) {
			k = ClientLabelPrefix + k[len(InternalHeaderPrefix):]
		}
		out[k] = append(out[k], v...)
	}
	return out
}

// responseMD returns backend response headers or trailers to send to the
// client, as headers.ProxyResponse passes them. grpc-go skips the reserved
// ones (content-type, grpc-status, ...) and writes its own. in itself is
// returned when nothing is dropped.
func responseMD(in metadata.MD) metadata.MD {
	for k := range in {
		if !headers.Passes(headers.ProxyResponse, k) {
			out := in.Copy()
			for k := range out {
				if !headers.Passes(headers.ProxyResponse, k) {
					delete(out, k)
				}
			}
			return out
		}
	}
	return in
}

// ContentSubtype returns the subtype of a gRPC content-type:
// "application/grpc+json" → "json", "application/grpc" → "".
func ContentSubtype(ct string) string {
	rest, ok := strings.CutPrefix(strings.ToLower(ct), "application/grpc")
	if !ok || rest == "" {
		return ""
	}
	if rest[0] == '+' || rest[0] == ';' {
		sub := rest[1:]
		if i := strings.IndexAny(sub, ";, "); i >= 0 {
			sub = sub[:i]
		}
		if rest[0] == ';' {
			return ""
		}
		return sub
	}
	return ""
}
