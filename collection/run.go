package collection

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/msgdiff"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/store"
)

// WhereAssert is the Diff.Where of a failed assertion.
const WhereAssert = "assertion"

// Runner runs saved requests as tests.
type Runner struct {
	// Replayer sends each request; its Options.Target, when set, replaces
	// every request's target, and its Options.Header adds to each
	// request's metadata. Required.
	Replayer *replay.Replayer
	// Comparator compares each answer with the request's example: its
	// Decoder also encodes the request messages and decodes the answers
	// for assertions. Required, with a Decoder.
	Comparator *replay.Comparator
	// Route, when set, names the target of a request that has none of its
	// own and no example to take one from (the inspector: the backend the
	// proxy routes the method to). Default nil: such a request is an error.
	Route func(method string) (string, bool)
}

// Result is one request's test result: the replay comparison with its
// example (or, without one, the status and answers alone), failed
// assertions among its Diffs.
type Result struct {
	Request string `json:"request"`
	replay.Result
	// Assertions counts the assertions checked.
	Assertions int `json:"assertions"`
	// Compared says whether the answer was compared with an example.
	Compared bool `json:"compared"`
}

// Run runs every request of c in order and counts the verdicts.
func (r *Runner) Run(ctx context.Context, c *Collection) ([]Result, replay.Summary) {
	out := make([]Result, 0, len(c.Requests))
	var sum replay.Summary
	for i := range c.Requests {
		if ctx.Err() != nil {
			break
		}
		res := r.RunOne(ctx, &c.Requests[i])
		sum.Add(res.Result)
		out = append(out, res)
	}
	return out, sum
}

// RunOne sends q and judges the answer: against its last example, field by
// field with the replay diff, and by its assertions. A request with
// neither passes when its status is OK.
func (r *Runner) RunOne(ctx context.Context, q *Request) Result {
	res := Result{Request: q.Name}
	fail := func(format string, args ...any) Result {
		res.Result = replay.Result{Method: q.Method, Verdict: replay.Error, Error: fmt.Sprintf(format, args...), Diffs: []replay.Diff{}}
		return res
	}
	rec := &store.CallWithMessages{}
	if n := len(q.Examples); n > 0 {
		if err := json.Unmarshal(q.Examples[n-1], rec); err != nil {
			return fail("example: %v", err)
		}
		res.Compared = rec.Status != nil
		if rec.Redacted == nil {
			// An example saved before redacted headers were named.
			rec.Redacted = headers.InBand(rec.RequestHeaders, rec.ResponseHeaders, rec.Trailers)
		}
	}
	rec.Method = q.Method
	rec.Service, _ = store.SplitMethod(q.Method)
	if q.Target != "" {
		rec.Backend = q.Target
	}
	rec.RequestHeaders = store.Metadata(q.Metadata)
	// The request's headers are its own values: none of them is redacted,
	// whatever the example's recording redacted.
	rec.Redacted = slices.DeleteFunc(rec.Redacted, func(k string) bool { _, own := q.Metadata[k]; return own })
	if rec.Backend == "" && r.Route != nil {
		rec.Backend, _ = r.Route(q.Method)
	}
	target := r.Replayer.Target(&rec.Call)
	if target == "" {
		return fail("no target: the request names none, nor does its example, and the runner was given none")
	}
	dec := r.Comparator.Decoder
	msgs, err := r.messages(ctx, q, rec, target)
	if err != nil {
		return fail("%v", err)
	}
	rec.Messages = msgs
	timeout := r.Replayer.Timeout(time.Duration(q.TimeoutMS)*time.Millisecond, q.TimeoutMS > 0)
	got, err := r.Replayer.Send(ctx, rec, timeout)
	if err != nil {
		return fail("%v", err)
	}
	if res.Compared {
		cm := *r.Comparator
		for _, f := range q.IgnoreFields {
			p, _ := msgdiff.ParseFieldPath(f) // Validate checked it
			cm.IgnoreFields = append(append([]msgdiff.FieldPath(nil), cm.IgnoreFields...), p)
		}
		res.Result = cm.Compare(ctx, rec, got)
		if res.Verdict == replay.Error {
			return res
		}
	} else {
		res.Result = replay.Result{Method: q.Method, RPC: rec.RPC, Target: target, Verdict: replay.Match,
			Got: store.CodeName(int(got.Status.Code())), DurationMS: float64(got.Duration.Microseconds()) / 1000, Diffs: []replay.Diff{}}
		if !got.Reached {
			res.Verdict, res.Error = replay.Error, fmt.Sprintf("target %s unreachable: %s", target, got.Status.Message())
			return res
		}
		if len(q.Assertions) == 0 && got.Status.Code() != 0 {
			res.Diffs = append(res.Diffs, replay.Diff{Where: "status.code", Recorded: "OK", Got: res.Got})
		}
	}
	res.CallID = q.FromCall
	sub := proxy.ContentSubtype(rec.ContentType)
	trees := make([]any, len(got.Responses))
	for i, b := range got.Responses {
		trees[i], _, _ = msgdiff.DecodeTree(ctx, dec, decode.Input{Method: q.Method, Backend: target, Direction: decode.Response, ContentSubtype: sub, Raw: b})
	}
	for _, a := range q.Assertions {
		res.Assertions++
		if d, failed := a.judge(int(got.Status.Code()), trees); failed {
			res.Diffs = append(res.Diffs, d)
		}
	}
	if len(res.Diffs) > 0 {
		res.Verdict = replay.Mismatch
	}
	return res
}

// messages are the messages of the call a test sends: q's requests,
// encoded, in the places of the example's (so a stream keeps its shape:
// each request after the answers that came before it), and the example's
// answers, encoded from their JSON when the example has no bytes.
func (r *Runner) messages(ctx context.Context, q *Request, ex *store.CallWithMessages, target string) ([]store.Message, error) {
	dec := r.Comparator.Decoder
	reqs := make([][]byte, len(q.Messages))
	for i, js := range q.Messages {
		b, err := dec.Encode(ctx, q.Method, target, decode.Request, js)
		if err != nil {
			return nil, fmt.Errorf("request message %d: %w", i+1, err)
		}
		reqs[i] = b
	}
	var out []store.Message
	nreq := 0
	for _, m := range ex.Messages {
		if m.Direction == store.DirRequest {
			nreq++
		}
	}
	keepShape := nreq == len(reqs)
	if !keepShape {
		for _, b := range reqs {
			out = append(out, store.Message{Direction: store.DirRequest, Raw: b, Size: int64(len(b))})
		}
	}
	i := 0
	for _, m := range ex.Messages {
		if m.Direction == store.DirRequest {
			if keepShape {
				out = append(out, store.Message{Seq: m.Seq, Direction: store.DirRequest, Raw: reqs[i], Size: int64(len(reqs[i]))})
				i++
			}
			continue
		}
		if len(m.Raw) == 0 && len(m.JSON) > 0 && m.JSON[0] != 'n' {
			b, err := dec.Encode(ctx, q.Method, target, decode.Response, m.JSON)
			if err != nil {
				return nil, fmt.Errorf("example response #%d: %w", m.Seq, err)
			}
			m.Raw, m.Size = b, int64(len(b))
		}
		out = append(out, m)
	}
	for k := range out {
		out[k].Seq = k + 1
	}
	return out, nil
}

// judge checks one assertion against a status code and the decoded
// response messages; it returns the difference when it fails.
func (a *Assertion) judge(code int, trees []any) (replay.Diff, bool) {
	if a.Status != "" {
		want, _ := store.ParseCode(a.Status)
		if want == code {
			return replay.Diff{}, false
		}
		return replay.Diff{Where: WhereAssert, Path: "status", Recorded: store.CodeName(want), Got: store.CodeName(code)}, true
	}
	path, _ := msgdiff.ParseFieldPath(a.Path)
	idx := a.Response
	if idx < 0 {
		idx += len(trees)
	}
	where := fmt.Sprintf("response[%d].%s", idx, a.Path)
	var v any
	found := false
	if idx >= 0 && idx < len(trees) {
		v, found = path.Lookup(trees[idx])
	}
	switch {
	case a.Exists != nil:
		if found == *a.Exists {
			return replay.Diff{}, false
		}
		want, got := "present", msgdiff.Absent
		if !*a.Exists {
			want, got = msgdiff.Absent, "present"
		}
		return replay.Diff{Where: WhereAssert, Path: where, Recorded: want, Got: got}, true
	case a.Matches != "":
		re := regexp.MustCompile(a.Matches) // Validate compiled it
		if found && re.MatchString(text(v)) {
			return replay.Diff{}, false
		}
		return replay.Diff{Where: WhereAssert, Path: where, Recorded: "matches " + a.Matches, Got: valueOrAbsent(v, found)}, true
	default:
		want := jsonValue(a.Equals)
		if found && len(msgdiff.DiffTrees(nil, want, v, nil)) == 0 {
			return replay.Diff{}, false
		}
		return replay.Diff{Where: WhereAssert, Path: where, Recorded: want, Got: valueOrAbsent(v, found)}, true
	}
}

// jsonValue reads JSON as the decoded answers are read (numbers as
// json.Number), so that DiffTrees compares like with like.
func jsonValue(b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	_ = d.Decode(&v) // Validate checked it
	return v
}

func valueOrAbsent(v any, found bool) any {
	if !found {
		return msgdiff.Absent
	}
	return v
}

// text is a value as matches reads it: a string as it is, else its JSON.
func text(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}
