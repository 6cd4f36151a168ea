package proxy

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// HeaderFallback marks the answers of a Fallback: a response header (or a
// trailer, when the fallback sends no headers) the client and observers
// see, whose value names the backend that could not be reached.
const HeaderFallback = InternalHeaderPrefix + "fallback"

// Fallback answers calls the proxy cannot forward because their backend is
// unreachable (the backend connection fails before the call starts; no
// request has been read or forwarded yet). Options.Fallback installs one;
// 'grpctap proxy --mock-on-unavailable' answers from the capture.
type Fallback interface {
	// Answer serves the call on s and returns its status for the client
	// (nil for OK). cause is the backend failure.
	Answer(s *FallbackStream, cause error) error
}

// FallbackFunc is a Fallback as a function.
type FallbackFunc func(s *FallbackStream, cause error) error

// Answer calls f.
func (f FallbackFunc) Answer(s *FallbackStream, cause error) error { return f(s, cause) }

// FallbackStream is the client's side of a call handed to a Fallback, as
// raw message bytes. The proxy's observer sees what goes through it as a
// forwarded call: request and response messages, headers (with
// HeaderFallback added), trailers and status.
type FallbackStream struct {
	Method    string      // "/pkg.Service/Method"
	Authority string      // the client's :authority
	Backend   string      // the unreachable backend
	Header    metadata.MD // the request headers as received

	ss      grpc.ServerStream
	c       *call
	sent    bool
	trailer metadata.MD
}

// Context is the call's context.
func (s *FallbackStream) Context() context.Context { return s.ss.Context() }

// Recv returns the next request message, io.EOF after the client's
// half-close.
func (s *FallbackStream) Recv() ([]byte, error) {
	f := &frame{}
	if err := s.ss.RecvMsg(f); err != nil {
		return nil, err
	}
	s.c.message(Request, f)
	b := f.data.Materialize()
	f.data.Free()
	return b, nil
}

// SendHeader sends response headers, with HeaderFallback added.
func (s *FallbackStream) SendHeader(md metadata.MD) error {
	md = md.Copy()
	md.Set(HeaderFallback, s.Backend)
	s.sent = true
	s.c.header(md)
	return s.ss.SendHeader(responseMD(md))
}

// Send sends one response message. Observers may keep b without copying
// it: it must not be modified afterwards.
func (s *FallbackStream) Send(b []byte) error {
	f := &frame{data: mem.BufferSlice{mem.SliceBuffer(b)}}
	s.c.message(Response, f)
	if err := s.ss.SendMsg(f); err != nil {
		return clientGone(s.ss.Context(), err)
	}
	s.sent = true
	return nil
}

// SetTrailer sets the trailers sent with the status.
func (s *FallbackStream) SetTrailer(md metadata.MD) { s.trailer = metadata.Join(s.trailer, md) }

// fallbackFor reports whether a failure to start a call on its backend is
// one the fallback answers: the backend is unreachable, not the client gone.
func fallbackFor(err error) bool {
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded:
		return false
	}
	return true
}

// serveFallback hands a call whose backend is unreachable to p's Fallback.
func (p *Proxy) serveFallback(c *call, ss grpc.ServerStream, md metadata.MD, backend string, cause error) error {
	p.log.Warn("backend unreachable: answering from the fallback", "backend", backend, "method", c.method, "err", status.Convert(cause).Message())
	fs := &FallbackStream{Method: c.method, Authority: first(md, ":authority"), Backend: backend, Header: md, ss: ss, c: c}
	err := p.fallback.Answer(fs, cause)
	tr := fs.trailer
	if !fs.sent {
		tr = metadata.Join(tr, metadata.Pairs(HeaderFallback, backend))
	}
	tr = responseMD(tr)
	ss.SetTrailer(tr)
	return c.end(err, tr)
}
