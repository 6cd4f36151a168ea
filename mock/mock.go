// Package mock answers gRPC clients from a capture, with no backend.
//
// Load builds an index of a capture's finished calls by method. For each
// call a client makes, the Mock picks a recorded call of the same method
// (preferring the same :authority) whose requests match, trying in turn:
// the exact request bytes, equal decoded requests, then the most similar
// request (fewest differing fields). It then plays the recording back:
// response headers (with grpctap-mock-match saying how it matched),
// response messages in order (with the recorded gaps when asked), trailers
// and status with its details. Client streams are read to the end first;
// calls the capture shows interleaved (bidi) get each recorded response
// after the requests that preceded it, matched on the requests recorded
// before the first response.
//
// Mock serves its own grpc.Server (NewServer) or, through Serve and the
// Stream interface, calls the proxy could not forward (--mock-on-unavailable).
package mock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/msgdiff"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// HeaderMatch is the response header saying which recorded call answered
// and how it was chosen: "exact; call=12", "decoded; call=3",
// "similar; call=7; differing=2".
const HeaderMatch = headers.LabelPrefix + "mock-match"

// Level is how a request was matched to a recorded call.
type Level int

// Match levels, from the strictest.
const (
	Exact   Level = iota + 1 // the same request bytes
	Decoded                  // equal decoded requests
	Similar                  // the most similar request of the method
)

func (l Level) String() string {
	switch l {
	case Exact:
		return "exact"
	case Decoded:
		return "decoded"
	case Similar:
		return "similar"
	}
	return "none"
}

// ParseLevel reads "exact", "decoded" or "similar".
func ParseLevel(s string) (Level, error) {
	for _, l := range []Level{Exact, Decoded, Similar} {
		if strings.EqualFold(s, l.String()) {
			return l, nil
		}
	}
	return 0, fmt.Errorf("%q is not a match level (exact, decoded, similar)", s)
}

// Options configure Load. The zero value of each field is its default.
type Options struct {
	// Method is a glob on full method names; only matching calls are
	// served. Default: all.
	Method string
	// Timing keeps the recorded gaps between messages. Default: answer at
	// once.
	Timing bool
	// MaxLevel is the loosest match accepted. Default: Similar.
	MaxLevel Level
	// Decoder decodes requests for Decoded and Similar matches. Default:
	// none (schemaless trees).
	Decoder *decode.Decoder
	// Logger gets one line per call answered. Default: slog.Default().
	Logger *slog.Logger
}

// Stream is one call as the Mock serves it: request messages in, response
// messages out, as raw bytes.
type Stream interface {
	Context() context.Context
	// Recv returns the next request message, io.EOF after the client's
	// half-close.
	Recv() ([]byte, error)
	SendHeader(metadata.MD) error
	Send([]byte) error
	SetTrailer(metadata.MD)
}

// Mock answers calls from recorded ones. It is safe for concurrent use.
type Mock struct {
	opts     Options
	log      *slog.Logger
	byMethod map[string]*method
}

// method holds the recorded calls of one method.
type method struct {
	name  string
	calls []*recorded
	// interleaved: the capture shows responses before the last request
	// (or the schema says bidi), so requests are not read to the end
	// before answering.
	interleaved bool
	// lead is, for interleaved calls, the fewest requests any recorded
	// call got before its first response: the requests read before
	// matching (0 when the server speaks first).
	lead int
}

type recorded struct {
	call *store.CallWithMessages
	reqs [][]byte

	once  sync.Once
	trees []any // decoded requests, filled on first need
}

// Load reads the finished calls of st that opts selects. Calls answered by
// a mock or a proxy fallback (they carry HeaderMatch or
// proxy.HeaderFallback) are left out.
func Load(ctx context.Context, st *store.Store, opts Options) (*Mock, error) {
	if opts.MaxLevel == 0 {
		opts.MaxLevel = Similar
	}
	m := &Mock{opts: opts, log: opts.Logger, byMethod: map[string]*method{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	var ids []int64
	err := st.EachCall(ctx, store.Filter{Method: opts.Method}, func(c *store.Call) error {
		if c.Status == nil || answeredByGrpctap(c) {
			return nil
		}
		ids = append(ids, c.ID)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		c, err := st.GetCall(ctx, id)
		if err != nil {
			return nil, err
		}
		m.add(ctx, c)
	}
	return m, nil
}

// answeredByGrpctap reports whether a recorded call was answered by a mock
// or a proxy fallback rather than by a backend.
func answeredByGrpctap(c *store.Call) bool {
	for _, md := range []store.Metadata{c.ResponseHeaders, c.Trailers} {
		if len(md[HeaderMatch]) > 0 || len(md[proxy.HeaderFallback]) > 0 {
			return true
		}
	}
	return false
}

// add indexes one recorded call (for tests and captures built in memory).
func (m *Mock) add(ctx context.Context, c *store.CallWithMessages) {
	mt := m.byMethod[c.Method]
	if mt == nil {
		mt = &method{name: c.Method}
		if m.opts.Decoder != nil {
			if md, _, err := m.opts.Decoder.FindMethod(ctx, c.Method, c.Backend); err == nil && md.IsStreamingClient() && md.IsStreamingServer() {
				mt.interleaved = true
			}
		}
		m.byMethod[c.Method] = mt
	}
	r := &recorded{call: c}
	sawResponse := false
	lead := 0
	for _, msg := range c.Messages {
		switch msg.Direction {
		case store.DirRequest:
			r.reqs = append(r.reqs, msg.Raw)
			if sawResponse {
				mt.interleaved = true
			} else {
				lead++
			}
		case store.DirResponse:
			sawResponse = true
		}
	}
	if len(mt.calls) == 0 || lead < mt.lead {
		mt.lead = lead
	}
	mt.calls = append(mt.calls, r)
}

// Methods lists the methods the Mock can answer.
func (m *Mock) Methods() []string {
	out := make([]string, 0, len(m.byMethod))
	for k := range m.byMethod {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Calls counts the recorded calls the Mock holds.
func (m *Mock) Calls() int {
	n := 0
	for _, mt := range m.byMethod {
		n += len(mt.calls)
	}
	return n
}

// Serve answers one call of fullMethod made to authority. It returns the
// status for the client (nil for OK) after setting the trailers.
func (m *Mock) Serve(s Stream, fullMethod, authority string) error {
	ctx := s.Context()
	mt := m.byMethod[fullMethod]
	if mt == nil {
		return grpcstatus.Errorf(codes.Unimplemented, "grpctap mock: no recorded calls of %s%s", fullMethod, m.nearestMethods(fullMethod))
	}
	// Read what the match is made on: every request, or for interleaved
	// calls those the capture shows before the first response.
	var in [][]byte
	for {
		if mt.interleaved && len(in) >= mt.lead {
			break
		}
		b, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		in = append(in, b)
	}
	rec, level, score, nearest := m.match(ctx, mt, in, authority)
	if rec == nil {
		return grpcstatus.Errorf(codes.NotFound, "grpctap mock: no recorded call of %s matches this request (%s, loosest match allowed: %s); nearest: %s",
			fullMethod, plural(len(in), "message"), m.opts.MaxLevel, nearest)
	}
	how := fmt.Sprintf("%s; call=%d", level, rec.call.ID)
	if level == Similar {
		how += "; differing=" + strconv.Itoa(score)
	}
	m.log.Info("mock answered", "method", fullMethod, "match", level.String(), "call", rec.call.ID, "differing", score)
	return m.play(s, mt, rec, len(in), how)
}

// play sends the recorded answer. consumed requests were read already.
func (m *Mock) play(s Stream, mt *method, rec *recorded, consumed int, how string) error {
	ctx := s.Context()
	c := rec.call
	hdr := headers.Resend(headers.Mock, c.ResponseHeaders, c.Redacted)
	hdr.Set(HeaderMatch, how)
	if err := s.SendHeader(hdr); err != nil {
		return err
	}
	var prev time.Time
	reqSeen := 0
	clientDone := false
	for _, msg := range c.Messages {
		if m.opts.Timing && !prev.IsZero() {
			if err := sleep(ctx, msg.Time.Sub(prev)); err != nil {
				return grpcstatus.FromContextError(err).Err()
			}
		}
		prev = msg.Time
		if msg.Direction == store.DirRequest {
			reqSeen++
			if reqSeen <= consumed || clientDone || !mt.interleaved {
				continue
			}
			if _, err := s.Recv(); err != nil {
				if !errors.Is(err, io.EOF) {
					return err
				}
				clientDone = true
			}
			continue
		}
		if msg.Truncated {
			return grpcstatus.Errorf(codes.DataLoss, "grpctap mock: call %d response #%d was recorded cut to %d of %d bytes (the recorder's limit on a body)", c.ID, msg.Seq, len(msg.Raw), msg.Size)
		}
		if err := s.Send(msg.Raw); err != nil {
			return err
		}
	}
	s.SetTrailer(headers.Resend(headers.Mock, c.Trailers, c.Redacted))
	return recordedStatus(c.Status)
}

// match picks the recorded call for requests in. It returns nil and a
// description of the nearest calls when none is acceptable.
func (m *Mock) match(ctx context.Context, mt *method, in [][]byte, authority string) (*recorded, Level, int, string) {
	// Candidates in preference order: same authority first, newest first.
	cands := append([]*recorded(nil), mt.calls...)
	sort.SliceStable(cands, func(i, j int) bool {
		ai, aj := cands[i].call.Authority == authority, cands[j].call.Authority == authority
		if ai != aj {
			return ai
		}
		return cands[i].call.ID > cands[j].call.ID
	})
	prefix := func(r *recorded) [][]byte {
		if mt.interleaved && len(r.reqs) > len(in) {
			return r.reqs[:len(in)]
		}
		return r.reqs
	}
	for _, r := range cands {
		if equalBytes(prefix(r), in) {
			return r, Exact, 0, ""
		}
	}
	if m.opts.MaxLevel < Decoded {
		return nil, 0, 0, m.nearest(ctx, mt, cands, in, prefix)
	}
	inTrees := m.trees(ctx, mt.name, cands[0].call, in)
	for _, r := range cands {
		if reflect.DeepEqual(m.recordedTrees(ctx, r, len(prefix(r))), inTrees) {
			return r, Decoded, 0, ""
		}
	}
	if m.opts.MaxLevel < Similar {
		return nil, 0, 0, m.nearest(ctx, mt, cands, in, prefix)
	}
	best, bestScore := (*recorded)(nil), 0
	for _, r := range cands {
		s := m.distance(ctx, r, inTrees, len(prefix(r)))
		if best == nil || s < bestScore {
			best, bestScore = r, s
		}
	}
	return best, Similar, bestScore, ""
}

// nearest names up to three recorded calls closest to in.
func (m *Mock) nearest(ctx context.Context, mt *method, cands []*recorded, in [][]byte, prefix func(*recorded) [][]byte) string {
	inTrees := m.trees(ctx, mt.name, cands[0].call, in)
	type scored struct {
		id    int64
		score int
	}
	var all []scored
	for _, r := range cands {
		all = append(all, scored{r.call.ID, m.distance(ctx, r, inTrees, len(prefix(r)))})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].score < all[j].score })
	var parts []string
	for i, s := range all {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("call %d (%s)", s.id, plural(s.score, "differing field")))
	}
	return strings.Join(parts, ", ")
}

// distance counts differing fields between r's first n requests and in,
// plus ten per missing or extra message.
func (m *Mock) distance(ctx context.Context, r *recorded, in []any, n int) int {
	rt := m.recordedTrees(ctx, r, n)
	d := 10 * abs(len(rt)-len(in))
	for i := 0; i < min(len(rt), len(in)); i++ {
		d += len(msgdiff.DiffTrees(nil, rt[i], in[i], nil))
	}
	return d
}

func (m *Mock) recordedTrees(ctx context.Context, r *recorded, n int) []any {
	r.once.Do(func() { r.trees = m.trees(ctx, r.call.Method, r.call, r.reqs) })
	return r.trees[:min(n, len(r.trees))]
}

func (m *Mock) trees(ctx context.Context, fullMethod string, like *store.CallWithMessages, msgs [][]byte) []any {
	out := make([]any, len(msgs))
	sub := proxy.ContentSubtype(like.ContentType)
	for i, b := range msgs {
		out[i], _, _ = msgdiff.DecodeTree(ctx, m.opts.Decoder, decode.Input{Method: fullMethod, Backend: like.Backend, Direction: decode.Request, ContentSubtype: sub, Raw: b})
	}
	return out
}

// nearestMethods suggests recorded methods for an unknown one: those of the
// same service, else all, at most five.
func (m *Mock) nearestMethods(fullMethod string) string {
	svc, _ := store.SplitMethod(fullMethod)
	var same, all []string
	for _, name := range m.Methods() {
		all = append(all, name)
		if s, _ := store.SplitMethod(name); s == svc {
			same = append(same, name)
		}
	}
	list := same
	if len(list) == 0 {
		list = all
	}
	if len(list) == 0 {
		return " (the capture holds no finished calls)"
	}
	if len(list) > 5 {
		list = list[:5]
	}
	return "; recorded: " + strings.Join(list, ", ")
}

// recordedStatus rebuilds a recorded status with its details.
func recordedStatus(s *store.Status) error {
	if s == nil || s.Code == 0 {
		return nil
	}
	p := &status.Status{Code: int32(s.Code), Message: s.Message}
	for _, d := range s.Details {
		a := &anypb.Any{}
		if err := proto.Unmarshal(d, a); err == nil {
			p.Details = append(p.Details, a)
		}
	}
	return grpcstatus.FromProto(p).Err()
}

func equalBytes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if string(a[i]) != string(b[i]) {
			return false
		}
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
