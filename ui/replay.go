package ui

import (
	"context"
	"errors"
	"strings"
	"sync"

	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/msgdiff"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/store"
)

// replayers sends replays for the inspector: one replay.Replayer per
// target ("" for each call's own backend), closed with the UI.
type replayers struct {
	mu     sync.Mutex
	byDest map[string]*replay.Replayer
}

// builtinReplay is the default ReplayFunc: the call is sent again with the
// replay package (recorded through Options.Observer when set, labelled
// grpctap-origin: replay) and compared with its recording.
func (u *UI) builtinReplay(ctx context.Context, c *store.CallWithMessages, target string) (any, error) {
	if !u.enter() {
		return nil, errors.New("shutting down")
	}
	defer u.wg.Done()
	u.replays.mu.Lock()
	r, ok := u.replays.byDest[target]
	if !ok {
		r = replay.New(replay.Options{Target: target, TLS: u.opts.BackendTLS, Observer: u.opts.Observer})
		u.replays.byDest[target] = r
	}
	u.replays.mu.Unlock()
	out, err := r.Send(ctx, c, r.Timeout(0, false))
	if err != nil {
		return nil, err
	}
	cm := replay.Comparator{Decoder: u.dec}
	return ReplayView{Result: cm.Compare(ctx, c, out), Answers: u.replayAnswers(ctx, c, out)}, nil
}

// ReplayView is the answer of POST /api/calls/{id}/replay with the
// built-in replay: the comparison, and both answers whole for the
// inspector to show side by side.
type ReplayView struct {
	replay.Result
	Answers ReplayAnswers `json:"answers"`
}

// ReplayAnswers are the recorded answer and the replayed one.
type ReplayAnswers struct {
	Recorded Answer `json:"recorded"`
	Replayed Answer `json:"replayed"`
}

// Answer is what a call got back: its status (nil for a recording that
// never ended), response headers, response messages decoded as the replay
// compares them (msgdiff.DecodeTree, within decode.DefaultLimits; JSON
// text in the schema's field order when a schema decodes them) and
// trailers.
type Answer struct {
	Status    *AnswerStatus  `json:"status"`
	Headers   store.Metadata `json:"headers"`
	Responses []any          `json:"responses"`
	Trailers  store.Metadata `json:"trailers"`
}

// AnswerStatus is a status without its details (the diff lists those).
type AnswerStatus struct {
	Code    int    `json:"code"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// replayAnswers decodes the recorded and the replayed answers of c with the
// same decoder and target as the comparison, so that the diff's paths name
// fields of the trees shown.
func (u *UI) replayAnswers(ctx context.Context, c *store.CallWithMessages, out *replay.Outcome) ReplayAnswers {
	tree := func(raw []byte) any {
		in := decode.Input{Method: c.Method, Backend: out.Target, Direction: decode.Response,
			ContentSubtype: proxy.ContentSubtype(c.ContentType), Raw: raw, Limits: decode.DefaultLimits}
		// Decoded with a schema: protojson's text as it is, so the fields
		// keep their order (the message's, as in the call's view).
		if r := u.dec.Decode(ctx, in); len(r.JSON) > 0 {
			return r.JSON
		}
		t, _, _ := msgdiff.DecodeTree(ctx, u.dec, in)
		return t
	}
	rec := Answer{Headers: c.ResponseHeaders, Trailers: c.Trailers, Responses: []any{}}
	if c.Status != nil {
		rec.Status = &AnswerStatus{Code: c.Status.Code, Name: c.Status.Name, Message: c.Status.Message}
	}
	for _, m := range c.Messages {
		if m.Direction == store.DirResponse {
			rec.Responses = append(rec.Responses, tree(m.Raw))
		}
	}
	got := Answer{Headers: mdView(out.Header), Trailers: mdView(out.Trailer), Responses: make([]any, len(out.Responses))}
	if out.Status != nil {
		got.Status = &AnswerStatus{Code: int(out.Status.Code()), Name: store.CodeName(int(out.Status.Code())), Message: out.Status.Message()}
	}
	for i, raw := range out.Responses {
		got.Responses[i] = tree(raw)
	}
	return ReplayAnswers{Recorded: rec, Replayed: got}
}

// mdView writes gRPC metadata as the capture stores it: -bin values in
// base64, grpc-go's own pseudo-headers left out.
func mdView(md metadata.MD) store.Metadata {
	out := store.Metadata{}
	for k, vs := range md {
		if strings.HasPrefix(k, ":") {
			continue
		}
		if strings.HasSuffix(k, "-bin") {
			enc := make([]string, len(vs))
			for i, v := range vs {
				enc[i] = store.EncodeBin([]byte(v))
			}
			vs = enc
		}
		out[k] = vs
	}
	return out
}

func (rs *replayers) close() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var first error
	for k, r := range rs.byDest {
		if err := r.Close(); err != nil && first == nil {
			first = err
		}
		delete(rs.byDest, k)
	}
	return first
}
