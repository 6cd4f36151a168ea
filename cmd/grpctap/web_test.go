package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/proxy"
)

func parseWebFlags(t *testing.T, args ...string) *webFlags {
	t.Helper()
	var f webFlags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.register(fs, "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &f
}

// listenFor listens as spec says (nil when it is off) until the test ends.
func listenFor(t *testing.T, spec listenSpec) net.Listener {
	t.Helper()
	ls, err := listenAll(pflag.NewFlagSet("test", pflag.ContinueOnError), quietLog(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeListeners(ls) })
	return ls[0]
}

// TestWebFlagsServe starts the bridge from its flags in front of the demo
// backend, makes a gRPC-Web call and shuts it down by cancelling ctx.
func TestWebFlagsServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	backend, err := demo.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := proxy.New(proxy.Options{Backend: backend.Addr(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	f := parseWebFlags(t, "--web", "127.0.0.1:0", "--web-origin", "http://page.example:3000", "--web-websockets", "--web-host", "tap.example")
	webCtx, stopWeb := context.WithCancel(ctx)
	defer stopWeb()
	cfg, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	web, addr, err := webService(cfg, p, nil, listenFor(t, f.listenSpec()), 2*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	g := newRunGroup(2*time.Second, log)
	g.add(*web)
	done := make(chan error, 1)
	go func() { done <- g.run(webCtx) }()

	req, _ := proto.Marshal(&demopb.EchoRequest{Message: "hello web"})
	body := make([]byte, 5+len(req))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(req)))
	copy(body[5:], req)
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/grpctap.demo.v1.DemoService/Echo", bytes.NewReader(body))
	hreq.Header.Set("Content-Type", "application/grpc-web+proto")
	hreq.Header.Set("Origin", "http://page.example:3000")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://page.example:3000" {
		t.Errorf("allow-origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if len(out) < 5 || out[0] != 0 {
		t.Fatalf("response body %q", out)
	}
	n := binary.BigEndian.Uint32(out[1:5])
	var echo demopb.EchoResponse
	if err := proto.Unmarshal(out[5:5+n], &echo); err != nil {
		t.Fatal(err)
	}
	if echo.GetMessage() != "hello web" || !strings.Contains(string(out[5+n:]), "grpc-status: 0") {
		t.Fatalf("echo %v, rest %q", &echo, out[5+n:])
	}

	// --web-host: the named Host is served, another name is refused.
	for host, want := range map[string]int{"tap.example": http.StatusOK, "evil.example": http.StatusForbidden} {
		hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/grpctap.demo.v1.DemoService/Echo", bytes.NewReader(body))
		hreq.Host = host
		hreq.Header.Set("Content-Type", "application/grpc-web+proto")
		resp, err := (&http.Client{Transport: tr}).Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: HTTP %d, want %d", host, resp.StatusCode, want)
		}
	}

	stopWeb()
	if err := returned(t, done, "the bridge's group, stopped,"); err != nil {
		t.Fatal(err)
	}
}

func TestWebFlagsOff(t *testing.T) {
	p, err := proxy.New(proxy.Options{Backend: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := parseWebFlags(t).config()
	if err != nil {
		t.Fatal(err)
	}
	web, addr, err := webService(cfg, p, nil, nil, time.Second, log)
	if err != nil || addr != "" || web != nil {
		t.Fatalf("without --web: addr %q err %v", addr, err)
	}
	for _, args := range [][]string{
		{"--web-origin", "http://a.example"},
		{"--web-host", "tap.example"},
		{"--web", "127.0.0.1:0", "--web-host", "tap.example:8080"},
		{"--web", "127.0.0.1:0", "--web-tls-cert", "x.pem"},
		{"--web", "127.0.0.1:0", "--web-origin", "not-an-origin"},
		{"--web", "127.0.0.1:0", "--web-tls-cert", "/nonexistent.pem", "--web-tls-key", "/nonexistent.key"},
	} {
		f := parseWebFlags(t, args...)
		cfg, err := f.config()
		if err == nil {
			_, _, err = webService(cfg, p, nil, listenFor(t, f.listenSpec()), time.Second, log)
		}
		if err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestWebAddr(t *testing.T) {
	for in, want := range map[string]string{
		"8080":           "127.0.0.1:8080",
		":8080":          ":8080",
		"0.0.0.0:8080":   "0.0.0.0:8080",
		"localhost:9000": "localhost:9000",
		"[::1]:9000":     "[::1]:9000",
	} {
		if got := webAddr(in); got != want {
			t.Errorf("webAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
