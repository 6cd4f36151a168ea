package ui_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"nhooyr.io/websocket"

	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
)

// liveCall is the test's side of GET /api/invoke/live.
type liveCall struct {
	t    *testing.T
	ctx  context.Context
	conn *websocket.Conn
}

func (e *env) live(ctx context.Context, hdr http.Header) (*liveCall, *http.Response, error) {
	conn, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.base, "http")+"/api/invoke/live", &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		return nil, res, err
	}
	e.t.Cleanup(func() { conn.Close(websocket.StatusNormalClosure, "") })
	return &liveCall{t: e.t, ctx: ctx, conn: conn}, res, nil
}

// mustLive opens a live call for the rest of the test (10 s at most).
func (e *env) mustLive() *liveCall {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	e.t.Cleanup(cancel)
	l, _, err := e.live(ctx, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func (l *liveCall) command(cmd ui.LiveCommand) {
	l.t.Helper()
	b, _ := json.Marshal(cmd)
	if err := l.conn.Write(l.ctx, websocket.MessageText, b); err != nil {
		l.t.Fatal(err)
	}
}

// next reads events until one of kind comes, and returns it with the
// kinds seen on the way.
func (l *liveCall) next(kind string) (ui.StreamEvent, []string) {
	l.t.Helper()
	var seen []string
	for {
		_, b, err := l.conn.Read(l.ctx)
		if err != nil {
			l.t.Fatalf("waiting for %s (after %v): %v", kind, seen, err)
		}
		var ev ui.StreamEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			l.t.Fatal(err)
		}
		seen = append(seen, ev.Event)
		if ev.Event == kind {
			return ev, seen
		}
		if ev.Event == "error" {
			l.t.Fatalf("waiting for %s: error %s", kind, ev.Error)
		}
	}
}

// TestLiveBidiConversation: over the websocket a bidi call is a
// conversation: each message sent is answered before the next is sent,
// the headers come before the first answer, a message the schema refuses
// is rejected without ending the call, and the half-close ends it with
// its trailers and the recorded call.
func TestLiveBidiConversation(t *testing.T) {
	e := newEnv(t, envOpts{})
	l := e.mustLive()
	l.command(ui.LiveCommand{Type: "start", InvokeRequest: ui.InvokeRequest{Method: "grpctap.demo.v1.DemoService/Chat",
		Metadata: map[string][]string{"x-trace": {"live-1"}}}})
	if ev, _ := l.next("open"); ev.Backend != e.backend {
		t.Errorf("open %+v, want backend %s", ev, e.backend)
	}
	l.command(ui.LiveCommand{Type: "send", Message: json.RawMessage(`{"author": {"name": "ann"}, "text": "first"}`)})
	if ev, _ := l.next("sent"); ev.Seq != 1 {
		t.Errorf("sent %+v", ev)
	}
	ev, seen := l.next("message")
	if !strings.Contains(string(ev.JSON), "ann said: first") || !strings.Contains(strings.Join(seen, ","), "header") {
		t.Fatalf("first answer %s after %v", ev.JSON, seen)
	}
	l.command(ui.LiveCommand{Type: "send", Message: json.RawMessage(`{"no_such_field": 1}`)})
	if ev, _ := l.next("rejected"); !strings.Contains(ev.Error, "no_such_field") {
		t.Errorf("rejected %+v", ev)
	}
	// A command that is not JSON is refused too, and the call goes on.
	if err := l.conn.Write(l.ctx, websocket.MessageText, []byte("send it")); err != nil {
		t.Fatal(err)
	}
	if ev, _ := l.next("rejected"); !strings.Contains(ev.Error, "command:") {
		t.Errorf("rejected %+v", ev)
	}
	l.command(ui.LiveCommand{Type: "send", Message: json.RawMessage(`{"author": {"name": "ann"}, "text": "second"}`)})
	if ev, _ := l.next("message"); !strings.Contains(string(ev.JSON), "ann said: second") {
		t.Fatalf("second answer %s", ev.JSON)
	}
	l.command(ui.LiveCommand{Type: "close_send"})
	tr, _ := l.next("trailers")
	if tr.Status == nil || tr.Status.Name != "OK" {
		t.Errorf("trailers %+v", tr)
	}
	end, _ := l.next("end")
	c := end.Call
	if c == nil || c.ID == 0 || c.RequestCount != 2 || c.ResponseCount != 2 || c.RPC != store.RPCBidiStreaming {
		t.Fatalf("end %+v", end.Call)
	}
	if got := c.RequestHeaders[ui.OriginHeader]; len(got) != 1 || got[0] != ui.OriginComposer {
		t.Errorf("recorded origin %v", c.RequestHeaders)
	}
	if got := c.RequestHeaders["x-trace"]; len(got) != 1 || got[0] != "live-1" {
		t.Errorf("recorded metadata %v", c.RequestHeaders)
	}
}

// TestLiveCancel: cancelling a server stream ends it as CANCELLED, recorded.
func TestLiveCancel(t *testing.T) {
	l := newEnv(t, envOpts{}).mustLive()
	l.command(ui.LiveCommand{Type: "start", InvokeRequest: ui.InvokeRequest{Method: "/grpctap.demo.v1.DemoService/Countdown",
		Messages: []json.RawMessage{json.RawMessage(`{"count": 100, "interval": "0.02s"}`)}}})
	l.command(ui.LiveCommand{Type: "close_send"})
	l.next("message")
	l.command(ui.LiveCommand{Type: "cancel"})
	tr, _ := l.next("trailers")
	if tr.Status == nil || tr.Status.Name != "CANCELLED" {
		t.Errorf("trailers %+v", tr)
	}
	end, _ := l.next("end")
	if end.Call == nil || end.Call.ID == 0 || end.Call.Status.Name != "CANCELLED" || end.Call.ResponseCount >= 100 {
		t.Errorf("end %+v", end.Call)
	}
}

// TestLiveRefused: the websocket opens with a GET, yet a read-only
// inspector refuses it, and so does any inspector for another origin.
func TestLiveRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ro := newEnv(t, envOpts{readOnly: true})
	if _, res, err := ro.live(ctx, nil); err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Errorf("read-only inspector: %v %v", res, err)
	}
	e := newEnv(t, envOpts{})
	if _, res, err := e.live(ctx, http.Header{"Origin": {"http://evil.example"}}); err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin: %v %v", res, err)
	}
}

// TestLiveClientStreamAndOneMessageMethods: a client stream answers once
// after the half-close; a method that takes one message refuses a second
// without ending the call.
func TestLiveClientStreamAndOneMessageMethods(t *testing.T) {
	e := newEnv(t, envOpts{})
	l := e.mustLive()
	l.command(ui.LiveCommand{Type: "start", InvokeRequest: ui.InvokeRequest{Method: "/grpctap.demo.v1.DemoService/Sum"}})
	for _, m := range []string{`{"integer": "40"}`, `{"real": 2.5}`} {
		l.command(ui.LiveCommand{Type: "send", Message: json.RawMessage(m)})
		l.next("sent")
	}
	l.command(ui.LiveCommand{Type: "close_send"})
	if ev, _ := l.next("message"); !strings.Contains(string(ev.JSON), `"total":42.5`) {
		t.Errorf("sum %s", ev.JSON)
	}
	if end, _ := l.next("end"); end.Call == nil || end.Call.RequestCount != 2 || end.Call.RPC != store.RPCClientStreaming {
		t.Errorf("end %+v", end.Call)
	}

	l = e.mustLive()
	l.command(ui.LiveCommand{Type: "start", InvokeRequest: ui.InvokeRequest{Method: "/grpctap.demo.v1.DemoService/Countdown"},
		Message: nil})
	l.next("open")
	l.command(ui.LiveCommand{Type: "send", Message: json.RawMessage(`{"count": 2, "interval": "0.01s"}`)})
	l.next("sent")
	l.command(ui.LiveCommand{Type: "send", Message: json.RawMessage(`{"count": 9}`)})
	if ev, _ := l.next("rejected"); !strings.Contains(ev.Error, "not client-streaming") {
		t.Errorf("second message: %+v", ev)
	}
	l.command(ui.LiveCommand{Type: "close_send"})
	if end, _ := l.next("end"); end.Call == nil || end.Call.RequestCount != 1 || end.Call.ResponseCount != 2 {
		t.Errorf("end %+v", end.Call)
	}
}
