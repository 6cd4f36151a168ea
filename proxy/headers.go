package proxy

import (
	"strings"

	"google.golang.org/grpc/metadata"
)

// hopByHop lists the connection-level headers a proxy must not forward
// (RFC 9110 §7.6.1 plus the de facto proxy-* family). grpc-go sets "te"
// itself, so the client's is never forwarded either.
var hopByHop = map[string]bool{
	"connection":          true,
	"keep-alive":          true,
	"proxy-connection":    true,
	"te":                  true,
	"transfer-encoding":   true,
	"upgrade":             true,
	"host":                true,
	"http2-settings":      true,
	"proxy-authenticate":  true,
	"proxy-authorization": true,
}

// IsHopByHop reports whether a header belongs to one connection only and
// must not be forwarded.
func IsHopByHop(key string) bool {
	key = strings.ToLower(key)
	return hopByHop[key] || strings.HasPrefix(key, "proxy-")
}

// requestMD returns the metadata to send to the backend: the client's, less
// pseudo-headers, hop-by-hop headers, and the headers grpc-go writes itself.
// Values are shared with in, which is not modified.
func requestMD(in metadata.MD) metadata.MD {
	out := make(metadata.MD, len(in))
	for k, v := range in {
		if dropRequestKey(k) {
			continue
		}
		out[k] = v
	}
	// A header listed in "connection" is hop-by-hop too (RFC 9110 §7.6.1).
	for _, c := range in["connection"] {
		for _, name := range strings.Split(c, ",") {
			delete(out, strings.ToLower(strings.TrimSpace(name)))
		}
	}
	return out
}

// InternalHeaderPrefix starts the headers grpctap uses to label calls it
// makes itself (the composer's, replays): observers see them in the request
// headers, backends never do.
const InternalHeaderPrefix = "grpctap-"

// ClientLabelPrefix is where observers find the InternalHeaderPrefix
// headers a client sent itself: "grpctap-origin: composer" from a client is
// recorded as "x-client-grpctap-origin: composer", never as grpctap's label.
// Neither name reaches the backend.
const ClientLabelPrefix = "x-client-" + InternalHeaderPrefix

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
			k = "x-client-" + k
		}
		out[k] = append(out[k], v...)
	}
	return out
}

func dropRequestKey(k string) bool {
	if k == "" || k[0] == ':' || IsHopByHop(k) || strings.HasPrefix(k, InternalHeaderPrefix) {
		return true
	}
	switch k {
	case "content-type", "user-agent", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding":
		// grpc-go writes these from the call's own options.
		return true
	}
	return false
}

// responseMD returns backend response headers or trailers to send to the
// client: hop-by-hop headers dropped. grpc-go skips the reserved ones
// (content-type, grpc-status, ...) and writes its own.
func responseMD(in metadata.MD) metadata.MD {
	for k := range in {
		if k == "" || k[0] == ':' || IsHopByHop(k) {
			out := in.Copy()
			for k := range out {
				if k == "" || k[0] == ':' || IsHopByHop(k) {
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
