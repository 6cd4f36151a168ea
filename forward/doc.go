// Package forward owns grpctap's forward-proxy mode: a listener that
// accepts HTTP/1.1 CONNECT beside direct gRPC on the proxy's port, tells
// by their first bytes the tunnels it intercepts (a TLS ClientHello
// offering h2, answered with a certificate from grpctap's own CA; the
// HTTP/2 preface) from those it copies blind (anything else, and hosts
// excluded from interception), and hands intercepted tunnels to the
// proxy's gRPC server with their target (proxy.Upstream) as the
// connection's AuthInfo. It also owns that CA and the rules of who may
// CONNECT where (allowed networks and ports, --resolve).
//
// It knows nothing of recording: intercepted calls are forwarded, observed
// and recorded by the proxy like direct ones.
package forward
