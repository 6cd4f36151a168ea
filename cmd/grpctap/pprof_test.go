package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grpctap/grpctap/demo"
)

var pprofLine = regexp.MustCompile(`pprof listening.*addr=(127\.0\.0\.1:\d+)`)

// TestProxyServesPprof: --pprof serves the process's runtime profiles on
// loopback while it proxies, and stops with it.
func TestProxyServesPprof(t *testing.T) {
	backend, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close(context.Background()) })
	s := start(t, "proxy", "--listen", "127.0.0.1:0", "--backend", backend.Addr(), "--no-record", "--ui", "", "--pprof", "127.0.0.1:0")
	s.waitFor(t, listeningLine)
	addr := s.waitFor(t, pprofLine)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
		t.Fatalf("GET goroutine profile: %s\n%s", resp.Status, body)
	}
	if err := s.stop(t, 15*time.Second); err != nil {
		t.Errorf("proxy exited with %v, want nil", err)
	}
	if _, err := client.Get("http://" + addr + "/debug/pprof/"); err == nil {
		t.Errorf("pprof still served after the proxy stopped")
	}
}
