package ui_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/ui"
)

// TestReplayAnswers: a replay's answer carries the recorded and the
// replayed answers whole, decoded the way the diff compares them, so the
// inspector shows them side by side: the diff's paths name their fields.
func TestReplayAnswers(t *testing.T) {
	e := newEnv(t, envOpts{})
	echo(t, e, "both sides")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = e.client.Echo(ctx, &demopb.EchoRequest{Message: "x", Fail: &demopb.FailWith{Code: 9, Message: "the demo fails on purpose"}})
	e.waitCalls(2)

	var ok ui.ReplayView
	if code := e.do("POST", "/api/calls/1/replay", nil, &ok); code != 200 {
		t.Fatalf("replay: %d", code)
	}
	rec, got := ok.Answers.Recorded, ok.Answers.Replayed
	if len(rec.Responses) != 1 || len(got.Responses) != 1 {
		t.Fatalf("responses: recorded %v, replayed %v", rec.Responses, got.Responses)
	}
	field := func(tree any, name string) any {
		m, _ := tree.(map[string]any)
		return m[name]
	}
	for side, a := range map[string]ui.Answer{"recorded": rec, "replayed": got} {
		if m := field(a.Responses[0], "message"); m != "both sides" {
			t.Errorf("%s message %v", side, m)
		}
		if a.Status == nil || a.Status.Name != "OK" {
			t.Errorf("%s status %+v", side, a.Status)
		}
		if len(a.Trailers["x-echo-handled-at"]) != 1 {
			t.Errorf("%s trailers %v", side, a.Trailers)
		}
	}
	// The one field that differs is the diff's.
	if ra, ga := field(rec.Responses[0], "receivedAt"), field(got.Responses[0], "receivedAt"); ra == nil || ra == ga {
		t.Errorf("receivedAt: recorded %v, replayed %v", ra, ga)
	}
	found := false
	for _, d := range ok.Diffs {
		if d.Where == "response[0]" {
			if d.Path != "receivedAt" || d.Recorded != field(rec.Responses[0], "receivedAt") || d.Got != field(got.Responses[0], "receivedAt") {
				t.Errorf("diff %+v does not name the answers' receivedAt", d)
			}
			found = true
		}
	}
	if !found {
		t.Errorf("no response diff in %+v", ok.Diffs)
	}

	// A failed call: both statuses with their messages, no responses.
	var failed ui.ReplayView
	if code := e.do("POST", "/api/calls/2/replay", nil, &failed); code != 200 {
		t.Fatalf("replay: %d", code)
	}
	for side, a := range map[string]ui.Answer{"recorded": failed.Answers.Recorded, "replayed": failed.Answers.Replayed} {
		if s := a.Status; s == nil || fmt.Sprintf("%d %s %s", s.Code, s.Name, s.Message) != "9 FAILED_PRECONDITION the demo fails on purpose" {
			t.Errorf("%s status %+v", side, s)
		}
		if len(a.Responses) != 0 {
			t.Errorf("%s responses %v", side, a.Responses)
		}
	}
}
