package webbridge_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/grpctap/grpctap/webbridge"
)

// TestDNSRebinding: a page on evil.example whose DNS answer was switched to
// 127.0.0.1 sends requests that are same-origin for the browser (Origin and
// Host both name evil.example). The bridge refuses them, calls and
// websocket handshakes alike, before anything reaches the backend or the
// recording; loopback names, and names given in Options.Hosts, still work.
func TestDNSRebinding(t *testing.T) {
	var reached atomic.Int64
	backend := rawBackend(t, func(x any, ss grpc.ServerStream) error {
		reached.Add(1)
		return echoHandler(x, ss)
	})
	b := startBridge(t, backend, bridgeConfig{opts: webbridge.Options{
		AllowedOrigins: []string{"https://app.example"},
		Hosts:          []string{"App.Internal"},
		Websockets:     true,
	}})
	_, port, _ := net.SplitHostPort(b.addr)
	c := h1Client(nil)
	defer closeClient(c)

	send := func(method, host string, hdr http.Header, body []byte) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, b.url+"/pkg.Svc/M", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header = hdr
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			// An upgraded connection's body is the connection: not drained.
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		resp.Body.Close()
		return resp
	}
	call := func(host, origin string) *http.Response {
		hdr := http.Header{"Content-Type": {"application/grpc-web+proto"}}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		return send(http.MethodPost, host, hdr, dataFrame([]byte("secret please")))
	}
	preflight := func(host, origin string) *http.Response {
		return send(http.MethodOptions, host, http.Header{
			"Origin": {origin}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type,x-grpc-web"},
		}, nil)
	}
	handshake := func(host, origin string) *http.Response {
		return send(http.MethodGet, host, http.Header{
			"Origin": {origin}, "Connection": {"Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
			"Sec-Websocket-Protocol": {"grpc-websockets"},
		}, nil)
	}

	for _, host := range []string{"evil.example:" + port, "EVIL.example.:" + port, "evil.example", "10.1.2.3:" + port} {
		origin := "http://" + host
		if resp := call(host, origin); resp.StatusCode != http.StatusForbidden {
			t.Errorf("Host %s: call answered HTTP %d, want 403", host, resp.StatusCode)
		}
		if resp := call(host, ""); resp.StatusCode != http.StatusForbidden {
			t.Errorf("Host %s without Origin: call answered HTTP %d, want 403", host, resp.StatusCode)
		}
		if resp := preflight(host, origin); resp.StatusCode != http.StatusForbidden {
			t.Errorf("Host %s: preflight answered HTTP %d, want 403", host, resp.StatusCode)
		}
		if resp := handshake(host, origin); resp.StatusCode != http.StatusForbidden {
			t.Errorf("Host %s: websocket handshake answered HTTP %d, want 403", host, resp.StatusCode)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the backend got %d calls from refused hosts", n)
	}
	if calls := b.obs.snapshot(); len(calls) != 0 {
		t.Errorf("%d calls from refused hosts were recorded, the first %s", len(calls), calls[0].start.Method)
	}

	for _, host := range []string{"localhost:" + port, "127.0.0.1:" + port, "127.9.9.9:" + port, "app.internal:" + port, "APP.INTERNAL"} {
		if resp := call(host, "http://"+host); resp.StatusCode != http.StatusOK {
			t.Errorf("Host %s (same origin): call answered HTTP %d, want 200", host, resp.StatusCode)
		}
	}
	if resp := handshake("localhost:"+port, "http://localhost:"+port); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("Host localhost: websocket handshake answered HTTP %d, want 101", resp.StatusCode)
	}
	if n := reached.Load(); n != 5 {
		t.Errorf("the backend got %d calls from allowed hosts, want 5", n)
	}
}

// TestHostsOption: a malformed name is refused, "*" serves any Host.
func TestHostsOption(t *testing.T) {
	for _, h := range []string{"", "http://app.example", "app.example:8080", "app.example/x"} {
		if _, err := webbridge.New(grpc.NewServer(), webbridge.Options{Hosts: []string{h}}); err == nil {
			t.Errorf("host %q accepted", h)
		}
	}
	b := startBridge(t, rawBackend(t, echoHandler), bridgeConfig{opts: webbridge.Options{Hosts: []string{"*"}}})
	c := h1Client(nil)
	defer closeClient(c)
	req, _ := http.NewRequest(http.MethodPost, b.url+"/pkg.Svc/M", bytes.NewReader(dataFrame([]byte("x"))))
	req.Host = "anything.example"
	req.Header.Set("Content-Type", "application/grpc-web")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("--web-host '*': HTTP %d, want 200", resp.StatusCode)
	}
}
