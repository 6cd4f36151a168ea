package main

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// startsOrFails runs a grpctap command line until it either exits (its
// error is returned) or logs that the proxy listens (started is true).
func startsOrFails(t *testing.T, args ...string) (started bool, err error) {
	t.Helper()
	s := start(t, args...)
	listening := regexp.MustCompile(`grpctap proxy listening`)
	for {
		select {
		case err := <-s.done:
			s.done <- err
			return false, err
		case <-time.After(20 * time.Millisecond):
		}
		if listening.MatchString(s.errOut.String()) {
			return true, nil
		}
	}
}

// TestBackendTargetsAreChecked: a --backend or --route address the proxy
// could never dial stops it at start, with the forms it accepts; before,
// it started and every call failed ("too many colons", or port 443).
func TestBackendTargetsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--backend", "http://127.0.0.1:9101"}, []string{`--backend: backend address "http://127.0.0.1:9101" has a URL scheme: give host:port (127.0.0.1:9101)`, "unix:/path/to.sock or dns:///host:port"}},
		{[]string{"--backend", "https://api.internal"}, []string{`has a URL scheme`, "--backend-tls"}},
		{[]string{"--backend", "127.0.0.1"}, []string{`--backend: backend address "127.0.0.1" has no port: give host:port, e.g. 127.0.0.1:9000`}},
		{[]string{"--backend", "not an addr"}, []string{`--backend: backend address "not an addr" has spaces: want host:port`}},
		{[]string{"--route", "pkg.Svc=localhost", "--route", "other.Svc=http://x:1"}, []string{
			`--route pkg.Svc=localhost: backend address "localhost" has no port`, `--route other.Svc=http://x:1: backend address "http://x:1" has a URL scheme`}},
	} {
		args := append([]string{"proxy", "--listen", "127.0.0.1:0", "--ui", "", "--no-record"}, tc.args...)
		started, err := startsOrFails(t, args...)
		if started {
			t.Errorf("%v: the proxy started", tc.args)
			continue
		}
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: err = %v, want it to say %q", tc.args, err, w)
			}
		}
	}
	// The forms that work still start.
	for _, backend := range []string{"127.0.0.1:9", "unix:/tmp/grpctap-test.sock", "dns:///localhost:9"} {
		started, err := startsOrFails(t, "proxy", "--listen", "127.0.0.1:0", "--ui", "", "--no-record", "--backend", backend)
		if !started {
			t.Errorf("--backend %s: did not start: %v", backend, err)
		}
	}
	if _, _, err := runCmd(t, "replay", "--db", sampleCapture(t), "--target", "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "--target: backend address \"127.0.0.1\" has no port") {
		t.Errorf("replay --target 127.0.0.1: %v", err)
	}
}
