package ui_test

import (
	"net/url"
	"strings"
	"testing"
)

// TestLongSearchIsRefused: a 100,000-character search or method glob is
// answered 400 with a message naming the limit, not 500 "LIKE or GLOB
// pattern too complex" from SQLite; one of 1,000 characters is served.
func TestLongSearchIsRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	echo(t, e, "a call to search")
	e.waitCalls(1)
	long := strings.Repeat("x", 100_000)
	for _, path := range []string{
		"/api/calls?q=" + long,
		"/api/calls?method=*" + long,
		"/api/stats?method=*" + long,
		"/api/calls?q=" + url.QueryEscape(strings.Repeat("é", 1001)),
	} {
		var answer struct {
			Error string `json:"error"`
		}
		code := e.do("GET", path, nil, &answer)
		if code != 400 || !strings.Contains(answer.Error, "at most 1000 characters") {
			t.Errorf("GET %s…: %d %q, want 400 naming the limit of 1000 characters", path[:24], code, answer.Error)
		}
	}
	for _, path := range []string{"/api/calls?q=" + strings.Repeat("x", 1000), "/api/calls?method=*" + strings.Repeat("x", 999)} {
		if code := e.do("GET", path, nil, nil); code != 200 {
			t.Errorf("GET %s…: %d, want 200 (1000 characters are allowed)", path[:24], code)
		}
	}
}
