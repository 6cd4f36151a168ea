package collection

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/msgdiff"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/store"
)

func TestValidateNamesTheBadAssertion(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"name": " ", "requests": []}`, "needs a name"},
		{`{"name": "c", "requests": [{"name": "a", "messages": []}]}`, "request 1 has no method"},
		{`{"name": "c", "requests": [{"name": "a", "method": "/a.B/C", "assertions": [{"status": "NOPE"}]}]}`, `request 1 (a): assertion 1: unknown status code "NOPE"`},
		{`{"name": "c", "requests": [{"name": "a", "method": "/a.B/C", "assertions": [{"status": "OK", "path": "x"}]}]}`, "checks nothing else"},
		{`{"name": "c", "requests": [{"name": "a", "method": "/a.B/C", "assertions": [{"path": "x"}]}]}`, "exactly one of equals, matches or exists"},
		{`{"name": "c", "requests": [{"name": "a", "method": "/a.B/C", "assertions": [{"path": "x", "matches": "("}]}]}`, "matches: error parsing regexp"},
		{`{"name": "c", "requests": [{"name": "a", "method": "/a.B/C", "assertions": [{"path": "a..b", "exists": true}]}]}`, "a dot must be followed"},
		{`{"name": "c", "requests": [{"name": "a", "method": "/a.B/C", "ignore_fields": ["x["]}]}`, "ignore_fields"},
	} {
		_, err := Parse(strings.NewReader(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want an ErrInvalid saying %q", tc.doc, err, tc.want)
		}
	}
	c, err := Parse(strings.NewReader(`{"name": " ok ", "requests": [{"name": "a", "method": "a.B/C", "messages": [{}]}]}`))
	if err != nil || c.Name != "ok" || c.Requests[0].Method != "/a.B/C" {
		t.Errorf("valid collection: %+v, %v", c, err)
	}
}

func TestFromCallLeavesOutWhatIsNotTheRequests(t *testing.T) {
	end := time.Now()
	c := &store.CallWithMessages{Call: store.Call{ID: 9, Method: "/a.B/Do", State: "closed", End: &end,
		RequestHeaders: store.Metadata{"authorization": {"[redacted]"}, "x-trace": {"t"}, "grpctap-origin": {"composer"},
			":authority": {"h"}, "user-agent": {"grpc-go"}, "x-key-bin": {"AAE"}, "x-client-grpctap-origin": {"forged"}},
		Redacted: []string{"authorization"},
		Status:   &store.Status{Name: "OK"}},
		Messages: []store.Message{
			{Seq: 1, Direction: store.DirRequest, Raw: []byte{8, 1}, Size: 2, JSON: json.RawMessage("{\n  \"n\": 1\n}")},
			{Seq: 2, Direction: store.DirResponse, Raw: []byte{8, 2}, Size: 2, JSON: json.RawMessage(`{"n": 2}`)},
		}}
	q, err := FromCall(c, "")
	if err != nil {
		t.Fatal(err)
	}
	if q.Name != "Do #9" || q.FromCall != 9 || len(q.Messages) != 1 || string(q.Messages[0]) != `{"n":1}` {
		t.Errorf("request %+v", q)
	}
	md, _ := json.Marshal(q.Metadata)
	if string(md) != `{"x-key-bin":["AAE"],"x-trace":["t"]}` {
		t.Errorf("metadata %s", md)
	}
	var ex store.CallWithMessages
	if err := json.Unmarshal(q.Examples[0], &ex); err != nil || ex.ID != 9 || len(ex.Messages) != 2 {
		t.Errorf("example %+v %v", ex, err)
	}

	c.Messages[0].JSON = nil
	c.Messages[0].DecodeError = "no descriptor for a.B"
	if _, err := FromCall(c, ""); err == nil || !strings.Contains(err.Error(), "no descriptor for a.B") {
		t.Errorf("request without JSON: %v", err)
	}
	c.State = "open"
	if _, err := FromCall(c, ""); err == nil || !strings.Contains(err.Error(), "still open") {
		t.Errorf("open call: %v", err)
	}
}

func TestAssertions(t *testing.T) {
	trees := []any{
		map[string]any{"author": map[string]any{"name": "ann"}, "tags": []any{"a"}, "count": json.Number("3"), "total_value": json.Number("1.5")},
		map[string]any{"author": map[string]any{"name": "bo"}},
	}
	yes, no := true, false
	for _, tc := range []struct {
		a    Assertion
		code int
		fail string // "" passes; else the Got of the diff
	}{
		{Assertion{Status: "OK"}, 0, ""},
		{Assertion{Status: "not_found"}, 0, "OK"},
		{Assertion{Path: "author.name", Equals: json.RawMessage(`"ann"`)}, 0, ""},
		{Assertion{Path: "author.name", Equals: json.RawMessage(`"bo"`)}, 0, "ann"},
		{Assertion{Response: -1, Path: "author.name", Equals: json.RawMessage(`"bo"`)}, 0, ""},
		{Assertion{Path: "count", Equals: json.RawMessage(`3.0`)}, 0, ""},
		{Assertion{Path: "totalValue", Equals: json.RawMessage(`1.5`)}, 0, ""}, // names match loosely
		{Assertion{Path: "tags", Equals: json.RawMessage(`["a"]`)}, 0, ""},
		{Assertion{Path: "tags[0]", Matches: "^a$"}, 0, ""},
		{Assertion{Path: "count", Matches: "^[0-9]+$"}, 0, ""},
		{Assertion{Path: "nope", Matches: "."}, 0, msgdiff.Absent},
		{Assertion{Path: "tags[1]", Exists: &yes}, 0, msgdiff.Absent},
		{Assertion{Path: "tags[1]", Exists: &no}, 0, ""},
		{Assertion{Response: 5, Path: "author", Exists: &yes}, 0, msgdiff.Absent},
	} {
		if err := tc.a.check(); err != nil {
			t.Fatalf("%+v: %v", tc.a, err)
		}
		d, failed := tc.a.judge(tc.code, trees)
		switch {
		case tc.fail == "" && failed:
			t.Errorf("%+v failed: %+v", tc.a, d)
		case tc.fail != "" && (!failed || d.Got != tc.fail || d.Where != WhereAssert):
			t.Errorf("%+v: %+v %v, want a failure with got %q", tc.a, d, failed, tc.fail)
		}
	}
}

func TestJUnitCountsAndEscapes(t *testing.T) {
	results := []Result{
		{Request: "ok", Result: replay.Result{Method: "/p.S/A", Verdict: replay.Match, DurationMS: 1.25}},
		{Request: `fails <&>`, Result: replay.Result{Method: "/p.S/B", Verdict: replay.Mismatch, DurationMS: 1234.5,
			Diffs: []replay.Diff{{Where: "response[0]", Path: "name", Recorded: "a", Got: "b"}}}},
		{Request: "broken", Result: replay.Result{Method: "/q.T/C", Verdict: replay.Error, Error: "target x unreachable"}},
	}
	var b bytes.Buffer
	if err := WriteJUnit(&b, "smoke", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), results); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`<testsuites name="grpctap test smoke" tests="3" failures="1" errors="1" time="1.236">`,
		`<testsuite name="smoke" tests="3" failures="1" errors="1" skipped="0" time="1.236" timestamp="2026-01-02T03:04:05"`,
		`<testcase name="fails &lt;&amp;&gt;" classname="smoke.p.S" time="1.234">`,
		`<failure message="1 difference from the expected answer" type="mismatch">  response[0].name: &#34;a&#34; → &#34;b&#34;`,
		`<error message="target x unreachable" type="error">target x unreachable</error>`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("JUnit lacks %s:\n%s", want, out)
		}
	}
}

// TestRunRedactedHeaders: a saved request sends its own metadata even
// where its example's recording redacted that header; the example's
// redacted response headers are not compared, whether it names them (saved
// now) or only shows "[redacted]" (saved before the names were kept), and
// an example whose header really read "[redacted]" is compared.
func TestRunRedactedHeaders(t *testing.T) {
	got := make(chan metadata.MD, 8)
	addr := stubserver.Serve(t, grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}),
		grpc.UnknownServiceHandler(func(srv any, ss grpc.ServerStream) error {
			md, _ := metadata.FromIncomingContext(ss.Context())
			got <- md
			_ = ss.SetHeader(metadata.Pairs("set-cookie", "s=2"))
			return rawcodec.Echo(srv, ss)
		})))
	// The well-known types demo.proto imports are built in.
	b, _ := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{protodesc.ToFileDescriptorProto(demopb.File_demo_proto)}})
	src, err := decode.NewFileDescriptorSet(b)
	if err != nil {
		t.Fatal(err)
	}
	rp := replay.New(replay.Options{Target: addr})
	defer rp.Close()
	run := &Runner{Replayer: rp, Comparator: &replay.Comparator{Decoder: decode.New(decode.WithSources(src))}}

	example := func(redacted []string) json.RawMessage {
		c := store.CallWithMessages{Call: store.Call{ID: 1, Method: "/grpctap.demo.v1.DemoService/Echo", State: "closed",
			Status:          &store.Status{Name: "OK", Details: [][]byte{}},
			RequestHeaders:  store.Metadata{"authorization": {headers.Redacted}},
			ResponseHeaders: store.Metadata{"set-cookie": {headers.Redacted}}, Trailers: store.Metadata{}, Redacted: redacted},
			Messages: []store.Message{}}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name       string
		redacted   []string
		cookieDiff bool
	}{
		{"names kept", []string{"authorization", "set-cookie"}, false},
		{"saved before names were kept", nil, false},
		{"a real [redacted]", []string{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &Request{Name: "echo", Method: "/grpctap.demo.v1.DemoService/Echo", Messages: []json.RawMessage{json.RawMessage(`{}`)},
				Metadata: map[string][]string{"authorization": {"Bearer fresh"}}, Examples: []json.RawMessage{example(tc.redacted)}}
			res := run.RunOne(context.Background(), q)
			if res.Verdict == replay.Error {
				t.Fatalf("run: %s", res.Error)
			}
			if v := (<-got).Get("authorization"); len(v) != 1 || v[0] != "Bearer fresh" {
				t.Errorf("backend got authorization %q, want the request's own", v)
			}
			diff := false
			for _, d := range res.Diffs {
				if d.Where == "header" && d.Path == "set-cookie" {
					diff = true
				}
			}
			if diff != tc.cookieDiff {
				t.Errorf("set-cookie compared: %v, want %v (diffs %+v)", diff, tc.cookieDiff, res.Diffs)
			}
		})
	}
}
