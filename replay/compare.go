package replay

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/msgdiff"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/store"
)

// DefaultVolatileHeaders are response headers and trailers left out of the
// comparison unless told otherwise: they change on every call, or are
// compared as the status instead.
var DefaultVolatileHeaders = []string{
	"date", "server-timing", "x-request-id", "x-trace-id", "traceparent", "tracestate",
	"x-envoy-upstream-service-time", "content-length", "content-type",
	"grpc-status", "grpc-message", "grpc-status-details-bin", "grpc-encoding", "grpc-accept-encoding",
}

// Verdicts of a Result.
const (
	Match    = "match"
	Mismatch = "mismatch"
	Error    = "error"
)

// Diff is one difference between a recording and its replay.
type Diff struct {
	// Where names the part: "status.code", "status.message",
	// "status.details[0]", "header", "trailer", "responses" (their count)
	// or "response[i]" (0-based).
	Where string `json:"where"`
	// Path is the field path inside a message, or the header name.
	Path     string `json:"path,omitempty"`
	Recorded any    `json:"recorded"`
	Got      any    `json:"got"`
}

// Result is the comparison of one replayed call with its recording.
type Result struct {
	CallID     int64   `json:"call_id"`
	Method     string  `json:"method"`
	RPC        string  `json:"rpc"`
	Target     string  `json:"target"`
	Verdict    string  `json:"verdict"` // Match, Mismatch or Error
	Error      string  `json:"error,omitempty"`
	Recorded   string  `json:"recorded_status,omitempty"`
	Got        string  `json:"status,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	ComparedBy string  `json:"compared_by,omitempty"`
	Diffs      []Diff  `json:"diffs"`
	// Notes say what weakened the comparison (no schema, truncated
	// recording, dropped events).
	Notes []string `json:"notes,omitempty"`
}

// Comparator compares replays with recordings.
type Comparator struct {
	// Decoder decodes response messages; nil compares schemaless trees.
	Decoder *decode.Decoder
	// IgnoreFields are field paths or patterns left out of message diffs.
	IgnoreFields []msgdiff.FieldPath
	// IgnoreHeaders are header and trailer names (any case) left out;
	// nil means DefaultVolatileHeaders.
	IgnoreHeaders []string
}

// Compare compares out with the recording rec. It never fails: what could
// not be compared is a note or a diff.
func (cm *Comparator) Compare(ctx context.Context, rec *store.CallWithMessages, out *Outcome) Result {
	res := Result{
		CallID: rec.ID, Method: rec.Method, RPC: rec.RPC, Target: out.Target,
		DurationMS: float64(out.Duration.Microseconds()) / 1000,
		Got:        store.CodeName(int(out.Status.Code())),
		Diffs:      []Diff{},
	}
	if rec.Status != nil {
		res.Recorded = rec.Status.Name
	}
	if !out.Reached && out.Status.Code() == codes.Unavailable && (rec.Status == nil || rec.Status.Code != int(codes.Unavailable)) {
		res.Verdict = Error
		res.Error = fmt.Sprintf("target %s unreachable: %s", out.Target, out.Status.Message())
		return res
	}
	if rec.DroppedEvents > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the recording lost %d events (queue full); differences may be the recording's", rec.DroppedEvents))
	}
	cm.compareStatus(ctx, rec, out, &res)
	ignore := cm.ignoreHeaders()
	if len(rec.ResponseHeaders) > 0 || out.Header != nil {
		res.Diffs = append(res.Diffs, diffMD("header", rec.ResponseHeaders, out.Header, ignore, rec.Redacted)...)
	}
	res.Diffs = append(res.Diffs, diffMD("trailer", rec.Trailers, out.Trailer, ignore, rec.Redacted)...)
	cm.compareMessages(ctx, rec, out, &res)
	res.Verdict = Match
	if len(res.Diffs) > 0 {
		res.Verdict = Mismatch
	}
	return res
}

func (cm *Comparator) ignoreHeaders() map[string]bool {
	list := cm.IgnoreHeaders
	if list == nil {
		list = DefaultVolatileHeaders
	}
	m := make(map[string]bool, len(list))
	for _, h := range list {
		m[strings.ToLower(strings.TrimSpace(h))] = true
	}
	return m
}

func (cm *Comparator) compareStatus(ctx context.Context, rec *store.CallWithMessages, out *Outcome, res *Result) {
	if rec.Status == nil {
		res.Notes = append(res.Notes, "the recorded call never ended (still open when recorded): its status is not compared")
		return
	}
	got := out.Status
	if rec.Status.Code != int(got.Code()) {
		res.Diffs = append(res.Diffs, Diff{Where: "status.code", Recorded: rec.Status.Name, Got: store.CodeName(int(got.Code()))})
	}
	if rec.Status.Message != got.Message() {
		res.Diffs = append(res.Diffs, Diff{Where: "status.message", Recorded: rec.Status.Message, Got: got.Message()})
	}
	var gotDetails [][]byte
	for _, a := range got.Proto().GetDetails() {
		b, err := marshalAny(a)
		if err == nil {
			gotDetails = append(gotDetails, b)
		}
	}
	for i := 0; i < max(len(rec.Status.Details), len(gotDetails)); i++ {
		where := fmt.Sprintf("status.details[%d]", i)
		switch {
		case i >= len(rec.Status.Details):
			res.Diffs = append(res.Diffs, Diff{Where: where, Recorded: msgdiff.Absent, Got: cm.anyJSON(ctx, gotDetails[i], out.Target)})
		case i >= len(gotDetails):
			res.Diffs = append(res.Diffs, Diff{Where: where, Recorded: cm.anyJSON(ctx, rec.Status.Details[i], out.Target), Got: msgdiff.Absent})
		case !bytes.Equal(rec.Status.Details[i], gotDetails[i]):
			a, aMD := cm.anyTree(ctx, rec.Status.Details[i], out.Target)
			b, _ := cm.anyTree(ctx, gotDetails[i], out.Target)
			for _, d := range msgdiff.DiffTrees(aMD, a, b, cm.IgnoreFields) {
				res.Diffs = append(res.Diffs, Diff{Where: where, Path: d.Path, Recorded: d.Recorded, Got: d.Got})
			}
		}
	}
}

// compareMessages diffs the response messages one by one.
func (cm *Comparator) compareMessages(ctx context.Context, rec *store.CallWithMessages, out *Outcome, res *Result) {
	var recorded []store.Message
	for _, m := range rec.Messages {
		if m.Direction == store.DirResponse {
			recorded = append(recorded, m)
		}
	}
	if len(recorded) != len(out.Responses) {
		res.Diffs = append(res.Diffs, Diff{Where: "responses", Path: "count", Recorded: len(recorded), Got: len(out.Responses)})
	}
	var outMD protoreflect.MessageDescriptor
	if cm.Decoder != nil {
		if md, _, err := cm.Decoder.FindMethod(ctx, rec.Method, out.Target); err == nil {
			outMD = md.Output()
		} else if md, _, err := cm.Decoder.FindMethod(ctx, rec.Method, rec.Backend); err == nil {
			outMD = md.Output()
		}
	}
	sub := proxy.ContentSubtype(rec.ContentType)
	n := min(len(recorded), len(out.Responses))
	for i := 0; i < n; i++ {
		where := fmt.Sprintf("response[%d]", i)
		if recorded[i].Truncated {
			res.Notes = append(res.Notes, fmt.Sprintf("%s was recorded cut to %d of %d bytes: not compared", where, len(recorded[i].Raw), recorded[i].Size))
			continue
		}
		if bytes.Equal(recorded[i].Raw, out.Responses[i]) {
			if res.ComparedBy == "" {
				res.ComparedBy = cm.mode(ctx, rec, out.Target, sub, recorded[i].Raw)
			}
			continue
		}
		a, aBy, aErr := cm.tree(ctx, rec, out.Target, sub, recorded[i].Raw)
		b, bBy, bErr := cm.tree(ctx, rec, out.Target, sub, out.Responses[i])
		by := aBy
		if bBy != aBy {
			// One side decodes with the schema, the other does not: the
			// new bytes do not fit the recorded type.
			res.Diffs = append(res.Diffs, Diff{Where: where, Recorded: a, Got: describeBad(b, bErr)})
			continue
		}
		res.ComparedBy = by
		if aErr != "" && by != msgdiff.ByBytes {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %s", where, aErr))
		}
		md := outMD
		if by != msgdiff.BySchema {
			md = nil
		}
		for _, d := range msgdiff.DiffTrees(md, a, b, cm.IgnoreFields) {
			res.Diffs = append(res.Diffs, Diff{Where: where, Path: d.Path, Recorded: d.Recorded, Got: d.Got})
		}
	}
	if res.ComparedBy == msgdiff.BySchemaless {
		res.Notes = append(res.Notes, "no schema for "+rec.Method+": messages compared as schemaless trees (field numbers): no .proto file, protoset or reflection of the target had it")
	}
	if res.ComparedBy == msgdiff.ByBytes {
		res.Notes = append(res.Notes, "messages compared as bytes")
	}
}

func describeBad(tree any, why string) any {
	if why != "" {
		return map[string]any{"undecodable": why, "as": tree}
	}
	return tree
}

func (cm *Comparator) mode(ctx context.Context, rec *store.CallWithMessages, target, sub string, raw []byte) string {
	_, by, _ := cm.tree(ctx, rec, target, sub, raw)
	return by
}

// tree decodes one response message into a JSON tree and says how.
func (cm *Comparator) tree(ctx context.Context, rec *store.CallWithMessages, target, sub string, raw []byte) (any, string, string) {
	return msgdiff.DecodeTree(ctx, cm.Decoder, decode.Input{Method: rec.Method, Backend: target, Direction: decode.Response, ContentSubtype: sub, Raw: raw})
}

// diffMD compares recorded and replayed headers or trailers by name, leaving
// out ignored names, pseudo-headers and the headers the recorder redacted.
func diffMD(where string, rec store.Metadata, got metadata.MD, ignore map[string]bool, redacted []string) []Diff {
	keys := map[string]bool{}
	for k := range rec {
		keys[strings.ToLower(k)] = true
	}
	for k := range got {
		keys[strings.ToLower(k)] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		if ignore[k] || headers.Classify(k) == headers.Pseudo || slices.Contains(redacted, k) {
			continue
		}
		names = append(names, k)
	}
	sort.Strings(names)
	var out []Diff
	for _, k := range names {
		rv := rec[k]
		gv := got.Get(k)
		if strings.HasSuffix(k, "-bin") {
			enc := make([]string, len(gv))
			for i, v := range gv {
				enc[i] = store.EncodeBin([]byte(v))
			}
			gv = enc
			rv = normBin(rv)
		}
		if !equalStrings(rv, gv) {
			out = append(out, Diff{Where: where, Path: k, Recorded: valuesOrAbsent(rv), Got: valuesOrAbsent(gv)})
		}
	}
	return out
}

func normBin(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		if b, err := store.DecodeBin(v); err == nil {
			out[i] = store.EncodeBin(b)
		} else {
			out[i] = v
		}
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func valuesOrAbsent(vs []string) any {
	switch len(vs) {
	case 0:
		return msgdiff.Absent
	case 1:
		return vs[0]
	}
	return vs
}

func marshalAny(a *anypb.Any) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(a)
}

// anyTree decodes a serialized google.protobuf.Any (a status detail) into a
// JSON tree: {"@type": ..., fields...} when its type is known, else the
// type URL and a schemaless tree of its value.
func (cm *Comparator) anyTree(ctx context.Context, raw []byte, target string) (any, protoreflect.MessageDescriptor) {
	a := &anypb.Any{}
	if err := proto.Unmarshal(raw, a); err != nil {
		return base64.StdEncoding.EncodeToString(raw), nil
	}
	name := a.GetTypeUrl()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	var md protoreflect.MessageDescriptor
	if cm.Decoder != nil {
		if d, err := cm.Decoder.FindMessage(ctx, name, target); err == nil {
			md = d
		}
	}
	if md == nil {
		if mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name)); err == nil {
			md = mt.Descriptor()
		}
	}
	if md != nil {
		m := dynamicpb.NewMessage(md)
		if err := proto.Unmarshal(a.GetValue(), m); err == nil {
			if b, err := protojson.Marshal(m); err == nil {
				tree := msgdiff.JSONTree(b)
				if obj, ok := tree.(map[string]any); ok {
					obj["@type"] = a.GetTypeUrl()
				}
				return tree, md
			}
		}
	}
	node, _ := decode.Schemaless(a.GetValue())
	return map[string]any{"@type": a.GetTypeUrl(), "value": msgdiff.SchemalessTree(node)}, nil
}

func (cm *Comparator) anyJSON(ctx context.Context, raw []byte, target string) any {
	t, _ := cm.anyTree(ctx, raw, target)
	return t
}
