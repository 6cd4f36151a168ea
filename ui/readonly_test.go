package ui_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
)

// calls is the number of calls in the capture, once the recorder has
// written everything it was given.
func (e *env) calls(hdr ...string) int {
	e.t.Helper()
	if err := e.rec.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	var p store.Page
	if code := e.do("GET", "/api/calls?limit=1000", nil, &p, hdr...); code != 200 {
		e.t.Fatalf("GET /api/calls: %d", code)
	}
	return len(p.Calls)
}

// status sends a GET and returns its status code without reading the
// body (for /api/events, which does not end).
func (e *env) status(path string, hdr ...string) int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := e.send(ctx, "GET", path, nil, hdr)
	cancel()
	res.Body.Close()
	return res.StatusCode
}

// TestReadOnlyRefusesWhatSendsOrWrites: a read-only inspector, and a
// read-only token on a full one, show every call, message, service,
// collection and the live feed, and refuse with 403 and a reason every
// request that would send a call (composer, streaming composer, replay, to
// the routed backend or to a target of the caller's choice) or change a
// collection. Nothing reaches a backend, nothing new is recorded, the
// collection stays as it was. The full token on the same inspector still
// does everything.
func TestReadOnlyRefusesWhatSendsOrWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   envOpts
		reader []string // headers of a reader
		writer []string // headers of someone who may write; nil: nobody may
		reason string
	}{
		{name: "read-only inspector", opts: envOpts{readOnly: true}, reason: "this inspector is read-only"},
		{name: "read-only token", opts: envOpts{token: "full-s3cret", readOnlyToken: "look-only"},
			reader: []string{"Authorization", "Bearer look-only"}, writer: []string{"Authorization", "Bearer full-s3cret"},
			reason: "this token grants read access only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts)
			target, reached := stubserver.CountedRawEcho(t)
			echo(t, e, "recorded before")
			id := e.waitCalls(1, tc.reader...)[0].ID
			col, err := e.st.CreateCollection(context.Background(), "Smoke tests",
				[]byte(`{"requests":[{"name":"Echo","method":"/grpctap.demo.v1.DemoService/Echo","messages":[{}]}]}`))
			if err != nil {
				t.Fatal(err)
			}
			before := e.calls(tc.reader...)

			for _, path := range []string{"/", "/app.js", "/api/calls", fmt.Sprintf("/api/calls/%d", id),
				fmt.Sprintf("/api/calls/%d/messages/1", id), fmt.Sprintf("/api/calls/%d/messages/1/raw", id),
				"/api/services", "/api/collections", fmt.Sprintf("/api/collections/%d", col),
				fmt.Sprintf("/api/collections/%d?download=1", col), "/api/events"} {
				if code := e.status(path, tc.reader...); code != 200 {
					t.Errorf("GET %s: %d, want 200", path, code)
				}
			}
			var info map[string]any
			if code := e.do("GET", "/api/info", nil, &info, tc.reader...); code != 200 || info["read_only"] != true {
				t.Errorf("GET /api/info: %d %v, want read_only true", code, info)
			}

			echoReq := func(target string) map[string]any {
				return map[string]any{"method": "/grpctap.demo.v1.DemoService/Echo", "target": target,
					"messages": []any{map[string]any{"message": "must not be sent"}}}
			}
			for _, w := range []struct {
				method, path string
				body         any
			}{
				{"POST", "/api/invoke", echoReq("")},
				{"POST", "/api/invoke", echoReq(target)},
				{"POST", "/api/invoke?stream=1", echoReq(target)},
				{"POST", fmt.Sprintf("/api/calls/%d/replay", id), nil},
				{"POST", fmt.Sprintf("/api/calls/%d/replay?target=%s", id, target), nil},
				{"POST", "/api/collections", ui.Collection{Name: "new one"}},
				{"PUT", fmt.Sprintf("/api/collections/%d", col), ui.Collection{Name: "renamed"}},
				{"DELETE", fmt.Sprintf("/api/collections/%d", col), nil},
				{"POST", fmt.Sprintf("/api/collections/%d/run", col), nil},
				{"POST", fmt.Sprintf("/api/calls/%d/save", id), ui.SaveCallRequest{Collection: "x"}},
				{"GET", "/api/invoke/live", nil},
			} {
				var eb ui.ErrorBody
				code := e.do(w.method, w.path, w.body, &eb, tc.reader...)
				if code != 403 || !strings.Contains(eb.Error, tc.reason) {
					t.Errorf("%s %s: %d %q, want 403 saying %q", w.method, w.path, code, eb.Error, tc.reason)
				}
			}

			if n := reached.Load(); n != 0 {
				t.Errorf("%d calls reached the target", n)
			}
			if after := e.calls(tc.reader...); after != before {
				t.Errorf("the capture went from %d to %d calls", before, after)
			}
			var list struct{ Collections []ui.Collection }
			e.do("GET", "/api/collections", nil, &list, tc.reader...)
			if len(list.Collections) != 1 || list.Collections[0].Name != "Smoke tests" || len(list.Collections[0].Requests) != 1 {
				t.Errorf("collections changed: %+v", list.Collections)
			}

			if tc.writer == nil {
				return
			}
			// The full token on the same inspector still sends and writes.
			if code := e.do("GET", "/api/info", nil, &info, tc.writer...); code != 200 || info["read_only"] != false {
				t.Errorf("full token: GET /api/info: %d %v, want read_only false", code, info)
			}
			if code := e.do("POST", "/api/invoke", echoReq(""), nil, tc.writer...); code != 200 {
				t.Errorf("full token: invoke: %d", code)
			}
			if after := e.calls(tc.writer...); after != before+1 {
				t.Errorf("full token: the capture went from %d to %d calls, want one more", before, after)
			}
			// (The target has no reflection, so the composer cannot encode
			// the request; asking it for its schema reaches it.)
			if code := e.do("POST", "/api/invoke", echoReq(target), nil, tc.writer...); code == 403 {
				t.Errorf("full token: invoke to a target: %d", code)
			}
			if reached.Load() == 0 {
				t.Error("full token: nothing reached the target")
			}
			if code := e.do("DELETE", fmt.Sprintf("/api/collections/%d", col), nil, nil, tc.writer...); code != 204 {
				t.Errorf("full token: delete: %d", code)
			}
		})
	}
}

// TestReadOnlyTokenInTheURL: opening the printed read-only URL gives the
// page a cookie that reads but does not write; opening the full URL
// afterwards replaces it.
func TestReadOnlyTokenInTheURL(t *testing.T) {
	e := newEnv(t, envOpts{token: "full-s3cret", readOnlyToken: "look-only"})
	cookieOf := func(path string) string {
		t.Helper()
		res, err := http.Get(e.base + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		for _, c := range res.Cookies() {
			if c.HttpOnly {
				return c.Name + "=" + c.Value
			}
		}
		t.Fatalf("GET %s: %d, no cookie", path, res.StatusCode)
		return ""
	}
	ro := cookieOf("/?token=look-only")
	if code := e.do("GET", "/api/calls", nil, nil, "Cookie", ro); code != 200 {
		t.Errorf("read-only cookie, GET: %d", code)
	}
	if code := e.do("POST", "/api/collections", ui.Collection{Name: "x"}, nil, "Cookie", ro); code != 403 {
		t.Errorf("read-only cookie, POST: %d, want 403", code)
	}
	// The token in the URL wins over the cookie the page had.
	full := cookieOf("/?token=full-s3cret")
	if code := e.do("POST", "/api/collections", ui.Collection{Name: "x"}, nil, "Cookie", full); code != 201 {
		t.Errorf("full cookie, POST: %d, want 201", code)
	}
	if code := e.do("GET", "/api/calls", nil, nil); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
}

// TestReadOnlyOptionsChecked: options that cannot work are refused by New.
func TestReadOnlyOptionsChecked(t *testing.T) {
	st, err := store.Open(context.Background(), t.TempDir()+"/c.db", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := ui.New(ui.Options{Store: st, Token: "same", ReadOnlyToken: "same"}); err == nil {
		t.Error("equal tokens accepted")
	}
	if _, err := ui.New(ui.Options{Store: st, TLS: &tls.Config{}}); err == nil {
		t.Error("TLS without a certificate accepted")
	}
}
