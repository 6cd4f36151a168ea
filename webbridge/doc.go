// Package webbridge owns grpctap's gRPC-Web bridge: it accepts gRPC-Web
// (application/grpc-web, +proto, +json and the base64 application/grpc-web-text)
// over HTTP/1.1, HTTP/2 (h2c or TLS) and, when enabled, improbable-eng's
// grpc-websockets transport, and hands every call to the proxy's grpc.Server
// through its ServeHTTP, so it is routed, forwarded and recorded like native
// gRPC, marked with protocol grpc-web or grpc-web-text.
//
// It owns the CORS policy (allowed origins, preflights for any method path,
// exposed headers), header hygiene (hop-by-hop request headers never reach
// grpc-go, so never the backend), the protocol translation (request
// rewriting, trailer frames, trailers-only errors, per-message flushing,
// base64 both ways, JSON messages translated to and from protobuf with the
// method's schema) and the HTTP server that serves the bridge (Serve).
//
// The translation is the package's own rather than improbable-eng/grpc-web's
// grpcweb wrapper, which was the expected start: importing that package
// starts a process-wide goroutine (desertbit/timer) that every goleak-checked
// binary would report; its CORS layer answers preflights only when they name
// x-grpc-web and passes calls from refused origins on to the backend; it
// forwards Connection as metadata (#568); its text decoder stops at the first
// padded piece; its websocket reader leaves a goroutine behind and limits
// messages to 32 KiB by default. The wire format is the same, and the
// websocket transport speaks the same protocol as improbable's clients.
//
// It knows nothing of storage: recording happens in the proxy's Observer.
package webbridge
