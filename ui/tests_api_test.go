package ui_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/grpctap/grpctap/collection"
	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/ui"
)

// startChangedDemo serves the demo backend with altered answers until the
// test ends, and returns its address.
func startChangedDemo(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := demo.ServeWith(lis, demo.Options{Changed: true})
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d.Addr()
}

// TestSaveCallThenRunCollection: a captured call saved to a collection
// (its answer the example, the fields to ignore with it) passes a run
// against its backend, and fails against a changed one with the field
// differences.
func TestSaveCallThenRunCollection(t *testing.T) {
	e := newEnv(t, envOpts{})
	echo(t, e, "saved from the capture")
	id := e.waitCalls(1)[0].ID

	var col ui.Collection
	if code := e.do("POST", fmt.Sprintf("/api/calls/%d/save", id), ui.SaveCallRequest{Collection: "from traffic", IgnoreFields: []string{"receivedAt"}}, &col); code != 200 {
		t.Fatalf("save: %d %+v", code, col)
	}
	if len(col.Requests) != 1 || col.Requests[0].Name != fmt.Sprintf("Echo #%d", id) || col.Requests[0].FromCall != id || len(col.Requests[0].Examples) != 1 {
		t.Fatalf("saved %+v", col.Requests)
	}
	// Saving a second call adds to the same collection.
	echo(t, e, "another")
	id2 := e.waitCalls(2)[0].ID
	if code := e.do("POST", fmt.Sprintf("/api/calls/%d/save", id2), ui.SaveCallRequest{Collection: "from traffic", Name: "second"}, &col); code != 200 || len(col.Requests) != 2 {
		t.Fatalf("second save: %d %+v", code, col.Requests)
	}

	var ans ui.RunAnswer
	run := ui.RunRequest{IgnoreFields: []string{"receivedAt"}, IgnoreHeaders: []string{"x-echo-handled-at"}}
	if code := e.do("POST", fmt.Sprintf("/api/collections/%d/run", col.ID), run, &ans); code != 200 {
		t.Fatalf("run: %d", code)
	}
	if ans.Summary.Match != 2 {
		t.Fatalf("against its backend: %+v", ans.Results)
	}
	run.Target = startChangedDemo(t)
	if code := e.do("POST", fmt.Sprintf("/api/collections/%d/run", col.ID), run, &ans); code != 200 {
		t.Fatalf("run: %d", code)
	}
	if ans.Summary.Mismatch != 2 {
		t.Fatalf("against the changed backend: %+v", ans.Results)
	}
	var paths []string
	for _, d := range ans.Results[0].Diffs {
		paths = append(paths, d.Where+" "+d.Path)
	}
	if got := strings.Join(paths, ", "); got != `response[0] author.name, response[0] labels, response[0] tags` { // the request had neither labels nor tags
		t.Errorf("diffs %s", got)
	}

	// A call that is not there, or no collection named: clear errors.
	var eb ui.ErrorBody
	if code := e.do("POST", "/api/calls/999/save", ui.SaveCallRequest{Collection: "x"}, &eb); code != 404 {
		t.Errorf("missing call: %d %s", code, eb.Error)
	}
	if code := e.do("POST", fmt.Sprintf("/api/calls/%d/save", id), ui.SaveCallRequest{}, &eb); code != 400 {
		t.Errorf("no collection: %d %s", code, eb.Error)
	}
	bad := ui.SaveCallRequest{Collection: "from traffic", Assertions: []collection.Assertion{{Path: "author.name", Matches: "("}}}
	if code := e.do("POST", fmt.Sprintf("/api/calls/%d/save", id), bad, &eb); code != 400 || !strings.Contains(eb.Error, "assertion 1: matches") {
		t.Errorf("bad assertion: %d %s", code, eb.Error)
	}
}

// TestRunComposerRequestWithAssertions: a request written in the composer
// (no target: the proxy's route; no example) runs on its assertions.
func TestRunComposerRequestWithAssertions(t *testing.T) {
	e := newEnv(t, envOpts{})
	doc := map[string]any{"name": "asserted", "requests": []any{map[string]any{
		"name": "echo", "method": "grpctap.demo.v1.DemoService/Echo", "messages": []any{map[string]any{"message": "hi", "author": map[string]any{"name": "bo"}}},
		"assertions": []any{map[string]any{"status": "OK"}, map[string]any{"path": "author.name", "equals": "bo"}, map[string]any{"path": "message", "matches": "^x"}},
	}}}
	var col ui.Collection
	if code := e.do("POST", "/api/collections", doc, &col); code != 201 {
		t.Fatalf("create: %d", code)
	}
	var ans ui.RunAnswer
	if code := e.do("POST", fmt.Sprintf("/api/collections/%d/run", col.ID), nil, &ans); code != 200 || len(ans.Results) != 1 {
		t.Fatalf("run: %d %+v", code, ans)
	}
	r := ans.Results[0]
	if r.Target != e.backend || r.Assertions != 3 || r.Compared || r.Verdict != "mismatch" || len(r.Diffs) != 1 || r.Diffs[0].Path != "response[0].message" {
		t.Errorf("result %+v", r)
	}
	// A bad assertion is refused when the collection is saved.
	doc["name"] = "bad"
	doc["requests"].([]any)[0].(map[string]any)["assertions"] = []any{map[string]any{"path": "a", "exists": true, "equals": 1}}
	var eb ui.ErrorBody
	if code := e.do("POST", "/api/collections", doc, &eb); code != 400 || !strings.Contains(eb.Error, "exactly one of equals, matches or exists") {
		t.Errorf("bad assertion: %d %s", code, eb.Error)
	}
}
