package webbridge_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/webbridge"
)

const chromiumPath = "/usr/bin/chromium"

// TestBrowser serves a page on one origin that calls the demo backend
// through the bridge on another origin, in headless Chromium, with
// connect-web (binary and JSON) and the official grpc-web client (text):
// CORS preflights with custom headers, exposed response headers, an error
// keeping its headers, server streaming arriving tick by tick, a deadline,
// and a second bridge that refuses the page's origin. The JSON calls must
// arrive as application/grpc-web+json and reach the protobuf-only demo
// backend as protobuf (the bridge learned its schema by reflection).
func TestBrowser(t *testing.T) {
	requireNode(t)
	_, err := os.Stat(chromiumPath)
	requireTool(t, err == nil, chromiumPath+" is missing: apt-get install -y chromium")

	// Bundle the page script with esbuild from e2e/webclients.
	dir := t.TempDir()
	bundle := exec.Command(filepath.Join("node_modules", ".bin", "esbuild"), "browser/page.mjs",
		"--bundle", "--format=esm", "--log-level=warning", "--outfile="+filepath.Join(dir, "page.bundle.js"))
	bundle.Dir = webClientsDir
	if out, err := bundle.CombinedOutput(); err != nil {
		t.Fatalf("esbuild: %v\n%s", err, out)
	}
	html, err := os.ReadFile(filepath.Join(webClientsDir, "browser", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), html, 0o644); err != nil {
		t.Fatal(err)
	}

	// The page's own origin.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pageSrv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = pageSrv.Serve(lis) }()
	t.Cleanup(func() { _ = pageSrv.Close(); <-served })
	pageOrigin := "http://" + lis.Addr().String()

	b := startDemoBridge(t, bridgeConfig{opts: webbridge.Options{AllowedOrigins: []string{pageOrigin}}})
	refusing := startDemoBridge(t, bridgeConfig{opts: webbridge.Options{AllowedOrigins: []string{"http://elsewhere.example"}}})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer func() {
		_ = chromedp.Cancel(browserCtx) // closes the browser and waits for it
		cancelBrowser()
	}()

	q := url.Values{"bridge": {b.url}, "refusing": {refusing.url}}
	_, err = chromedp.Run(browserCtx, chromedp.Navigate(pageOrigin+"/index.html?"+q.Encode()))
	if err == nil {
		_, err = chromedp.Run(browserCtx, chromedp.Poll[bool]("window.__done === true", chromedp.WithPollingTimeout(60*time.Second)))
	}
	raw, evalErr := chromedp.Run(browserCtx, chromedp.Evaluate[string]("JSON.stringify(window.__results || null)"))
	if err != nil || evalErr != nil {
		t.Fatalf("page: %v %v; results so far: %s", err, evalErr, raw)
	}
	var results []clientResult
	if err := json.Unmarshal([]byte(raw), &results); err != nil {
		t.Fatalf("results %q: %v", raw, err)
	}
	want := []string{
		"connect-web-binary/unary", "connect-web-binary/error-with-headers", "connect-web-binary/server-streaming", "connect-web-binary/deadline",
		"connect-web-json/unary", "connect-web-json/error-with-headers", "connect-web-json/server-streaming", "connect-web-json/deadline",
		"grpc-web-text/unary", "grpc-web-text/server-streaming", "refused-origin",
	}
	got := map[string]clientResult{}
	for _, r := range results {
		got[r.Case] = r
	}
	for _, kase := range want {
		r, ok := got[kase]
		switch {
		case !ok:
			t.Errorf("%s: did not run", kase)
		case !r.OK:
			t.Errorf("%s: FAILED: %s", kase, r.Detail)
		default:
			t.Logf("%s: ok %s", kase, r.Detail)
		}
	}
	if n := len(refusing.obs.snapshot()); n != 0 {
		t.Errorf("the refusing bridge forwarded %d calls", n)
	}
	text, jsonCalls := 0, 0
	for _, c := range b.obs.snapshot() {
		if c.start.Protocol == proxy.ProtocolGRPCWebText {
			text++
		}
		if ct := c.start.Header.Get("content-type"); len(ct) == 1 && ct[0] == "application/grpc-web+json" {
			// connect-web's JSON mode really sent JSON, and the backend
			// got the protobuf the bridge made of it.
			jsonCalls++
			if c.start.ContentType != "application/grpc" {
				t.Errorf("%s: a JSON call from the browser was forwarded as %q, want application/grpc", c.start.Method, c.start.ContentType)
			}
		}
		if c.start.Header.Get("origin") == nil || c.start.Header.Get("origin")[0] != pageOrigin {
			t.Errorf("%s: recorded origin %q", c.start.Method, c.start.Header.Get("origin"))
		}
	}
	if text != 2 {
		t.Errorf("%d calls recorded as grpc-web-text, want 2", text)
	}
	if jsonCalls != 4 {
		t.Errorf("%d calls recorded with content-type application/grpc-web+json, want the 4 connect-web-json cases", jsonCalls)
	}
}
