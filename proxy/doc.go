// Package proxy owns grpctap's forwarding path: the listeners' gRPC server,
// routing of each call to a backend by method, the pool of backend
// connections, and the handler that copies raw frames both ways without
// knowing any schema.
//
// The handler keeps the transparency contract of docs/ARCHITECTURE.md: every
// RPC kind and content subtype, request metadata minus hop-by-hop headers,
// response headers as soon as the backend sends them, trailers and status
// (grpc-status-details-bin byte for byte), deadlines, cancellation, half-close
// and compression.
//
// Everything a call does is reported to an Observer. Observers are called on
// the forwarding goroutines and must not block; the recorder queues events and
// drops (and counts) them when its queue is full, so forwarding never waits on
// recording. The package knows nothing of storage or JSON.
package proxy
