package ui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
)

func echo(t *testing.T, e *env, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.client.Echo(ctx, &demopb.EchoRequest{Message: msg, Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_HAPPY}}); err != nil {
		t.Fatal(err)
	}
}

func TestCallsListFiltersAndPaging(t *testing.T) {
	e := newEnv(t, envOpts{})
	echo(t, e, "first needle")
	echo(t, e, "second haystack")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = e.client.Echo(ctx, &demopb.EchoRequest{Message: "boom", Fail: &demopb.FailWith{Code: 5, Message: "no such thing"}})
	e.waitCalls(3)

	count := func(query string) int {
		t.Helper()
		var p store.Page
		if code := e.do("GET", "/api/calls?"+query, nil, &p); code != 200 {
			t.Fatalf("%s: status %d", query, code)
		}
		return len(p.Calls)
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"", 3},
		{"method=*Echo", 3},
		{"method=*Countdown", 0},
		{"status=OK", 2},
		{"status=not_found", 1},
		{"status=5", 1},
		{"protocol=grpc", 3},
		{"protocol=grpc-web", 0},
		{"q=needle", 1},        // a string field, found in the message body
		{"q=NO+SUCH+THING", 1}, // the status message, any case
		{"q=demoservice", 3},   // the method, any case
		{"q=absent-word", 0},
		{"since=1m", 3},
		{"state=open", 0},
	} {
		if got := count(tc.query); got != tc.want {
			t.Errorf("GET /api/calls?%s: %d calls, want %d", tc.query, got, tc.want)
		}
	}

	// Cursor paging: newest first, one at a time, no repeats.
	var ids []int64
	cursor := int64(0)
	for range 5 {
		var p store.Page
		e.do("GET", fmt.Sprintf("/api/calls?limit=1&cursor=%d", cursor), nil, &p)
		for _, c := range p.Calls {
			ids = append(ids, c.ID)
		}
		if p.NextCursor == 0 {
			break
		}
		cursor = p.NextCursor
	}
	if len(ids) != 3 || ids[0] < ids[1] || ids[1] < ids[2] {
		t.Errorf("paged ids %v, want 3 newest first", ids)
	}
	// The failed call's status details come decoded.
	var failed store.Page
	e.do("GET", "/api/calls?status=not_found", nil, &failed)
	var view struct {
		Details []ui.DetailView `json:"status_details_decoded"`
	}
	e.do("GET", fmt.Sprintf("/api/calls/%d", failed.Calls[0].ID), nil, &view)
	if len(view.Details) != 2 || view.Details[0].Type != "google.rpc.ErrorInfo" || !strings.Contains(string(view.Details[0].JSON), "DEMO_REQUESTED_FAILURE") {
		t.Errorf("decoded details %+v", view.Details)
	}

	var bad ui.ErrorBody
	if code := e.do("GET", "/api/calls?status=nonsense", nil, &bad); code != 400 || bad.Error == "" {
		t.Errorf("bad status filter: %d %q", code, bad.Error)
	}
}

func TestCallDetailIsShowJSONDecoded(t *testing.T) {
	e := newEnv(t, envOpts{})
	echo(t, e, "decode me")
	calls := e.waitCalls(1)
	var c store.CallWithMessages
	if code := e.do("GET", fmt.Sprintf("/api/calls/%d", calls[0].ID), nil, &c); code != 200 {
		t.Fatalf("status %d", code)
	}
	if c.Method != "/grpctap.demo.v1.DemoService/Echo" || c.Status == nil || c.Status.Name != "OK" || len(c.Messages) != 2 {
		t.Fatalf("call %+v", c.Call)
	}
	var req struct {
		Message string `json:"message"`
		Author  struct {
			Mood string `json:"mood"`
		} `json:"author"`
	}
	if err := json.Unmarshal(c.Messages[0].JSON, &req); err != nil {
		t.Fatalf("request json %s: %v", c.Messages[0].JSON, err)
	}
	if req.Message != "decode me" || req.Author.Mood != "MOOD_HAPPY" {
		t.Errorf("decoded request %s", c.Messages[0].JSON)
	}
	if code := e.do("GET", "/api/calls/999999", nil, nil); code != 404 {
		t.Errorf("missing call: %d, want 404", code)
	}
}

func TestEventsAnnounceCallsWithinASecond(t *testing.T) {
	e := newEnv(t, envOpts{eventInterval: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/api/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sent := time.Now()
	go func() {
		// Countdown streams three ticks: starts, messages and the end
		// arrive over ~300ms.
		_, _ = e.client.Countdown(ctx, &demopb.CountdownRequest{Count: 3, Interval: durationpb.New(50 * time.Millisecond)})
	}()
	sc := bufio.NewScanner(res.Body)
	var started, ended bool
	var responses int64
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var b ui.Batch
		if err := json.Unmarshal([]byte(data), &b); err != nil {
			t.Fatal(err)
		}
		for _, cu := range b.Calls {
			if cu.Started {
				started = true
				if !strings.HasSuffix(cu.Method, "/Countdown") {
					t.Errorf("started %q", cu.Method)
				}
				if d := time.Since(sent); d > time.Second {
					t.Errorf("start announced after %v", d)
				}
			}
			responses += cu.Response
			if cu.Ended {
				ended = true
			}
		}
		if started && ended {
			break
		}
	}
	if !started || !ended {
		t.Fatalf("started %v ended %v (%v)", started, ended, sc.Err())
	}
	if responses < 1 {
		t.Errorf("no response messages announced")
	}
	cancel()
}

func TestServicesListSchemasAndTemplates(t *testing.T) {
	e := newEnv(t, envOpts{})
	var ans ui.ServicesAnswer
	if code := e.do("GET", "/api/services", nil, &ans); code != 200 {
		t.Fatalf("status %d", code)
	}
	var echoM *ui.MethodInfo
	for _, b := range ans.Backends {
		for _, s := range b.Services {
			for i, m := range s.Methods {
				if m.FullMethod == "/grpctap.demo.v1.DemoService/Echo" {
					echoM = &s.Methods[i]
				}
			}
		}
	}
	if echoM == nil {
		t.Fatalf("no Echo in %+v", ans.Backends)
	}
	if string(echoM.RequestTemplate) != `{"message":"","tags":[],"labels":{}}` {
		t.Errorf("template %s", echoM.RequestTemplate)
	}
	hints := map[string]string{}
	for _, h := range echoM.RequestHints {
		hints[h.Field] = string(h.Example)
	}
	if want := map[string]string{"author": `{"name":"","mood":"MOOD_UNSPECIFIED"}`, "tags": `[""]`, "labels": `{"key":""}`,
		"delay": `"0s"`, "fail": `{"code":0,"message":""}`}; !maps.Equal(hints, want) {
		t.Errorf("hints %v, want %v", hints, want)
	}
	author, ok := ans.Types["grpctap.demo.v1.Author"]
	if !ok {
		t.Fatalf("types %v", ans.Types)
	}
	var enum []string
	for _, f := range author.Fields {
		if f.Name == "mood" {
			enum = f.EnumValues
		}
	}
	if len(enum) != 4 {
		t.Errorf("mood enum values %v", enum)
	}
}

// TestEveryDemoTemplateSendsOK: the composer's template of every demo
// method, sent unchanged, is a request the demo answers with OK.
func TestEveryDemoTemplateSendsOK(t *testing.T) {
	e := newEnv(t, envOpts{})
	var ans ui.ServicesAnswer
	if code := e.do("GET", "/api/services", nil, &ans); code != 200 {
		t.Fatalf("services: status %d", code)
	}
	sent := 0
	for _, b := range ans.Backends {
		for _, s := range b.Services {
			if s.Name != "grpctap.demo.v1.DemoService" {
				continue
			}
			for _, m := range s.Methods {
				var c store.CallWithMessages
				code := e.do("POST", "/api/invoke", map[string]any{"method": m.FullMethod, "messages": []json.RawMessage{m.RequestTemplate}}, &c)
				if code != 200 || c.Status == nil || c.Status.Name != "OK" {
					t.Errorf("%s with its template %s: %d %+v", m.FullMethod, m.RequestTemplate, code, c.Status)
				}
				sent++
			}
		}
	}
	if sent != 4 {
		t.Errorf("sent %d demo methods' templates, want 4", sent)
	}
}

func TestInvokeUnaryIsRecordedAsComposer(t *testing.T) {
	e := newEnv(t, envOpts{})
	var c store.CallWithMessages
	code := e.do("POST", "/api/invoke", map[string]any{
		"method":   "grpctap.demo.v1.DemoService/Echo",
		"metadata": map[string][]string{"x-trace": {"abc"}},
		"messages": []any{map[string]any{"message": "from the composer", "tags": []string{"x"}}},
	}, &c)
	if code != 200 {
		t.Fatalf("invoke: %d", code)
	}
	if c.ID == 0 {
		t.Fatalf("answer is not the recorded call: %+v", c.Call)
	}
	if got := c.RequestHeaders[ui.OriginHeader]; len(got) != 1 || got[0] != ui.OriginComposer {
		t.Errorf("origin header %v", c.RequestHeaders)
	}
	if got := c.RequestHeaders["x-trace"]; len(got) != 1 || got[0] != "abc" {
		t.Errorf("metadata not sent: %v", c.RequestHeaders)
	}
	if c.Status == nil || c.Status.Code != 0 || len(c.Messages) != 2 {
		t.Fatalf("call %+v, %d messages", c.Status, len(c.Messages))
	}
	if !strings.Contains(string(c.Messages[1].JSON), "from the composer") {
		t.Errorf("response %s", c.Messages[1].JSON)
	}
	// Errors of the request itself are 400s, made before any call.
	var eb ui.ErrorBody
	if code := e.do("POST", "/api/invoke", map[string]any{"method": "/grpctap.demo.v1.DemoService/Echo",
		"messages": []any{map[string]any{"nope": 1}}}, &eb); code != 400 {
		t.Errorf("bad message: %d %s", code, eb.Error)
	}
	// A failing call is an answer, not an API error.
	code = e.do("POST", "/api/invoke", map[string]any{"method": "/grpctap.demo.v1.DemoService/Echo",
		"messages": []any{map[string]any{"fail": map[string]any{"code": 7, "message": "no"}}}}, &c)
	if code != 200 || c.Status == nil || c.Status.Name != "PERMISSION_DENIED" {
		t.Errorf("failing call: %d %+v", code, c.Status)
	}
}

func TestInvokeServerStreamingStreams(t *testing.T) {
	e := newEnv(t, envOpts{})
	body := strings.NewReader(`{"method":"/grpctap.demo.v1.DemoService/Countdown","messages":[{"count":3,"interval":"0.05s"}]}`)
	res, err := http.Post(e.base+"/api/invoke?stream=1", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var kinds []string
	var end *store.CallWithMessages
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev ui.StreamEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, ev.Event)
		if ev.Event == "message" && !strings.Contains(string(ev.JSON), `"at"`) {
			t.Errorf("tick %s", ev.JSON)
		}
		if ev.Event == "end" {
			end = ev.Call
		}
		if ev.Event == "trailers" && (ev.Status == nil || ev.Status.Name != "OK") {
			t.Errorf("trailers event %+v", ev)
		}
	}
	if got := strings.Join(kinds, ","); got != "header,message,message,message,trailers,end" {
		t.Errorf("events %s", got)
	}
	if end == nil || end.ID == 0 || end.ResponseCount != 3 || end.RPC != store.RPCServerStreaming {
		t.Errorf("end %+v", end)
	}
}

func TestCollectionsCRUDAndExport(t *testing.T) {
	e := newEnv(t, envOpts{})
	col := ui.Collection{Name: "smoke", Requests: []ui.SavedRequest{{Name: "hello", Method: "/grpctap.demo.v1.DemoService/Echo",
		Messages: []json.RawMessage{json.RawMessage(`{"message":"hi"}`)}, Examples: []json.RawMessage{json.RawMessage(`{"status":{"code":0}}`)}}}}
	var created ui.Collection
	if code := e.do("POST", "/api/collections", col, &created); code != 201 || created.ID == 0 {
		t.Fatalf("create: %d %+v", code, created)
	}
	if code := e.do("POST", "/api/collections", col, nil); code != 409 {
		t.Errorf("duplicate name: %d, want 409", code)
	}
	col.Requests = append(col.Requests, ui.SavedRequest{Name: "tick", Method: "/grpctap.demo.v1.DemoService/Countdown",
		Messages: []json.RawMessage{json.RawMessage(`{"count":1}`)}})
	if code := e.do("PUT", fmt.Sprintf("/api/collections/%d", created.ID), col, nil); code != 200 {
		t.Errorf("update: %d", code)
	}
	var list struct{ Collections []ui.Collection }
	e.do("GET", "/api/collections", nil, &list)
	if len(list.Collections) != 1 || len(list.Collections[0].Requests) != 2 {
		t.Fatalf("list %+v", list)
	}
	// Export, then import under another name.
	var exported ui.Collection
	e.do("GET", fmt.Sprintf("/api/collections/%d?download=1", created.ID), nil, &exported)
	if exported.ID != 0 || len(exported.Requests) != 2 || string(exported.Requests[0].Examples[0]) != `{"status":{"code":0}}` {
		t.Errorf("export %+v", exported)
	}
	exported.Name = "imported"
	if code := e.do("POST", "/api/collections", exported, nil); code != 201 {
		t.Errorf("import: %d", code)
	}
	if code := e.do("DELETE", fmt.Sprintf("/api/collections/%d", created.ID), nil, nil); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if code := e.do("GET", fmt.Sprintf("/api/collections/%d", created.ID), nil, nil); code != 404 {
		t.Errorf("deleted: %d", code)
	}
}

func TestAccessRules(t *testing.T) {
	t.Run("loopback", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		if code := e.do("GET", "/api/calls", nil, nil); code != 200 {
			t.Errorf("plain: %d", code)
		}
		req, _ := http.NewRequest("GET", e.base+"/api/calls", nil)
		req.Host = "attacker.example:7070" // DNS rebinding
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 403 {
			t.Errorf("foreign Host: %d, want 403", res.StatusCode)
		}
		if code := e.do("POST", "/api/collections", ui.Collection{Name: "x"}, nil, "Origin", "http://attacker.example"); code != 403 {
			t.Errorf("cross-origin POST: %d, want 403", code)
		}
		if code := e.do("POST", "/api/collections", ui.Collection{Name: "x"}, nil, "Origin", e.base); code != 201 {
			t.Errorf("same-origin POST: %d, want 201", code)
		}
	})
	t.Run("token", func(t *testing.T) {
		e := newEnv(t, envOpts{token: "s3cret"})
		if code := e.do("GET", "/api/calls", nil, nil); code != 401 {
			t.Errorf("no token: %d", code)
		}
		if code := e.do("GET", "/api/calls", nil, nil, "Authorization", "Bearer wrong"); code != 401 {
			t.Errorf("wrong token: %d", code)
		}
		if code := e.do("GET", "/api/calls", nil, nil, "Authorization", "Bearer s3cret"); code != 200 {
			t.Errorf("bearer: %d", code)
		}
		res, err := http.Get(e.base + "/?token=s3cret")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		var cookie *http.Cookie
		for _, c := range res.Cookies() {
			if c.Value == "s3cret" {
				cookie = c
			}
		}
		if res.StatusCode != 200 || cookie == nil || !cookie.HttpOnly {
			t.Fatalf("?token=: %d, cookies %v", res.StatusCode, res.Cookies())
		}
		if code := e.do("GET", "/api/calls", nil, nil, "Cookie", cookie.Name+"="+cookie.Value); code != 200 {
			t.Errorf("cookie: %d", code)
		}
	})
}

func TestReplayComparesWithTheRecording(t *testing.T) {
	e := newEnv(t, envOpts{})
	echo(t, e, "again please")
	calls := e.waitCalls(1)
	var res struct {
		Verdict string `json:"verdict"`
		Diffs   []any  `json:"diffs"`
	}
	if code := e.do("POST", fmt.Sprintf("/api/calls/%d/replay", calls[0].ID), nil, &res); code != 200 {
		t.Fatalf("replay: %d", code)
	}
	// Echo answers with received_at, so the replay differs in that field
	// only; either way the verdict is a comparison, not an error.
	if res.Verdict != "match" && res.Verdict != "mismatch" {
		t.Errorf("verdict %q", res.Verdict)
	}
}

func TestInvokeClientStreaming(t *testing.T) {
	e := newEnv(t, envOpts{})
	var c store.CallWithMessages
	code := e.do("POST", "/api/invoke", map[string]any{
		"method":   "/grpctap.demo.v1.DemoService/Sum",
		"messages": []any{map[string]any{"integer": "2"}, map[string]any{"real": 0.5}, map[string]any{"integer": "40"}},
	}, &c)
	if code != 200 || c.RequestCount != 3 || c.ResponseCount != 1 {
		t.Fatalf("invoke: %d %+v", code, c.Call)
	}
	if got := string(c.Messages[3].JSON); !strings.Contains(got, `"total":42.5`) || !strings.Contains(got, `"count":3`) {
		t.Errorf("sum %s", got)
	}
	// A unary method takes exactly one message.
	if code := e.do("POST", "/api/invoke", map[string]any{"method": "/grpctap.demo.v1.DemoService/Echo",
		"messages": []any{map[string]any{}, map[string]any{}}}, nil); code != 400 {
		t.Errorf("two messages to a unary method: %d", code)
	}
}

// TestClientCannotForgeLabels: a client that sends grpctap's own labels
// (grpctap-origin: composer, ...) is recorded with them renamed under
// x-client-grpctap-, so the traffic list does not show its call as the
// composer's; the backend sees neither name. The composer's own calls keep
// their label.
func TestClientCannotForgeLabels(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, ui.OriginHeader, ui.OriginComposer, "grpctap-invoke", "forged",
		"grpctap-replay-of", "1", "x-trace", "t1")
	var backendSaw metadata.MD
	if _, err := e.client.Echo(ctx, &demopb.EchoRequest{Message: "forged"}, grpc.Header(&backendSaw)); err != nil {
		t.Fatal(err)
	}
	var composed store.CallWithMessages
	if code := e.do("POST", "/api/invoke", map[string]any{"method": "grpctap.demo.v1.DemoService/Echo",
		"messages": []any{map[string]any{"message": "real"}}}, &composed); code != 200 {
		t.Fatalf("invoke: %d", code)
	}
	// The demo backend echoes every x- header it receives.
	for k := range backendSaw {
		if strings.Contains(k, "grpctap") {
			t.Errorf("the backend received %s: %v", k, backendSaw[k])
		}
	}
	if got := backendSaw["x-trace"]; len(got) != 1 {
		t.Errorf("x-trace not forwarded: %v", backendSaw)
	}

	calls := e.waitCalls(2)
	byOrigin := map[string][]int64{}
	for _, c := range calls {
		origin := ""
		if v := c.RequestHeaders[ui.OriginHeader]; len(v) > 0 {
			origin = v[0]
		}
		byOrigin[origin] = append(byOrigin[origin], c.ID)
	}
	if got := byOrigin[ui.OriginComposer]; len(got) != 1 || got[0] != composed.ID {
		t.Fatalf("calls labelled as the composer's: %v, want only %d", got, composed.ID)
	}
	forged := calls[0]
	if forged.ID == composed.ID {
		forged = calls[1]
	}
	for k := range forged.RequestHeaders {
		if strings.HasPrefix(k, "grpctap-") {
			t.Errorf("the client's call is recorded with label %s: %v", k, forged.RequestHeaders[k])
		}
	}
	want := map[string]string{"x-client-grpctap-origin": "composer", "x-client-grpctap-invoke": "forged", "x-client-grpctap-replay-of": "1"}
	for k, v := range want {
		if got := forged.RequestHeaders[k]; len(got) != 1 || got[0] != v {
			t.Errorf("recorded %s = %v, want [%s]", k, got, v)
		}
	}
}

// TestStatsEndpoint: /api/stats sums up the traffic the proxy recorded,
// per method, with the filters of /api/calls.
func TestStatsEndpoint(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := e.client.Echo(ctx, &demopb.EchoRequest{Message: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := e.client.Echo(ctx, &demopb.EchoRequest{Fail: &demopb.FailWith{Code: 5, Message: "no"}}); err == nil {
			t.Fatal("the failing call succeeded")
		}
	}
	e.waitCalls(7)
	var st store.Stats
	if code := e.do("GET", "/api/stats?since=1h&buckets=12", nil, &st); code != 200 {
		t.Fatalf("stats: %d", code)
	}
	if st.Calls != 7 || st.Errors != 2 || len(st.Series) != 12 || len(st.Methods) != 1 {
		t.Fatalf("stats: %d calls, %d errors, %d buckets, %d methods", st.Calls, st.Errors, len(st.Series), len(st.Methods))
	}
	m := st.Methods[0]
	if m.Method != "/grpctap.demo.v1.DemoService/Echo" || m.Calls != 7 || m.Errors != 2 || m.P50MS <= 0 || m.P99MS < m.P50MS {
		t.Errorf("method stats %+v", m)
	}
	var series int64
	for _, b := range st.Series {
		series += b.Calls
	}
	if series != 7 {
		t.Errorf("the series holds %d calls, want 7", series)
	}
	if code := e.do("GET", "/api/stats?method=*Nothing*", nil, &st); code != 200 || st.Calls != 0 {
		t.Errorf("filtered stats: %d, %d calls", code, st.Calls)
	}
	var eb ui.ErrorBody
	if code := e.do("GET", "/api/stats?buckets=0", nil, &eb); code != 400 {
		t.Errorf("buckets=0: %d %s", code, eb.Error)
	}
}
