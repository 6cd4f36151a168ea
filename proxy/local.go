package proxy

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Local calls are the calls grpctap makes itself (the inspector's
// composer): Open runs one through the proxy's own forwarding handler, in
// process, with no listener, HTTP/2 or codec between; routing, header
// hygiene and the Observer are those of every call.

// LocalOptions describe a call made with Open.
type LocalOptions struct {
	// Method is the full method, "/pkg.Service/Method". Required.
	Method string
	// Header is the request metadata. Its InternalHeaderPrefix keys are
	// grpctap's labels (only a local call can set them): observers see
	// them as they are; the backend never does.
	Header metadata.MD
	// Backend, when set, is where the call goes, whatever the routes say
	// (dialled as every backend, with the proxy's BackendTLS; a target
	// that forward-proxy calls reached since the proxy started, as they
	// did: see Conn). Default "": routed as any call.
	Backend string
	// Recorded is given to observers as CallStart.Recorded: an observer
	// that stores calls calls it with the call's id. Default nil.
	Recorded func(id int64)
}

type localKey struct{}

// localOptions returns the options of a local call's context, or nil.
func localOptions(ctx context.Context) *LocalOptions {
	o, _ := ctx.Value(localKey{}).(*LocalOptions)
	return o
}

// LocalCall is a call made with Open: the client's side of a stream of any
// kind. Send and CloseSend are for one goroutine, Recv and Header for
// another (or the same).
type LocalCall struct {
	ctx    context.Context
	cancel context.CancelFunc
	method string

	reqs       chan []byte
	sendClosed chan struct{}
	closeOnce  sync.Once

	notify     chan struct{} // a response, the headers or the end came
	headerSent chan struct{} // closed once the headers are sent or the call ended
	done       chan struct{} // closed when the handler has returned

	mu        sync.Mutex
	header    metadata.MD
	hdrClosed bool
	resps     [][]byte
	trailer   metadata.MD
	st        *status.Status // valid after done
}

// Open starts a call through the proxy's forwarding handler, as if a
// client had sent it. The call lives until it ends or ctx is done; every
// Open must be followed by reading to the end (Recv until an error) or by
// Cancel, and Done closes when the handler has returned.
func (p *Proxy) Open(ctx context.Context, o LocalOptions) *LocalCall {
	md := o.Header.Copy()
	if md == nil {
		md = metadata.MD{}
	}
	if len(md.Get("content-type")) == 0 {
		md.Set("content-type", "application/grpc")
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &LocalCall{cancel: cancel, method: o.Method,
		reqs: make(chan []byte), sendClosed: make(chan struct{}),
		notify: make(chan struct{}, 1), headerSent: make(chan struct{}), done: make(chan struct{})}
	ctx = context.WithValue(ctx, localKey{}, &o)
	ctx = metadata.NewIncomingContext(ctx, md)
	c.ctx = grpc.NewContextWithServerTransportStream(ctx, localTransport{c})
	go func() {
		err := p.forward(c, true)
		st := status.New(codes.OK, "")
		var d *detailedStatus
		switch {
		case errors.As(err, &d):
			st = d.full
		case err != nil:
			st = status.Convert(err)
		}
		c.mu.Lock()
		c.st = st
		c.closeHeader()
		c.mu.Unlock()
		close(c.done)
		cancel()
	}()
	return c
}

// Send sends one request message. It returns io.EOF when the call has
// ended (Recv says how) and an error after CloseSend.
func (c *LocalCall) Send(b []byte) error {
	select {
	case <-c.sendClosed:
		return errors.New("send after CloseSend")
	default:
	}
	select {
	case c.reqs <- b:
		return nil
	case <-c.done:
		return io.EOF
	case <-c.ctx.Done():
		return io.EOF
	}
}

// CloseSend half-closes the call: the backend sees the end of the
// requests. Later calls do nothing.
func (c *LocalCall) CloseSend() { c.closeOnce.Do(func() { close(c.sendClosed) }) }

// Cancel ends the call as a client's cancellation would.
func (c *LocalCall) Cancel() { c.cancel() }

// Done is closed once the call has ended and the proxy has reported it.
func (c *LocalCall) Done() <-chan struct{} { return c.done }

// Header waits for the response headers and returns them; nil when the
// call ended without any (a trailers-only answer).
func (c *LocalCall) Header() metadata.MD {
	<-c.headerSent
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.header
}

// Recv returns the next response message; at the end, io.EOF for an OK
// status, else the status's error.
func (c *LocalCall) Recv() ([]byte, error) {
	for {
		c.mu.Lock()
		if len(c.resps) > 0 {
			b := c.resps[0]
			c.resps[0] = nil
			c.resps = c.resps[1:]
			c.mu.Unlock()
			return b, nil
		}
		st := c.st
		c.mu.Unlock()
		if st != nil {
			if st.Code() == codes.OK {
				return nil, io.EOF
			}
			return nil, st.Err()
		}
		select {
		case <-c.notify:
		case <-c.done:
		}
	}
}

// Status is how the call ended, with its details; nil before Done.
func (c *LocalCall) Status() *status.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// Trailer returns the trailers; complete once the call is Done.
func (c *LocalCall) Trailer() metadata.MD {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trailer.Copy()
}

func (c *LocalCall) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// closeHeader marks the headers sent; c.mu is held.
func (c *LocalCall) closeHeader() {
	if !c.hdrClosed {
		c.hdrClosed = true
		close(c.headerSent)
		c.wake()
	}
}

// The handler's side: LocalCall is the grpc.ServerStream forward serves.

// Context is the call's context, with the request headers as incoming
// metadata.
func (c *LocalCall) Context() context.Context { return c.ctx }

// SetHeader adds to the response headers before they are sent.
func (c *LocalCall) SetHeader(md metadata.MD) error { return c.addHeader(md, false) }

// SendHeader sends the response headers.
func (c *LocalCall) SendHeader(md metadata.MD) error { return c.addHeader(md, true) }

func (c *LocalCall) addHeader(md metadata.MD, send bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hdrClosed {
		return errors.New("headers already sent")
	}
	c.header = metadata.Join(c.header, md)
	if send {
		c.closeHeader()
	}
	return nil
}

// SetTrailer adds to the trailers.
func (c *LocalCall) SetTrailer(md metadata.MD) {
	c.mu.Lock()
	c.trailer = metadata.Join(c.trailer, md)
	c.mu.Unlock()
}

// SendMsg delivers one response message to Recv.
func (c *LocalCall) SendMsg(m any) error {
	bufs, err := rawCodec{}.Marshal(m) // a frame, or an Options.Own handler's proto.Message
	if err != nil {
		return err
	}
	b := bufs.Materialize()
	bufs.Free()
	if err := c.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	c.mu.Lock()
	if c.header == nil {
		c.header = metadata.MD{}
	}
	c.closeHeader()
	c.resps = append(c.resps, b)
	c.mu.Unlock()
	c.wake()
	return nil
}

// RecvMsg takes the next message Send gave, io.EOF after CloseSend.
func (c *LocalCall) RecvMsg(m any) error {
	select {
	case b := <-c.reqs:
		return rawCodec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m)
	case <-c.sendClosed:
		return io.EOF
	case <-c.ctx.Done():
		return status.FromContextError(c.ctx.Err()).Err()
	}
}

// localTransport is what grpc.MethodFromServerStream and grpc.SetHeader
// find in a local call's context.
type localTransport struct{ c *LocalCall }

func (t localTransport) Method() string                  { return t.c.method }
func (t localTransport) SetHeader(md metadata.MD) error  { return t.c.SetHeader(md) }
func (t localTransport) SendHeader(md metadata.MD) error { return t.c.SendHeader(md) }
func (t localTransport) SetTrailer(md metadata.MD) error { t.c.SetTrailer(md); return nil }
