package ui

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/grpctap/grpctap/capture"
	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// Composer labels: every composer call carries OriginHeader: OriginComposer,
// and InvokeHeader with a nonce the UI finds the recorded call by. Both
// start with proxy.InternalHeaderPrefix, so backends never see them.
const (
	OriginHeader   = proxy.InternalHeaderPrefix + "origin"
	OriginComposer = "composer"
	InvokeHeader   = proxy.InternalHeaderPrefix + "invoke"
)

// InvokeRequest is the body of POST /api/invoke.
type InvokeRequest struct {
	Method string `json:"method"` // "/pkg.Service/Method" or "pkg.Service/Method"
	// Target is the backend address; "" for the one the proxy routes the
	// method to.
	Target   string              `json:"target"`
	Metadata map[string][]string `json:"metadata"`
	// Messages are the request messages as JSON, sent in order, then the
	// end of stream. A unary call has exactly one.
	Messages []json.RawMessage `json:"messages"`
	// TimeoutMS bounds the call (default: the UI's InvokeTimeout).
	TimeoutMS int `json:"timeout_ms"`
}

// lane is one path for composer calls: an in-memory listener served by a
// proxy's grpc.Server, and a client connection to it.
type lane struct {
	own  *proxy.Proxy // a proxy made for this lane, closed with it; nil for the main one
	srv  *grpc.Server
	cc   *grpc.ClientConn
	done chan struct{}
}

func newLane(p *proxy.Proxy, own bool) (*lane, error) {
	lis := bufconn.Listen(1 << 20)
	l := &lane{srv: p.NewInternalServer(), done: make(chan struct{})}
	if own {
		l.own = p
	}
	go func() {
		defer close(l.done)
		_ = l.srv.Serve(lis)
	}()
	cc, err := grpc.NewClient("passthrough:///grpctap-composer",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(proxy.DefaultMaxMsgSize), grpc.MaxCallSendMsgSize(proxy.DefaultMaxMsgSize)))
	if err != nil {
		l.srv.Stop()
		<-l.done
		return nil, err
	}
	l.cc = cc
	return l, nil
}

func (l *lane) close() error {
	err := l.cc.Close()
	l.srv.Stop()
	<-l.done
	if l.own != nil {
		err = errors.Join(err, l.own.Close())
	}
	return err
}

// laneFor returns the lane for method and target and the backend it
// reaches.
func (u *UI) laneFor(method, target string) (*lane, string, error) {
	p := u.opts.Proxy
	routed, ok := p.Route(method)
	if target == "" {
		if !ok {
			return nil, "", fmt.Errorf("no backend is routed for %s: choose a target", method)
		}
		target = routed
	}
	key := ""
	if !ok || target != routed {
		key = target
	}
	u.lanesMu.Lock()
	defer u.lanesMu.Unlock()
	if u.closed {
		return nil, "", errors.New("shutting down")
	}
	if l, ok := u.lanes[key]; ok {
		return l, target, nil
	}
	lp, own := p, false
	if key != "" {
		var err error
		lp, err = proxy.New(proxy.Options{Backend: target, Observer: u.opts.Observer, Logger: u.log, BackendTLS: u.opts.BackendTLS})
		if err != nil {
			return nil, "", err
		}
		own = true
	}
	l, err := newLane(lp, own)
	if err != nil {
		if own {
			lp.Close()
		}
		return nil, "", err
	}
	u.lanes[key] = l
	return l, target, nil
}

// StreamEvent is one line of POST /api/invoke?stream=1 (NDJSON): the
// response headers, each response message as it arrives, and at the end
// the finished call.
type StreamEvent struct {
	Event string `json:"event"` // "header", "message", "end" or "error"
	// Header events.
	Metadata store.Metadata `json:"metadata,omitempty"`
	// Message events.
	Seq         int             `json:"seq,omitempty"`
	OffsetMS    float64         `json:"offset_ms,omitempty"`
	Size        int             `json:"size,omitempty"`
	JSON        json.RawMessage `json:"json,omitempty"`
	DecodeError string          `json:"decode_error,omitempty"`
	// End events: the call as GET /api/calls/{id} shows it.
	Call *store.CallWithMessages `json:"call,omitempty"`
	// Error events: the call could not be made.
	Error string `json:"error,omitempty"`
}

// invocationError is a request the composer refuses before any call.
type invocationError struct {
	code int
	msg  string
}

func (e *invocationError) Error() string { return e.msg }

// invoke serves POST /api/invoke; with ?stream=1 it answers NDJSON
// StreamEvents as the call goes, else the finished call.
func (u *UI) invoke(w http.ResponseWriter, r *http.Request) {
	if u.opts.Proxy == nil {
		writeErr(w, http.StatusNotImplemented, "the composer needs a proxy: run grpctap proxy or grpctap demo (grpctap ui only reads a capture)")
		return
	}
	var req InvokeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<20))
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if !strings.HasPrefix(req.Method, "/") {
		req.Method = "/" + req.Method
	}
	stream := r.URL.Query().Get("stream") == "1"
	if !stream {
		c, err := u.call(r.Context(), &req, nil)
		if err != nil {
			var ie *invocationError
			if errors.As(err, &ie) {
				writeErr(w, ie.code, ie.msg)
				return
			}
			writeErr(w, http.StatusBadGateway, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, c)
		return
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	enc := json.NewEncoder(w)
	emit := func(ev StreamEvent) {
		_ = enc.Encode(ev)
		if fl != nil {
			fl.Flush()
		}
	}
	c, err := u.call(r.Context(), &req, emit)
	if err != nil {
		emit(StreamEvent{Event: "error", Error: err.Error()})
		return
	}
	emit(StreamEvent{Event: "end", Call: c})
}

func nonce() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// call makes one composer call through the proxy and returns it as
// recorded (or, when nothing records, as the composer saw it).
func (u *UI) call(ctx context.Context, req *InvokeRequest, emit func(StreamEvent)) (*store.CallWithMessages, error) {
	if req.Method == "/" || strings.Count(req.Method, "/") != 2 {
		return nil, &invocationError{http.StatusBadRequest, fmt.Sprintf("method %q: want /pkg.Service/Method", req.Method)}
	}
	l, backend, err := u.laneFor(req.Method, req.Target)
	if err != nil {
		return nil, &invocationError{http.StatusBadRequest, err.Error()}
	}
	if md, _, err := u.dec.FindMethod(ctx, req.Method, backend); err == nil && !md.IsStreamingClient() && len(req.Messages) != 1 {
		return nil, &invocationError{http.StatusBadRequest, fmt.Sprintf("%s is not client-streaming: send exactly one message (got %d)", req.Method, len(req.Messages))}
	}
	bodies := make([][]byte, len(req.Messages))
	for i, js := range req.Messages {
		b, err := u.dec.Encode(ctx, req.Method, backend, decode.Request, js)
		if err != nil {
			return nil, &invocationError{http.StatusBadRequest, fmt.Sprintf("message %d: %v", i+1, err)}
		}
		bodies[i] = b
	}
	timeout := u.opts.InvokeTimeout
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	md := metadata.MD{}
	for k, vs := range req.Metadata {
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "" || strings.HasPrefix(k, proxy.InternalHeaderPrefix) {
			continue
		}
		md.Append(k, vs...)
	}
	id := nonce()
	md.Set(OriginHeader, OriginComposer)
	md.Set(InvokeHeader, id)
	wm, _ := u.opts.Store.CurrentWatermark(ctx)

	cctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, md), timeout)
	defer cancel()
	start := time.Now()
	seen := &store.CallWithMessages{Call: store.Call{
		Method: req.Method, Backend: backend, Protocol: proxy.ProtocolGRPC, Start: start.UTC(),
		RequestHeaders: store.Metadata(md.Copy()), ResponseHeaders: store.Metadata{}, Trailers: store.Metadata{},
	}, Messages: []store.Message{}}
	seen.Service, _ = store.SplitMethod(req.Method)
	seq := 0
	note := func(dir string, b []byte) {
		seq++
		seen.Messages = append(seen.Messages, store.Message{Seq: seq, Direction: dir, Time: time.Now().UTC(), Size: int64(len(b)), Raw: b})
	}
	cs, err := l.cc.NewStream(cctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, req.Method, grpc.ForceCodecV2(rawcodec.Codec{}))
	var callErr error
	if err != nil {
		callErr = err
	} else {
		for _, b := range bodies {
			if err := cs.SendMsg(&b); err != nil {
				break // the reason comes from RecvMsg
			}
			note(store.DirRequest, b)
		}
		_ = cs.CloseSend()
		if h, err := cs.Header(); err == nil {
			seen.ResponseHeaders = store.Metadata(h)
			if emit != nil {
				emit(StreamEvent{Event: "header", Metadata: seen.ResponseHeaders})
			}
		}
		for {
			var b []byte
			if err := cs.RecvMsg(&b); err != nil {
				if !errors.Is(err, io.EOF) {
					callErr = err
				}
				break
			}
			note(store.DirResponse, b)
			if emit != nil {
				res := u.dec.Decode(ctx, decode.Input{Method: req.Method, Backend: backend, Direction: decode.Response, Raw: b})
				emit(StreamEvent{Event: "message", Seq: seq, OffsetMS: float64(time.Since(start).Microseconds()) / 1000,
					Size: len(b), JSON: res.JSON, DecodeError: res.Error})
			}
		}
		seen.Trailers = store.Metadata(cs.Trailer())
	}
	end := time.Now()
	st := status.Convert(callErr)
	dms := float64(end.Sub(start).Microseconds()) / 1000
	endUTC := end.UTC()
	seen.End, seen.DurationMS, seen.State = &endUTC, &dms, "closed"
	seen.Status = &store.Status{Code: int(st.Code()), Name: store.CodeName(int(st.Code())), Message: st.Message(), Details: [][]byte{}}
	for _, m := range seen.Messages {
		if m.Direction == store.DirRequest {
			seen.RequestCount++
			seen.RequestBytes += m.Size
		} else {
			seen.ResponseCount++
			seen.ResponseBytes += m.Size
		}
	}
	seen.RPC = store.GuessRPC(seen.RequestCount, seen.ResponseCount)

	if rec := u.recorded(ctx, wm.MaxID, id); rec != nil {
		capture.DecodeCall(ctx, u.dec, rec)
		return rec, nil
	}
	capture.DecodeCall(ctx, u.dec, seen)
	return seen, nil
}

// recorded waits (up to 5s) for the call labelled id to be stored closed
// and returns it; nil when nothing records composer calls or it did not
// arrive.
func (u *UI) recorded(ctx context.Context, afterID int64, id string) *store.CallWithMessages {
	if u.opts.Observer == nil {
		return nil
	}
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var callID int64
	for {
		if callID == 0 {
			callID, _ = u.opts.Store.FindCallByHeader(ctx, afterID, InvokeHeader, id)
		}
		if callID != 0 {
			if c, err := u.opts.Store.GetCall(ctx, callID); err == nil && c.State == "closed" {
				return c
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			u.log.Warn("composer call not found in the capture; answering with what the composer saw", "invoke", id)
			return nil
		case <-tick.C:
		}
	}
}
