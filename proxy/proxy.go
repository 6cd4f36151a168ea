package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // gzip both ways, as clients and backends ask
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// DefaultMaxMsgSize is the largest message forwarded each way unless
// Options.MaxMsgSize says otherwise: 64 MiB, since gRPC's own default of
// 4 MiB is tighter than many backends allow.
const DefaultMaxMsgSize = 64 << 20

// Options configure a Proxy. The zero value of each field is its default.
type Options struct {
	// Backend is the address calls go to when no route matches. Default:
	// none, and such calls fail with UNIMPLEMENTED.
	Backend string
	// Routes send calls to other backends by method; the longest matching
	// prefix wins. Default: none.
	Routes []Route
	// BackendTLS, when set, makes the proxy dial backends over TLS.
	// Default: plaintext HTTP/2 (h2c).
	BackendTLS *tls.Config
	// ForwardTLS verifies the servers of forward-proxy calls whose client
	// spoke TLS (see Upstream); its ServerName is set per server. Default:
	// the system roots, TLS 1.2 or later.
	ForwardTLS *tls.Config
	// MaxMsgSize bounds each message, both ways. Default: DefaultMaxMsgSize.
	MaxMsgSize int
	// Observer sees every call. Default: none.
	Observer Observer
	// Logger receives one debug line per call and warnings. Default:
	// slog.Default().
	Logger *slog.Logger
	// DialOptions are added to the proxy's own when it dials a backend.
	DialOptions []grpc.DialOption
	// Fallback answers calls whose backend is unreachable. Default: none,
	// and such calls fail with UNAVAILABLE.
	Fallback Fallback
	// Own makes the handlers of the methods the proxy answers itself
	// instead of forwarding them (grpctap's server reflection), keyed by
	// full method name ("/pkg.Service/Method"). New calls it once, with
	// the proxy it is making, whose Backends, Route and Conn the handlers
	// may use once calls come. A method a Route names explicitly is still
	// forwarded (the default Backend does not count). The handlers' streams
	// carry protobuf messages (RecvMsg and SendMsg take a proto.Message),
	// and their contexts the client's request headers as outgoing metadata,
	// as the proxy would forward them.
	// Calls answered here are not reported to the Observer. Default: nil,
	// every method is forwarded.
	Own func(*Proxy) map[string]grpc.StreamHandler
}

// Proxy forwards gRPC calls to backends and reports them to an Observer.
// Serve it with a grpc.Server from NewServer; Close it when done.
type Proxy struct {
	router *router
	pool   *pool
	fwd    *upstreams // forward-proxy targets
	maxMsg int
	obs    Observer
	log    *slog.Logger

	fallback  Fallback
	plaintext bool                          // backends are dialled without TLS
	own       map[string]grpc.StreamHandler // by full method
}

// New makes a Proxy. It dials nothing until the first call.
func New(opts Options) (*Proxy, error) {
	r, err := newRouter(opts.Backend, opts.Routes)
	if err != nil {
		return nil, err
	}
	maxMsg := opts.MaxMsgSize
	if maxMsg <= 0 {
		maxMsg = DefaultMaxMsgSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Proxy{
		router: r,
		pool:   newPool(opts.BackendTLS, maxMsg, opts.DialOptions),
		fwd:    newUpstreams(opts.ForwardTLS, maxMsg, opts.DialOptions),
		maxMsg: maxMsg,
		obs:    opts.Observer,
		log:    log,

		fallback:  opts.Fallback,
		plaintext: opts.BackendTLS == nil,
	}
	if opts.Own != nil {
		p.own = opts.Own(p)
	}
	return p, nil
}

// Backends lists every backend address the proxy may forward to.
func (p *Proxy) Backends() []string { return p.router.backends() }

// Conn returns the proxy's shared connection to a backend, for the parts of
// grpctap that talk to backends themselves (reflection, replay, composer).
// A backend no route names that calls reached through the forward proxy
// is reached as they did (its address after --resolve, TLS or not).
func (p *Proxy) Conn(backend string) (*grpc.ClientConn, error) {
	if !p.router.names(backend) {
		if u, ok := p.fwd.known(backend); ok {
			return p.fwd.conn(u)
		}
	}
	return p.pool.get(backend)
}

// Route returns the backend a method is routed to, and false when none is.
func (p *Proxy) Route(method string) (string, bool) { return p.router.lookup(method) }

// Close closes every backend connection. Calls still in flight fail.
func (p *Proxy) Close() error { return errors.Join(p.pool.close(), p.fwd.pool.close()) }

// NewServer returns a grpc.Server that forwards every method through p.
// It registers no services of its own; extra options are appended.
//
// Request headers starting with InternalHeaderPrefix are grpctap's own
// labels: a client cannot set them. The backend never sees them, and
// observers see them renamed under ClientLabelPrefix
// ("grpctap-origin" → "x-client-grpctap-origin"), so nothing reads a
// client's header as a label of grpctap's.
func (p *Proxy) NewServer(extra ...grpc.ServerOption) *grpc.Server {
	return p.newServer(p.handle, extra)
}

func (p *Proxy) newServer(handler grpc.StreamHandler, extra []grpc.ServerOption) *grpc.Server {
	opts := append([]grpc.ServerOption{
		grpc.UnknownServiceHandler(handler),
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(p.maxMsg),
		grpc.MaxSendMsgSize(p.maxMsg),
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(4 << 20),
		// Reuse a few goroutines (and their grown stacks) for new calls
		// instead of starting one per call; grpc-go still starts one when
		// every worker is busy.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	}, extra...)
	return grpc.NewServer(opts...)
}

type protocolKey struct{}

// WithProtocol marks a request context with the protocol the call arrived
// with (ProtocolGRPCWeb, ...). Bridges that feed the proxy's server through
// ServeHTTP set it; without it a call counts as ProtocolGRPC.
func WithProtocol(ctx context.Context, protocol string) context.Context {
	return context.WithValue(ctx, protocolKey{}, protocol)
}

// ProtocolFromContext returns the protocol WithProtocol set, or ProtocolGRPC.
func ProtocolFromContext(ctx context.Context) string {
	if s, ok := ctx.Value(protocolKey{}).(string); ok && s != "" {
		return s
	}
	return ProtocolGRPC
}

type clientContentTypeKey struct{}

// WithClientContentType marks a request context with the content type the
// client sent, for a bridge that changed it on the way in
// (application/grpc-web-text became application/grpc). Observers see it in
// CallStart.Header; the backend gets the content type the proxy received.
func WithClientContentType(ctx context.Context, contentType string) context.Context {
	return context.WithValue(ctx, clientContentTypeKey{}, contentType)
}

type requestFailureKey struct{}

// WithRequestFailure marks a request context with a function that says why
// reading the client's request failed, for a bridge that knows better than
// grpc-go: through ServeHTTP, grpc-go reports any failed read of the
// request body as UNAVAILABLE, and no typed error survives its RecvMsg.
// When reading the client fails, the proxy calls f; an error carrying a
// gRPC status (what the bridge answers the client) becomes the call's
// status for observers in place of grpc-go's, and nil leaves grpc-go's.
// Forwarding is the same either way: the backend leg is cancelled.
func WithRequestFailure(ctx context.Context, f func() error) context.Context {
	return context.WithValue(ctx, requestFailureKey{}, f)
}

// requestFailure is the reason for err, a failed read of the client's
// request: the one WithRequestFailure's function gives, or err itself.
func requestFailure(ctx context.Context, err error) error {
	if f, ok := ctx.Value(requestFailureKey{}).(func() error); ok {
		if why := f(); why != nil {
			if _, ok := status.FromError(why); ok {
				return why
			}
		}
	}
	return err
}

// bidi is the widest stream shape; the proxy need not know a method's real one.
var bidi = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// handle forwards one call of any kind from a client.
func (p *Proxy) handle(_ any, ss grpc.ServerStream) error { return p.forward(ss, false) }

// forward forwards one call of any kind; labels says whether its
// InternalHeaderPrefix headers are grpctap's own.
func (p *Proxy) forward(ss grpc.ServerStream, labels bool) error {
	ctx := ss.Context()
	start := time.Now()
	method, _ := grpc.MethodFromServerStream(ss)
	local := localOptions(ctx)
	up, forwarded := upstreamFrom(ctx)
	if h, ok := p.own[method]; ok && !forwarded && !p.router.explicit(method) && (local == nil || local.Backend == "") {
		return p.answer(ss, method, h, start)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	backend, routed := p.router.lookup(method)
	switch {
	case forwarded:
		backend, routed = up.Target, true
	case local != nil && local.Backend != "":
		backend, routed = local.Backend, true
	}
	comp := recvCompression(ctx)
	seen := md
	if !labels {
		seen = clientLabels(md)
	}
	if forwarded {
		seen = withForwardLabel(seen, up)
	}
	c := p.startCall(ctx, method, backend, comp, seen, start)

	if !routed {
		return c.end(status.Errorf(codes.Unimplemented,
			"grpctap: no route matches method %s and no default backend is set (use --backend or --route)", method), nil)
	}
	var cc *grpc.ClientConn
	var err error
	if forwarded {
		cc, err = p.fwd.conn(up)
	} else {
		cc, err = p.Conn(backend)
	}
	if err != nil {
		return c.end(status.Errorf(codes.Unavailable, "grpctap: %v", err), nil)
	}

	outCtx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, requestMD(md)))
	defer cancel()
	callOpts := []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}
	if ct := first(md, "content-type"); ct != "" {
		if sub := ContentSubtype(ct); sub != "" {
			callOpts = append(callOpts, grpc.CallContentSubtype(sub))
		}
	}
	if comp != "" && comp != "identity" {
		callOpts = append(callOpts, grpc.UseCompressor(comp))
	}
	cs, err := cc.NewStream(outCtx, bidi, method, callOpts...)
	if err != nil {
		if p.fallback != nil && fallbackFor(err) {
			return p.serveFallback(c, ss, md, backend, err)
		}
		err = p.backendError(backend, err)
		p.readUnsent(ss, c)
		return c.end(err, nil)
	}

	// Requests flow on their own goroutine; responses on this one. A
	// client-side failure cancels the backend stream, which ends
	// forwardResponses; a backend that finishes first ends the call, and the
	// request goroutine exits once grpc-go closes the client's stream.
	go p.forwardRequests(ss, cs, c, cancel)
	err = p.forwardResponses(cs, ss, c, backend)
	if reqErr := c.requestError(); reqErr != nil && status.Code(err) == codes.Canceled {
		// The backend was cancelled because the client's side failed: the
		// call ends with the client side's reason.
		err = status.Convert(reqErr).Err()
	}
	tr := responseMD(cs.Trailer())
	ss.SetTrailer(tr)
	return c.end(err, tr)
}

// answer serves a call with the proxy's own handler for its method. The
// call is not reported to the Observer: it is grpctap's, not traffic to a
// backend.
func (p *Proxy) answer(ss grpc.ServerStream, method string, h grpc.StreamHandler, start time.Time) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	err := h(nil, ownStream{ServerStream: ss, ctx: metadata.NewOutgoingContext(ss.Context(), requestMD(md))})
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.LogAttrs(context.Background(), slog.LevelDebug, "call answered by grpctap",
			slog.String("method", method), slog.String("code", status.Code(err).String()),
			slog.Duration("duration", time.Since(start)))
	}
	return err
}

// ownStream is the stream an Options.Own handler serves: its context
// carries the client's request headers as outgoing metadata, as a
// forwarded call would send them, so that what the handler asks a backend
// with it carries them too (a backend's authorization, say).
type ownStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ownStream) Context() context.Context { return s.ctx }

// unsentWait is how long readUnsent waits for the client's next message
// (or half-close) before answering: unary, server-streaming and most
// client-streaming clients have sent everything by then; a bidi client
// waiting for an answer gets it this much later.
const unsentWait = 250 * time.Millisecond

// readUnsent lets observers see the request messages of a call whose
// backend could not be reached, so that the recording shows (and replay
// can send) what the client asked. It reads until the client half-closes,
// its stream fails, MaxMsgSize bytes or 1,000 messages were read, or no
// message came for unsentWait; the messages go nowhere.
func (p *Proxy) readUnsent(ss grpc.ServerStream, c *call) {
	got := make(chan bool)
	stop := make(chan struct{})
	defer close(stop)
	// The reader ends when the stream does, at the latest once the handler
	// has returned and grpc-go has closed the stream, as forwardRequests.
	go func() {
		size := 0
		for n := 0; ; n++ {
			f := &frame{}
			err := ss.RecvMsg(f)
			more := err == nil
			if more {
				c.message(Request, f)
				size += f.data.Len()
				f.data.Free()
				more = size < p.maxMsg && n < 1000
			}
			select {
			case got <- more:
			case <-stop:
				return
			}
			if !more {
				return
			}
		}
	}()
	t := time.NewTimer(unsentWait)
	defer t.Stop()
	for {
		select {
		case more := <-got:
			if !more {
				return
			}
			t.Reset(unsentWait)
		case <-t.C:
			return
		}
	}
}

// forwardRequests copies client messages to the backend until the client
// half-closes, which it passes on, or the client's stream fails (cancelled,
// reset, message too large), which cancels the backend stream.
func (p *Proxy) forwardRequests(ss grpc.ServerStream, cs grpc.ClientStream, c *call, cancel context.CancelFunc) {
	for {
		f := &frame{}
		if err := ss.RecvMsg(f); err != nil {
			if errors.Is(err, io.EOF) {
				// Half-close travels on: the backend sees end of stream.
				_ = cs.CloseSend()
				return
			}
			c.setRequestError(requestFailure(ss.Context(), err))
			cancel()
			return
		}
		c.message(Request, f)
		if err := cs.SendMsg(f); err != nil {
			// The backend's stream is over; its status reaches the client
			// through forwardResponses. Stop reading the client.
			return
		}
	}
}

// forwardResponses copies the backend's headers and messages to the client
// and returns the backend's final status as an error (nil for OK).
func (p *Proxy) forwardResponses(cs grpc.ClientStream, ss grpc.ServerStream, c *call, backend string) error {
	// Header blocks until the backend sends headers or ends the stream. It
	// returns nil for a trailers-only response, whose metadata arrives as
	// trailers. Sending headers now, not with the first message, keeps them
	// when the backend fails before any message.
	hdr, _ := cs.Header()
	if hdr != nil {
		c.header(hdr)
		if err := ss.SendHeader(responseMD(hdr)); err != nil {
			return clientGone(ss.Context(), err)
		}
	}
	for {
		f := &frame{}
		if err := cs.RecvMsg(f); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if hdr == nil && len(cs.Trailer()) == 0 {
				// Nothing came from the backend at all: the failure is the
				// proxy's own (dial, connection, deadline before any reply).
				return p.backendError(backend, err)
			}
			return passStatus(err)
		}
		c.message(Response, f)
		if err := ss.SendMsg(f); err != nil {
			return clientGone(ss.Context(), err)
		}
	}
}

// passStatus returns the backend's status for the client unchanged. The
// details travel as the backend's own grpc-status-details-bin trailer, byte
// for byte, so the status returned here carries none (grpc-go would encode
// its own copy otherwise).
func passStatus(err error) error {
	st, _ := status.FromError(err)
	if len(st.Proto().GetDetails()) == 0 {
		return st.Err()
	}
	return &detailedStatus{plain: status.New(st.Code(), st.Message()), full: st}
}

// detailedStatus is a backend status whose details reach the client in the
// forwarded trailer. grpc-go's server uses GRPCStatus (no details); the
// observer sees the full status.
type detailedStatus struct {
	plain *status.Status
	full  *status.Status
}

func (d *detailedStatus) Error() string              { return d.full.Err().Error() }
func (d *detailedStatus) GRPCStatus() *status.Status { return d.plain }

// backendError is the status for a failure to reach a backend: the code
// grpc-go chose, with a message naming the backend.
func (p *Proxy) backendError(backend string, err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		return st.Err()
	}
	code := st.Code()
	if code == codes.Unknown || code == codes.Internal {
		code = codes.Unavailable
	}
	msg := st.Message()
	if p.plaintext && p.router.names(backend) && strings.Contains(msg, "error reading server preface") {
		// A TLS server hangs up on (or answers with a TLS alert) the
		// plaintext HTTP/2 preface it cannot read.
		msg += " (the backend did not answer plaintext HTTP/2: if it serves TLS, start grpctap with --backend-tls)"
	}
	p.log.Warn("backend unreachable", "backend", backend, "err", msg)
	return status.Errorf(code, "grpctap: backend %s unavailable: %s", backend, msg)
}

// clientGone turns a failure to write to the client into the status the
// call ends with.
func clientGone(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	return status.Convert(err).Err()
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// recvCompression returns the grpc-encoding the client sent its messages
// with, as grpc-go's server transport stream knows it.
func recvCompression(ctx context.Context) string {
	if s, ok := grpc.ServerTransportStreamFromContext(ctx).(interface{ RecvCompress() string }); ok {
		return s.RecvCompress()
	}
	return ""
}

// call carries one call's observer and logging state. Its methods serialise
// observer calls across the two forwarding goroutines.
type call struct {
	p      *Proxy
	method string
	back   string
	start  time.Time

	mu     sync.Mutex
	obs    CallObserver // nil: nobody is watching
	seq    int
	ended  bool
	reqErr error   // why reading the client failed, if it did
	ev     *events // set with obs
}

// events holds the values a call gives its observer, made once per call
// rather than once per event: a *Message is only valid until Message
// returns (its fields are reset for the next one), and the others are
// reported once per call (a second set of headers gets its own).
type events struct {
	start   CallStart
	hdr     Header
	hdrUsed bool
	msg     Message
	end     CallEnd
}

func (c *call) setRequestError(err error) {
	c.mu.Lock()
	c.reqErr = err
	c.mu.Unlock()
}

func (c *call) requestError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqErr
}

func (p *Proxy) startCall(ctx context.Context, method, backend, comp string, md metadata.MD, start time.Time) *call {
	c := &call{p: p, method: method, back: backend, start: start}
	if p.obs == nil {
		return c
	}
	c.ev = &events{}
	cs := &c.ev.start
	*cs = CallStart{
		Method:      method,
		Backend:     backend,
		Authority:   first(md, ":authority"),
		Protocol:    ProtocolFromContext(ctx),
		Header:      md, // FromIncomingContext made it for this call
		ContentType: first(md, "content-type"),
		Compression: comp,
		Time:        start,
	}
	if ct, ok := ctx.Value(clientContentTypeKey{}).(string); ok && ct != "" {
		cs.Header = md.Copy() // md also goes to the backend
		cs.Header.Set("content-type", ct)
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		cs.Peer = pr.Addr.String()
	}
	if dl, ok := ctx.Deadline(); ok {
		cs.Deadline = dl
	}
	if local := localOptions(ctx); local != nil {
		cs.Recorded = local.Recorded
	}
	c.obs = p.obs.StartCall(cs)
	return c
}

func (c *call) header(md metadata.MD) {
	if c.obs == nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	h := &c.ev.hdr
	if c.ev.hdrUsed {
		h = &Header{} // the observer may keep the first
	}
	c.ev.hdrUsed = true
	*h = Header{MD: md, Time: now} // Header() made md for this call
	c.obs.ResponseHeader(h)
}

func (c *call) message(dir Direction, f *frame) {
	if c.obs == nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.seq++
	// The observer sees the frame's own buffers: they stay valid until the
	// frame is sent, after this returns, and an observer that keeps them
	// takes a reference (Message.Retain).
	c.ev.msg = Message{Seq: c.seq, Direction: dir, Time: now, Size: f.data.Len(), bufs: f.data}
	c.obs.Message(&c.ev.msg)
}

// end reports the end of the call and returns the error for grpc-go to
// send to the client, with the trailers set.
func (c *call) end(err error, trailer metadata.MD) error {
	st := status.Convert(err)
	if d, ok := err.(*detailedStatus); ok {
		st = d.full
	}
	now := time.Now()
	if c.p.log.Enabled(context.Background(), slog.LevelDebug) {
		c.p.log.LogAttrs(context.Background(), slog.LevelDebug, "call",
			slog.String("method", c.method), slog.String("backend", c.back),
			slog.String("code", st.Code().String()), slog.Duration("duration", now.Sub(c.start)))
	}
	if c.obs != nil {
		c.mu.Lock()
		c.ended = true
		if trailer == nil {
			trailer = metadata.MD{}
		}
		// The trailer is the call's own (grpc-go's SetTrailer copied it
		// already), so observers get it without another copy.
		c.ev.end = CallEnd{Status: st, Trailer: trailer, Time: now, Duration: now.Sub(c.start)}
		c.obs.EndCall(&c.ev.end)
		c.mu.Unlock()
	}
	return err
}
