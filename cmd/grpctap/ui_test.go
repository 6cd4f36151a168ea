package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/internal/testcert"
	"github.com/grpctap/grpctap/store"
)

var inspectorLine = regexp.MustCompile(`inspector\s+(http://\S+)`)

func getJSON(t *testing.T, url string, hdr map[string]string, out any) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v: %s", url, err, b)
		}
	}
	return res.StatusCode
}

func TestUICommandServesACapture(t *testing.T) {
	path := sampleCapture(t)
	s := start(t, "ui", "--db", path, "--ui", "127.0.0.1:0", "--no-reflection")
	url := s.waitFor(t, inspectorLine)
	base := strings.TrimSuffix(url, "/")
	var page store.Page
	if code := getJSON(t, base+"/api/calls", nil, &page); code != 200 || len(page.Calls) != 3 {
		t.Fatalf("GET /api/calls: %d, %d calls", code, len(page.Calls))
	}
	if page.Calls[0].ID != 3 || page.Calls[0].State != "open" {
		t.Errorf("newest first: %+v", page.Calls[0])
	}
	var c store.CallWithMessages
	if code := getJSON(t, base+"/api/calls/2", nil, &c); code != 200 || c.Status == nil || c.Status.Name != "NOT_FOUND" {
		t.Errorf("GET /api/calls/2: %d %+v", code, c.Status)
	}
	res, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `<script type="module" src="app.js">`) {
		t.Errorf("page: %.200s", body)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := s.stop(t, 10*time.Second); err != nil {
		t.Errorf("ui exited with %v", err)
	}
}

func TestUICommandToken(t *testing.T) {
	path := sampleCapture(t)
	s := start(t, "ui", "--db", path, "--ui", "127.0.0.1:0", "--ui-token", "letmein", "--no-reflection")
	url := s.waitFor(t, inspectorLine)
	if !strings.HasSuffix(url, "/?token=letmein") {
		t.Fatalf("printed URL %q does not carry the token", url)
	}
	base := strings.TrimSuffix(url, "/?token=letmein")
	if code := getJSON(t, base+"/api/calls", nil, nil); code != 401 {
		t.Errorf("without token: %d, want 401", code)
	}
	if code := getJSON(t, base+"/api/calls", map[string]string{"Authorization": "Bearer letmein"}, nil); code != 200 {
		t.Errorf("with token: %d", code)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := s.stop(t, 10*time.Second); err != nil {
		t.Errorf("ui exited with %v", err)
	}
}

func TestUICommandErrors(t *testing.T) {
	if _, _, err := runCmd(t, "ui", "--db", filepath.Join(t.TempDir(), "missing.db")); err == nil || !strings.Contains(err.Error(), "no capture") {
		t.Errorf("missing capture: %v", err)
	}
	if _, _, err := runCmd(t, "ui", "--db", sampleCapture(t), "--ui", ""); err == nil {
		t.Errorf("--ui '': no error")
	}
}

func TestUIFlagsOffAndTokenOffLoopback(t *testing.T) {
	f := uiFlags{addr: ""}
	cfg, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	svc, url, err := uiService(context.Background(), cfg, nil, uiDeps{})
	if err != nil || url != "" || svc != nil {
		t.Errorf("--ui '': %q %v", url, err)
	}
	if _, err := (&uiFlags{addr: "", token: "t"}).config(); err == nil {
		t.Errorf("--ui-token without --ui: no error")
	}
	f = uiFlags{addr: "127.0.0.1:0"}
	if cfg, err = f.config(); err != nil {
		t.Fatal(err)
	}
	svc, url, err = uiService(context.Background(), cfg, nil, uiDeps{Logger: quietLog()})
	if err != nil || url != "" || svc != nil {
		t.Errorf("no store (--no-record): %q %v", url, err)
	}
}

func TestUICommandComposerCallsATarget(t *testing.T) {
	backend, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close(context.Background()) })
	s := start(t, "ui", "--db", sampleCapture(t), "--ui", "127.0.0.1:0")
	base := strings.TrimSuffix(s.waitFor(t, inspectorLine), "/")
	body := `{"method":"/grpctap.demo.v1.DemoService/Echo","target":"` + backend.Addr() + `","messages":[{"message":"no proxy here"}]}`
	res, err := http.Post(base+"/api/invoke", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var c store.CallWithMessages
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if err := json.Unmarshal(b, &c); err != nil || res.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", res.StatusCode, b)
	}
	// Not recorded (no proxy, no recorder): the answer is what the composer saw.
	if c.ID != 0 || c.Status == nil || c.Status.Name != "OK" || len(c.Messages) != 2 || !strings.Contains(string(c.Messages[1].JSON), "no proxy here") {
		t.Errorf("answer %+v %s", c.Call, b)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := s.stop(t, 10*time.Second); err != nil {
		t.Errorf("ui exited with %v", err)
	}
}

// TestUIFlagsServeHTTPS: with --ui-tls-cert and --ui-tls-key, 'ui',
// 'proxy' and 'demo' print an https URL, and a TLS client that trusts the
// certificate's CA reads the capture there; plain HTTP is not served.
func TestUIFlagsServeHTTPS(t *testing.T) {
	certs := testcert.New(t)
	backend, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close(context.Background()) })
	tlsFlags := []string{"--ui", "127.0.0.1:0", "--ui-tls-cert", certs.ServerCertFile, "--ui-tls-key", certs.ServerKeyFile}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ui", []string{"ui", "--db", sampleCapture(t), "--no-reflection"}},
		{"proxy", []string{"proxy", "--backend", backend.Addr(), "--listen", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "p.db")}},
		{"demo", []string{"demo", "--listen", "127.0.0.1:0", "--traffic", "0", "--web", "", "--db", filepath.Join(t.TempDir(), "d.db")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, append(tc.args, tlsFlags...)...)
			url := s.waitFor(t, regexp.MustCompile(`inspector:?\s+(https://127\.0\.0\.1:\d+/)\s`))
			tr := &http.Transport{TLSClientConfig: certs.ClientConfig(t, false)}
			defer tr.CloseIdleConnections()
			res, err := (&http.Client{Transport: tr}).Get(url + "api/calls")
			if err != nil {
				t.Fatalf("GET over TLS: %v", err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || res.TLS == nil {
				t.Errorf("GET %sapi/calls: %d, TLS %v", url, res.StatusCode, res.TLS != nil)
			}
			plain := "http://" + strings.TrimPrefix(url, "https://") + "api/calls"
			if code := getJSON(t, plain, nil, nil); code != http.StatusBadRequest {
				t.Errorf("plain HTTP to the inspector: %d, want 400", code)
			}
			http.DefaultClient.CloseIdleConnections()
			if err := s.stop(t, 10*time.Second); err != nil {
				t.Errorf("%s exited with %v", tc.name, err)
			}
		})
	}
}

// TestUIFlagErrors: inspector flags that cannot work stop the command with
// a message naming them.
func TestUIFlagErrors(t *testing.T) {
	certs := testcert.New(t)
	db := sampleCapture(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ui", "--db", db, "--ui", "127.0.0.1:0", "--ui-tls-cert", certs.ServerCertFile}, "--ui-tls-cert and --ui-tls-key go together"},
		{[]string{"ui", "--db", db, "--ui", "127.0.0.1:0", "--ui-tls-key", certs.ServerKeyFile}, "--ui-tls-cert and --ui-tls-key go together"},
		{[]string{"ui", "--db", db, "--ui", "127.0.0.1:0", "--ui-tls-cert", certs.ServerKeyFile, "--ui-tls-key", certs.ServerKeyFile}, "inspector TLS (--ui-tls-cert, --ui-tls-key)"},
		{[]string{"ui", "--db", db, "--ui", "127.0.0.1:0", "--ui-token", "same", "--ui-read-only-token", "same"}, "--ui-token and --ui-read-only-token must differ"},
		{[]string{"demo", "--listen", "127.0.0.1:0", "--traffic", "0", "--web", "", "--db", filepath.Join(t.TempDir(), "d.db"), "--ui", "", "--ui-read-only"}, "need --ui ADDR"},
	} {
		_, _, err := runCmd(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("grpctap %s: %v, want an error saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// TestUIReadOnlyFlags: --ui-read-only refuses writes to everyone, and
// --ui-read-only-token gives a second, read-only link beside a full one.
func TestUIReadOnlyFlags(t *testing.T) {
	post := func(url, auth string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", url, strings.NewReader(`{"name":"x"}`))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	t.Run("read-only", func(t *testing.T) {
		s := start(t, "ui", "--db", sampleCapture(t), "--ui", "127.0.0.1:0", "--no-reflection", "--ui-read-only")
		base := strings.TrimSuffix(s.waitFor(t, inspectorLine), "/")
		if code := getJSON(t, base+"/api/calls", nil, nil); code != 200 {
			t.Errorf("GET: %d", code)
		}
		if code := post(base+"/api/collections", ""); code != 403 {
			t.Errorf("POST /api/collections: %d, want 403", code)
		}
		http.DefaultClient.CloseIdleConnections()
		if err := s.stop(t, 10*time.Second); err != nil {
			t.Errorf("ui exited with %v", err)
		}
	})
	t.Run("read-only token", func(t *testing.T) {
		s := start(t, "ui", "--db", sampleCapture(t), "--ui", "127.0.0.1:0", "--no-reflection", "--ui-read-only-token", "look-only")
		full := s.waitFor(t, regexp.MustCompile(`inspector\s+(http://\S+)`))
		ro := s.waitFor(t, regexp.MustCompile(`read-only\s+(http://\S+)`))
		base, fullToken, ok := strings.Cut(full, "/?token=")
		if !ok || fullToken == "" || ro != base+"/?token=look-only" {
			t.Fatalf("printed %q and %q: want a full link with a token of its own and the read-only link", full, ro)
		}
		if code := getJSON(t, base+"/api/calls", nil, nil); code != 401 {
			t.Errorf("no token: %d, want 401", code)
		}
		if code := getJSON(t, base+"/api/calls", map[string]string{"Authorization": "Bearer look-only"}, nil); code != 200 {
			t.Errorf("read-only token, GET: %d", code)
		}
		if code := post(base+"/api/collections", "look-only"); code != 403 {
			t.Errorf("read-only token, POST: %d, want 403", code)
		}
		if code := post(base+"/api/collections", fullToken); code != 201 {
			t.Errorf("full token, POST: %d, want 201", code)
		}
		http.DefaultClient.CloseIdleConnections()
		if err := s.stop(t, 10*time.Second); err != nil {
			t.Errorf("ui exited with %v", err)
		}
	})
}

// TestUITokensOffLoopback: bound off loopback with no tokens given, the
// inspector gets a full and a read-only token, different; with
// --ui-read-only only one, since every token reads only.
func TestUITokensOffLoopback(t *testing.T) {
	full, ro, err := (&uiFlags{addr: ":7070"}).access()
	if err != nil || full == "" || ro == "" || full == ro {
		t.Errorf("off loopback: %q %q %v, want two different tokens", full, ro, err)
	}
	full, ro, err = (&uiFlags{addr: ":7070", readOnly: true}).access()
	if err != nil || full == "" || ro != "" {
		t.Errorf("off loopback, --ui-read-only: %q %q %v, want one token", full, ro, err)
	}
	full, ro, err = (&uiFlags{addr: "127.0.0.1:7070"}).access()
	if err != nil || full != "" || ro != "" {
		t.Errorf("loopback: %q %q %v, want no token", full, ro, err)
	}
}
