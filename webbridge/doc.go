// Package webbridge owns grpctap's gRPC-Web bridge: it accepts gRPC-Web
// (application/grpc-web, +proto, +json and the base64 application/grpc-web-text)
// over HTTP/1.1, HTTP/2 (h2c or TLS) and, when enabled, improbable-eng's
// websocket transport, and hands every call to the proxy's grpc.Server so it
// is routed, forwarded and recorded like native gRPC, marked with protocol
// grpc-web or grpc-web-text.
//
// It owns the CORS policy (allowed origins, preflights for any method path,
// exposed headers), header hygiene (hop-by-hop request headers never reach
// grpc-go, so never the backend) and the HTTP server that serves the bridge
// (Serve). The protocol translation itself is improbable-eng/grpc-web's
// (grpcweb.WrappedGrpcServer.HandleGrpcWebRequest and
// HandleGrpcWebsocketRequest); its CORS handling is not used, because it
// answers preflights only when they name x-grpc-web, passes requests from
// refused origins on to the backend, and cannot say "same origin only".
//
// It knows nothing of storage: recording happens in the proxy's Observer.
package webbridge
