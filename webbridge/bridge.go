package webbridge

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/grpc"

	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/internal/hostcheck"
	"github.com/grpctap/grpctap/proxy"
)

// DefaultWebsocketReadLimit bounds one websocket message (a piece of the
// request body plus a control byte) unless Options.WebsocketReadLimit says
// otherwise: the proxy's default message size plus framing.
const DefaultWebsocketReadLimit = proxy.DefaultMaxMsgSize + 6

// preflightMaxAge is how long browsers may cache a preflight answer, in
// seconds. Chromium caps it at 7200; 10 minutes keeps policy changes visible.
const preflightMaxAge = "600"

// Options configure the bridge. The zero value of each field is its default.
type Options struct {
	// AllowedOrigins lists the origins (scheme://host[:port]) whose pages
	// may call through the bridge; "*" allows every origin and is honoured
	// only when given explicitly. Default: none, so only same-origin
	// requests (Origin's host equals the request's Host, which Hosts
	// restricts) and requests without an Origin header (non-browser
	// clients) are served.
	AllowedOrigins []string
	// Websockets enables improbable-eng's grpc-websockets transport, which
	// gives browsers client and bidi streaming over HTTP/1.1. Default: off.
	Websockets bool
	// WebsocketReadLimit bounds one websocket message in bytes. Default:
	// DefaultWebsocketReadLimit.
	WebsocketReadLimit int64
	// Hosts lists the extra names (as in the Host header, without port)
	// the bridge answers to, against DNS rebinding: a hostile page whose
	// domain is switched to this machine's address reaches the bridge with
	// its own name as Host. "*" allows any Host and is honoured only when
	// given explicitly. Default: none, so a connection to a loopback
	// address is served only when Host is a loopback name (localhost,
	// 127.0.0.0/8, [::1]), and a connection to any other address only
	// when Host is a loopback name or an IP address. Others get 403 before
	// anything reaches the backend or the observers.
	Hosts []string
	// GRPCFallback serves native gRPC (application/grpc over HTTP/2) that
	// reaches the bridge's port through the same grpc.Server. Default: off
	// (such requests get 415).
	GRPCFallback bool
	// Schemas gives the message types of methods, so that JSON calls
	// (application/grpc-web+json) are translated to protobuf for the
	// backend and their answers back to JSON: any backend serves them.
	// A call whose method it does not know is forwarded unchanged as
	// application/grpc+json, and its error says so when it fails.
	// Default: nil, every JSON call forwarded unchanged.
	Schemas Schemas
}

// Bridge is an http.Handler serving gRPC-Web in front of a grpc.Server.
type Bridge struct {
	srv         *grpc.Server
	wsReadLimit int64
	anyOrigin   bool
	origins     map[string]bool
	anyHost     bool
	hosts       map[string]bool
	ws          bool
	fallback    bool
	schemas     Schemas
}

// New returns a Bridge that translates gRPC-Web calls for srv, typically the
// server from proxy.(*Proxy).NewServer. It fails on a malformed origin or
// host name.
func New(srv *grpc.Server, opts Options) (*Bridge, error) {
	b := &Bridge{srv: srv, origins: map[string]bool{}, hosts: map[string]bool{}, ws: opts.Websockets, fallback: opts.GRPCFallback, schemas: opts.Schemas}
	for _, h := range opts.Hosts {
		if h == "*" {
			b.anyHost = true
			continue
		}
		name, err := hostcheck.ParseName(h)
		if err != nil {
			return nil, fmt.Errorf("webbridge: %w", err)
		}
		b.hosts[name] = true
	}
	for _, o := range opts.AllowedOrigins {
		if o == "*" {
			b.anyOrigin = true
			continue
		}
		norm, err := normalizeOrigin(o)
		if err != nil {
			return nil, err
		}
		b.origins[norm] = true
	}
	b.wsReadLimit = opts.WebsocketReadLimit
	if b.wsReadLimit <= 0 {
		b.wsReadLimit = DefaultWebsocketReadLimit
	}
	return b, nil
}

// normalizeOrigin checks an origin flag value and returns it in the form
// browsers send: lower-case scheme and host, no path, default port omitted.
func normalizeOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("webbridge: origin %q is not scheme://host[:port] (or *)", o)
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, nil
}

// hostAllowed applies the rule of Options.Hosts to the request's Host.
func (b *Bridge) hostAllowed(r *http.Request) bool {
	if b.anyHost || hostcheck.Loopback(r.Host) || b.hosts[hostcheck.Name(r.Host)] {
		return true
	}
	// An IP address cannot be rebound; it is accepted where the bridge is
	// reached from the network. A connection whose local address is
	// unknown counts as a loopback one.
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return local != nil && !hostcheck.LoopbackAddr(local) && hostcheck.IPLiteral(r.Host)
}

// allowed says whether a request with this Origin header may be served, and
// the Access-Control-Allow-Origin value to answer with ("" for none: the
// request is same-origin or carries no Origin).
func (b *Bridge) allowed(r *http.Request) (ok bool, allowOrigin string) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true, ""
	}
	if b.anyOrigin {
		return true, "*"
	}
	norm, err := normalizeOrigin(origin)
	if err != nil {
		return false, "" // "null" and other opaque origins
	}
	if b.origins[norm] {
		return true, origin
	}
	// Same origin: the page was served by this host:port.
	if u, err := url.Parse(norm); err == nil && strings.EqualFold(u.Host, hostWithPort(r)) {
		return true, ""
	}
	return false, ""
}

// hostWithPort returns the request's Host as an origin would show it.
func hostWithPort(r *http.Request) string {
	h := strings.ToLower(r.Host)
	if r.TLS != nil {
		h = strings.TrimSuffix(h, ":443")
	} else {
		h = strings.TrimSuffix(h, ":80")
	}
	return h
}

// ServeHTTP serves one request: a CORS preflight, a gRPC-Web call, a
// grpc-websockets call, or (with GRPCFallback) native gRPC.
func (b *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !b.hostAllowed(r) {
		http.Error(w, "grpctap: Host "+strconv.Quote(r.Host)+" is not served here, against DNS rebinding (allow the name with --web-host)", http.StatusForbidden)
		return
	}
	ok, allowOrigin := b.allowed(r)
	if !ok {
		http.Error(w, "grpctap: origin "+r.Header.Get("Origin")+" is not allowed (see --web-origin)", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		b.preflight(w, r, allowOrigin)
		return
	}
	if b.ws && isWebsocket(r) {
		// The upgrade needs Connection and Upgrade; the call gets only the
		// headers of the first websocket message, never these.
		b.serveWebsocket(w, r)
		return
	}
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	if r.Method == http.MethodPost && strings.HasPrefix(ct, "application/grpc-web") {
		protocol := proxy.ProtocolGRPCWeb
		if strings.HasPrefix(ct, "application/grpc-web-text") {
			protocol = proxy.ProtocolGRPCWebText
		}
		setCORS(w.Header(), allowOrigin)
		stripHopByHop(r.Header)
		if r.ProtoMajor == 1 {
			// Let grpc-go read the request body after the response has
			// started (client streaming whose backend answers headers first).
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
		ctx := proxy.WithClientContentType(proxy.WithProtocol(r.Context(), protocol), r.Header.Get("Content-Type"))
		b.serveWeb(w, r.WithContext(ctx), protocol == proxy.ProtocolGRPCWebText)
		return
	}
	if b.fallback && r.ProtoMajor == 2 && r.Method == http.MethodPost && strings.HasPrefix(ct, "application/grpc") {
		b.srv.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Accept", "application/grpc-web, application/grpc-web-text")
	http.Error(w, "grpctap: this is a gRPC-Web endpoint: POST with content-type application/grpc-web[-text][+proto|+json]", http.StatusUnsupportedMediaType)
}

// preflight answers a CORS preflight for any path: the bridge forwards
// unknown services, so it cannot tell which paths exist.
func (b *Bridge) preflight(w http.ResponseWriter, r *http.Request, allowOrigin string) {
	h := w.Header()
	setCORS(h, allowOrigin)
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	// Any request header: gRPC metadata is application-defined.
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", preflightMaxAge)
	w.WriteHeader(http.StatusNoContent)
}

// setCORS sets the CORS headers of an allowed cross-origin response.
// Access-Control-Expose-Headers is set later, when the response headers are
// known, by the translation (every response header and trailer key, plus
// grpc-status and grpc-message).
func setCORS(h http.Header, allowOrigin string) {
	h.Add("Vary", "Origin")
	if allowOrigin == "" {
		return
	}
	h.Set("Access-Control-Allow-Origin", allowOrigin)
	if allowOrigin != "*" {
		// Cookies and HTTP auth may flow to named origins; browsers forbid
		// credentials with "*".
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

func isWebsocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		strings.EqualFold(r.Header.Get("Sec-Websocket-Protocol"), "grpc-websockets")
}

// stripHopByHop deletes the request headers that belong to one connection:
// those headers.IsHopByHop names and those the Connection header lists.
// grpc-go would otherwise turn them into metadata (improbable-eng/grpc-web
// #568: HTTP/1.1's Connection reached backends, which refuse it). TE is
// dropped too: grpc-go's own client sends "te: trailers" to the backend.
func stripHopByHop(h http.Header) {
	for _, c := range h.Values("Connection") {
		for _, name := range strings.Split(c, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for k := range h {
		if headers.IsHopByHop(k) {
			delete(h, k)
		}
	}
}

// serveWeb serves one gRPC-Web call over HTTP/1.1 or HTTP/2.
func (b *Bridge) serveWeb(w http.ResponseWriter, r *http.Request, text bool) {
	resp := newWebResponse(w, text)
	g := grpcRequest(r, text, resp.malformedText)
	if text {
		g = g.WithContext(proxy.WithRequestFailure(g.Context(), resp.requestFailure))
	}
	if !isJSONCall(g) {
		b.srv.ServeHTTP(resp, g)
		resp.finish()
		return
	}
	g, out, end := b.prepareJSON(g, resp)
	b.srv.ServeHTTP(out, g)
	end(resp.hdr)
	resp.finish()
}
