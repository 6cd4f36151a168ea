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
	url, wait, err := f.start(context.Background(), nil, uiDeps{})
	if err != nil || url != "" || wait() != nil {
		t.Errorf("--ui '': %q %v", url, err)
	}
	f = uiFlags{addr: "127.0.0.1:0"}
	url, wait, err = f.start(context.Background(), nil, uiDeps{Logger: quietLog()})
	if err != nil || url != "" || wait() != nil {
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
