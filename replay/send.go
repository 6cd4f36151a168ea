package replay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// Headers grpctap adds to the calls it replays. Backends never see them
// (the proxy strips the grpctap- prefix); observers, and so a --db-out
// capture, do.
const (
	HeaderReplayOf = headers.LabelPrefix + "replay-of"
	HeaderOrigin   = headers.LabelPrefix + "origin"
	OriginReplay   = "replay"
)

// DefaultTimeout bounds a replayed call whose recording has no deadline,
// unless Options.Timeout is set.
const DefaultTimeout = 30 * time.Second

// Options configure a Replayer. The zero value of each field is its default.
type Options struct {
	// Target is the address every call is sent to. Default: each call's
	// recorded backend.
	Target string
	// TLS, when set, dials targets over TLS. Default: plaintext (h2c).
	TLS *tls.Config
	// Header adds to, or replaces, each call's recorded request metadata
	// (for credentials the capture redacted). Default: none.
	Header metadata.MD
	// Timeout is each call's deadline. Default: the deadline the recorded
	// client set, and DefaultTimeout for calls recorded without one.
	Timeout time.Duration
	// Observer sees each replayed call as the proxy's observers see
	// forwarded ones, with HeaderReplayOf and HeaderOrigin among its
	// request headers (a recorder for --db-out). Default: none.
	Observer proxy.Observer
	// MaxMsgSize bounds each received message. Default:
	// proxy.DefaultMaxMsgSize.
	MaxMsgSize int
}

// Replayer sends recorded calls. It keeps one connection per target; Close
// closes them.
type Replayer struct {
	opts Options

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

// New returns a Replayer. It dials nothing until the first call.
func New(opts Options) *Replayer {
	if opts.MaxMsgSize <= 0 {
		opts.MaxMsgSize = proxy.DefaultMaxMsgSize
	}
	return &Replayer{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// Close closes every connection the Replayer made.
func (r *Replayer) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	var errs []error
	for addr, cc := range r.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", addr, err))
		}
	}
	r.conns = map[string]*grpc.ClientConn{}
	return errors.Join(errs...)
}

// Target returns the address c is replayed against.
func (r *Replayer) Target(c *store.Call) string {
	if r.opts.Target != "" {
		return r.opts.Target
	}
	return c.Backend
}

func (r *Replayer) conn(target string) (*grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("replayer is closed")
	}
	if cc, ok := r.conns[target]; ok {
		return cc, nil
	}
	creds := insecure.NewCredentials()
	if r.opts.TLS != nil {
		creds = credentials.NewTLS(r.opts.TLS)
	}
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(r.opts.MaxMsgSize), grpc.MaxCallSendMsgSize(r.opts.MaxMsgSize)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	r.conns[target] = cc
	return cc, nil
}

// Outcome is what a replayed call got back.
type Outcome struct {
	Target string
	// Header is the response headers; nil for a trailers-only response.
	Header    metadata.MD
	Responses [][]byte
	Trailer   metadata.MD
	Status    *status.Status
	Start     time.Time
	Duration  time.Duration
	// Sent counts the request messages sent.
	Sent int
	// Reached is false when nothing at all came from the target (no
	// headers, messages or trailers): the status is then grpc-go's own.
	Reached bool
}

// Timeout returns the deadline a replay of c gets: Options.Timeout, else
// recorded (when ok), else DefaultTimeout.
func (r *Replayer) Timeout(recorded time.Duration, ok bool) time.Duration {
	switch {
	case r.opts.Timeout > 0:
		return r.opts.Timeout
	case ok && recorded > 0:
		return recorded
	}
	return DefaultTimeout
}

// RequestMetadata returns the metadata a replay of c sends: the recorded
// request headers as headers.Replay passes them (less pseudo-headers,
// hop-by-hop headers, the ones grpc-go writes itself, grpctap's own and
// those the recorder redacted); then extra's keys replace the recorded
// ones.
func RequestMetadata(c *store.Call, extra metadata.MD) metadata.MD {
	md := headers.Resend(headers.Replay, c.RequestHeaders, c.Redacted)
	for k, vs := range extra {
		md[strings.ToLower(k)] = append([]string(nil), vs...)
	}
	return md
}

// ErrNotReplayable says a recorded call cannot be sent as recorded.
var ErrNotReplayable = errors.New("not replayable")

// ErrNoTarget says a call has nowhere to go: no recorded backend, and no
// Options.Target. It is an ErrNotReplayable.
var ErrNoTarget = fmt.Errorf("no target: %w", ErrNotReplayable)

// Send replays c with the given deadline (0: none) and returns what came
// back. A call that fails on the wire is an Outcome with its status; Send
// errs only when the call could not be attempted (a request recorded cut
// short, a target that cannot be dialed).
func (r *Replayer) Send(ctx context.Context, c *store.CallWithMessages, timeout time.Duration) (*Outcome, error) {
	for _, m := range c.Messages {
		if m.Direction == store.DirRequest && m.Truncated {
			return nil, fmt.Errorf("call %d: request #%d was recorded cut to %d of %d bytes: %w", c.ID, m.Seq, len(m.Raw), m.Size, ErrNotReplayable)
		}
	}
	target := r.Target(&c.Call)
	if target == "" {
		return nil, fmt.Errorf("call %d has no recorded backend and the replayer no target: %w", c.ID, ErrNoTarget)
	}
	cc, err := r.conn(target)
	if err != nil {
		return nil, err
	}
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()

	md := RequestMetadata(&c.Call, r.opts.Header)
	out := &Outcome{Target: target, Start: time.Now()}
	obs := r.observe(ctx, c, target, md, out.Start)

	callOpts := []grpc.CallOption{grpc.ForceCodecV2(rawcodec.Codec{})}
	if sub := proxy.ContentSubtype(c.ContentType); sub != "" {
		callOpts = append(callOpts, grpc.CallContentSubtype(sub))
	}
	if c.Compression != "" && c.Compression != "identity" {
		callOpts = append(callOpts, grpc.UseCompressor(c.Compression))
	}
	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
	cs, err := cc.NewStream(metadata.NewOutgoingContext(ctx, md), desc, c.Method, callOpts...)
	if err != nil {
		out.Status = status.Convert(err)
		out.Duration = time.Since(out.Start)
		obs.end(out)
		return out, nil
	}

	// Responses are read on their own goroutine; the requests are sent on
	// this one, each after the responses the capture shows before it.
	rcv := &receiver{notify: make(chan struct{}, 1), done: make(chan struct{})}
	go rcv.run(cs, obs)

	lastReq := -1
	for i, m := range c.Messages {
		if m.Direction == store.DirRequest {
			lastReq = i
		}
	}
	if lastReq < 0 {
		_ = cs.CloseSend()
	}
	responsesBefore := 0
	for i, m := range c.Messages {
		if i > lastReq {
			break
		}
		if m.Direction == store.DirResponse {
			responsesBefore++
			rcv.waitFor(ctx, responsesBefore)
			continue
		}
		obs.message(proxy.Request, m.Raw)
		if err := cs.SendMsg(&m.Raw); err != nil {
			// The stream is over; its status comes from the receiver.
			break
		}
		out.Sent++
		if i == lastReq {
			_ = cs.CloseSend()
		}
	}
	<-rcv.done
	out.Header = rcv.header
	out.Responses = rcv.got
	out.Trailer = cs.Trailer()
	out.Reached = out.Header != nil || len(out.Responses) > 0 || len(out.Trailer) > 0
	if errors.Is(rcv.err, io.EOF) {
		out.Status = status.New(0, "")
	} else {
		out.Status = status.Convert(rcv.err)
	}
	out.Duration = time.Since(out.Start)
	obs.end(out)
	return out, nil
}

// receiver collects a replayed call's responses.
type receiver struct {
	notify chan struct{} // a response arrived, or the stream ended
	done   chan struct{} // closed when the stream has ended

	mu     sync.Mutex
	got    [][]byte
	header metadata.MD
	err    error // io.EOF for OK
	ended  bool
}

func (rc *receiver) run(cs grpc.ClientStream, obs *observed) {
	defer close(rc.done)
	hdr, err := cs.Header()
	if err == nil && hdr != nil {
		rc.mu.Lock()
		rc.header = hdr
		rc.mu.Unlock()
		obs.header(hdr)
	}
	for {
		var b []byte
		err := cs.RecvMsg(&b)
		rc.mu.Lock()
		if err != nil {
			rc.err, rc.ended = err, true
		} else {
			rc.got = append(rc.got, b)
		}
		rc.mu.Unlock()
		if err == nil {
			obs.message(proxy.Response, b)
		}
		select {
		case rc.notify <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// waitFor returns once n responses have arrived, the stream has ended or
// ctx is done.
func (rc *receiver) waitFor(ctx context.Context, n int) {
	for {
		rc.mu.Lock()
		ok := len(rc.got) >= n || rc.ended
		rc.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-rc.notify:
		case <-ctx.Done():
			return
		}
	}
}

// observed reports a replayed call to Options.Observer.
type observed struct {
	mu  sync.Mutex
	co  proxy.CallObserver
	seq int
}

func (r *Replayer) observe(ctx context.Context, c *store.CallWithMessages, target string, md metadata.MD, start time.Time) *observed {
	o := &observed{}
	if r.opts.Observer == nil {
		return o
	}
	hdr := md.Copy()
	hdr.Set(HeaderReplayOf, strconv.FormatInt(c.ID, 10))
	hdr.Set(HeaderOrigin, OriginReplay)
	ct := c.ContentType
	if ct == "" {
		ct = "application/grpc"
	}
	hdr.Set("content-type", ct)
	cs := &proxy.CallStart{
		Method: c.Method, Backend: target, Authority: target, Protocol: proxy.ProtocolGRPC,
		Header: hdr, ContentType: ct, Compression: c.Compression, Time: start,
	}
	if dl, ok := ctx.Deadline(); ok {
		cs.Deadline = dl
	}
	o.co = r.opts.Observer.StartCall(cs)
	return o
}

func (o *observed) header(md metadata.MD) {
	if o.co == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.co.ResponseHeader(&proxy.Header{MD: md.Copy(), Time: time.Now()})
}

func (o *observed) message(dir proxy.Direction, b []byte) {
	if o.co == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	o.co.Message(proxy.NewMessage(o.seq, dir, time.Now(), append([]byte(nil), b...)))
}

func (o *observed) end(out *Outcome) {
	if o.co == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.co.EndCall(&proxy.CallEnd{Status: out.Status, Trailer: out.Trailer.Copy(), Time: time.Now(), Duration: out.Duration})
}
