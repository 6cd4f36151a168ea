package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// Composer label: every composer call carries OriginHeader: OriginComposer.
// It starts with headers.LabelPrefix, so backends never see it.
const (
	OriginHeader   = headers.LabelPrefix + "origin"
	OriginComposer = "composer"
)

// InvokeRequest is the body of POST /api/invoke, and, without Messages,
// the first message of a live call (GET /api/invoke/live).
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

// StreamEvent is one line of POST /api/invoke?stream=1 (NDJSON), or one
// message of a live call: the response headers, each message as it goes,
// the trailers and status, and at the end the finished call.
type StreamEvent struct {
	// "open" (live calls: the call is under way), "sent" (live calls: a
	// request message went), "rejected" (live calls: a request message
	// was refused; the call goes on), "header", "message", "trailers",
	// "end" or "error".
	Event string `json:"event"`
	// Open events: the backend the call goes to.
	Backend string `json:"backend,omitempty"`
	// Header and trailers events.
	Metadata store.Metadata `json:"metadata,omitempty"`
	// Sent and message events.
	Seq         int             `json:"seq,omitempty"`
	OffsetMS    float64         `json:"offset_ms,omitempty"`
	Size        int             `json:"size,omitempty"`
	JSON        json.RawMessage `json:"json,omitempty"`
	DecodeError string          `json:"decode_error,omitempty"`
	// Trailers events: how the call ended.
	Status *store.Status `json:"status,omitempty"`
	// End events: the call as GET /api/calls/{id} shows it (the
	// recording, or what the composer saw when nothing recorded it).
	Call *store.CallWithMessages `json:"call,omitempty"`
	// Error and rejected events: what went wrong.
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
		writeErr(w, http.StatusNotImplemented, noComposer)
		return
	}
	var req InvokeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<20))
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	stream := r.URL.Query().Get("stream") == "1"
	var emit func(StreamEvent)
	if stream {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Accel-Buffering", "no")
		fl, _ := w.(http.Flusher)
		enc := json.NewEncoder(w)
		emit = func(ev StreamEvent) {
			_ = enc.Encode(ev)
			if fl != nil {
				fl.Flush()
			}
		}
	}
	c, err := u.call(r.Context(), &req, emit)
	var ie *invocationError
	switch {
	case errors.As(err, &ie) && !stream:
		writeErr(w, ie.code, ie.msg)
	case err != nil && !stream:
		writeErr(w, http.StatusBadGateway, err.Error())
	case err != nil:
		emit(StreamEvent{Event: "error", Error: err.Error()})
	case stream:
		emit(StreamEvent{Event: "end", Call: c})
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

const noComposer = "the composer needs a proxy: run grpctap proxy or grpctap demo (grpctap ui only reads a capture)"

// call makes one composer call with all its messages and returns it as
// recorded (or, when nothing records, as the composer saw it).
func (u *UI) call(ctx context.Context, req *InvokeRequest, emit func(StreamEvent)) (*store.CallWithMessages, error) {
	s, err := u.open(ctx, req)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if md, _, err := u.dec.FindMethod(ctx, s.method, s.backend); err == nil && !md.IsStreamingClient() && len(req.Messages) != 1 {
		return nil, &invocationError{http.StatusBadRequest, fmt.Sprintf("%s is not client-streaming: send exactly one message (got %d)", s.method, len(req.Messages))}
	}
	bodies := make([][]byte, len(req.Messages))
	for i, js := range req.Messages {
		b, err := s.encode(ctx, js)
		if err != nil {
			return nil, &invocationError{http.StatusBadRequest, fmt.Sprintf("message %d: %v", i+1, err)}
		}
		bodies[i] = b
	}
	s.start()
	for _, b := range bodies {
		if err := s.send(b); err != nil {
			break // the reason comes with the end of the call
		}
	}
	s.closeSend()
	s.receive(ctx, emit)
	return s.finish(ctx), nil
}

// session is one composer call: opened through the proxy's own handler
// (proxy.Open), fed request messages one at a time, read to its end. It
// notes what it sees, for when nothing records the call, and learns the
// id of the call's recording from the recorder.
type session struct {
	u       *UI
	method  string
	backend string
	md      metadata.MD
	ctx     context.Context
	cancel  context.CancelFunc
	lc      *proxy.LocalCall
	began   time.Time
	// recorded gets the id of the call's recording (0: not recorded).
	recorded chan int64

	mu   sync.Mutex
	seen *store.CallWithMessages
}

// open checks req and prepares its call; nothing is sent until start.
func (u *UI) open(ctx context.Context, req *InvokeRequest) (*session, error) {
	if !strings.HasPrefix(req.Method, "/") {
		req.Method = "/" + req.Method
	}
	if req.Method == "/" || strings.Count(req.Method, "/") != 2 {
		return nil, &invocationError{http.StatusBadRequest, fmt.Sprintf("method %q: want /pkg.Service/Method", req.Method)}
	}
	backend := req.Target
	if backend == "" {
		routed, ok := u.opts.Proxy.Route(req.Method)
		if !ok {
			return nil, &invocationError{http.StatusBadRequest, fmt.Sprintf("no backend is routed for %s: choose a target", req.Method)}
		}
		backend = routed
	}
	md := metadata.MD{}
	for k, vs := range req.Metadata {
		k = strings.ToLower(strings.TrimSpace(k))
		if !headers.Passes(headers.Composer, k) {
			continue
		}
		md.Append(k, vs...)
	}
	md.Set(OriginHeader, OriginComposer)
	timeout := u.opts.InvokeTimeout
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	s := &session{u: u, method: req.Method, backend: req.Target, md: md, recorded: make(chan int64, 1)}
	s.ctx, s.cancel = context.WithTimeout(ctx, timeout)
	if s.backend == "" {
		s.backend = backend
	}
	s.seen = &store.CallWithMessages{Call: store.Call{
		Method: req.Method, Backend: backend, Protocol: proxy.ProtocolGRPC,
		RequestHeaders: store.Metadata(md.Copy()), ResponseHeaders: store.Metadata{}, Trailers: store.Metadata{},
	}, Messages: []store.Message{}}
	s.seen.Service, _ = store.SplitMethod(req.Method)
	return s, nil
}

// encode turns one request message from JSON into bytes.
func (s *session) encode(ctx context.Context, js json.RawMessage) ([]byte, error) {
	return s.u.dec.Encode(ctx, s.method, s.backend, decode.Request, js)
}

// start sends the call's headers through the proxy.
func (s *session) start() {
	s.began = time.Now()
	s.seen.Start = s.began.UTC()
	o := proxy.LocalOptions{Method: s.method, Header: s.md, Recorded: func(id int64) {
		select {
		case s.recorded <- id:
		default:
		}
	}}
	if routed, ok := s.u.opts.Proxy.Route(s.method); !ok || routed != s.backend {
		o.Backend = s.backend
	}
	s.lc = s.u.opts.Proxy.Open(s.ctx, o)
}

func (s *session) note(dir string, b []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := len(s.seen.Messages) + 1
	s.seen.Messages = append(s.seen.Messages, store.Message{Seq: seq, Direction: dir, Time: time.Now().UTC(), Size: int64(len(b)), Raw: b})
	return seq
}

// send sends one request message and returns its sequence number; an
// error when the call is over.
func (s *session) send(b []byte) error {
	if err := s.lc.Send(b); err != nil {
		return err
	}
	s.note(store.DirRequest, b)
	return nil
}

func (s *session) closeSend() { s.lc.CloseSend() }

// receive reports the response headers and messages as they come, until
// the call ends; then its trailers and status.
func (s *session) receive(ctx context.Context, emit func(StreamEvent)) {
	if h := s.lc.Header(); h != nil {
		s.mu.Lock()
		s.seen.ResponseHeaders = store.Metadata(h)
		s.mu.Unlock()
		if emit != nil {
			emit(StreamEvent{Event: "header", Metadata: store.Metadata(h)})
		}
	}
	for {
		b, err := s.lc.Recv()
		if err != nil {
			break
		}
		seq := s.note(store.DirResponse, b)
		if emit != nil {
			res := s.u.dec.Decode(ctx, decode.Input{Method: s.method, Backend: s.backend, Direction: decode.Response, Raw: b})
			emit(StreamEvent{Event: "message", Seq: seq, OffsetMS: msSince(s.began), Size: len(b), JSON: res.JSON, DecodeError: res.Error})
		}
	}
	<-s.lc.Done()
	if emit != nil {
		st := s.lc.Status()
		emit(StreamEvent{Event: "trailers", Metadata: store.Metadata(s.lc.Trailer()),
			Status: &store.Status{Code: int(st.Code()), Name: store.CodeName(int(st.Code())), Message: st.Message(), Details: [][]byte{}}})
	}
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// close cancels the call if it is still going and waits for the proxy to
// finish it.
func (s *session) close() {
	s.cancel()
	if s.lc != nil {
		<-s.lc.Done()
	}
}

// finish returns the ended call: its recording, decoded, when the
// recorder stored it, else what the composer saw.
func (s *session) finish(ctx context.Context) *store.CallWithMessages {
	<-s.lc.Done()
	if rec := s.u.opts.Recorder; rec != nil {
		// Everything of the call was queued before Done: once Flush
		// returns it is written, and the recorder has told its id.
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := rec.Flush(fctx)
		cancel()
		if err != nil {
			s.u.log.Warn("composer call: recording not flushed; answering with what the composer saw", "err", err)
		}
	}
	select {
	case id := <-s.recorded:
		if id != 0 {
			if c, err := s.u.opts.Store.GetCall(ctx, id); err == nil && c.State == "closed" {
				schemas.DecodeCall(ctx, s.u.dec, c)
				return c
			}
		}
	default:
	}
	end := time.Now()
	st := s.lc.Status()
	s.mu.Lock()
	seen := s.seen
	s.mu.Unlock()
	dms := float64(end.Sub(s.began).Microseconds()) / 1000
	endUTC := end.UTC()
	seen.End, seen.DurationMS, seen.State = &endUTC, &dms, "closed"
	seen.Trailers = store.Metadata(s.lc.Trailer())
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
	schemas.DecodeCall(ctx, s.u.dec, seen)
	return seen
}
