package main

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/grpctap/grpctap/demo/demopb"
)

// TestTwoDemosWithDefaultFlags: a second grpctap started with default
// flags on the same machine comes up, on free ports, and says which
// defaults were taken; the first keeps working. Before, the second died on
// --listen, and after that on --ui.
func TestTwoDemosWithDefaultFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	var demos []*proc
	for range 2 {
		p := startProcIn(t, dir, bin, "demo", "--traffic", "0") // both record into ./grpctap.db there
		p.waitFor(t, regexp.MustCompile(`(Press Ctrl-C)`))
		demos = append(demos, p)
	}
	second := demos[1].output()
	for flag, def := range map[string]string{"--listen": "127.0.0.1:50050", "--ui": defaultUIAddr, "--web": demoWebAddr, "--backend-listen": demoBackendAddr} {
		re := regexp.MustCompile(`flag=` + flag + ` taken=` + regexp.QuoteMeta(def) + ` addr=(127\.0\.0\.1:\d+)`)
		if !re.MatchString(second) {
			t.Errorf("the second demo does not say that %s %s is taken:\n%s", flag, def, second)
		}
	}
	seen := map[string]bool{}
	for i, p := range demos {
		out := p.output()
		proxyAddr := demoProxyLine.FindStringSubmatch(out)[1]
		uiURL := p.waitFor(t, regexp.MustCompile(`Open the inspector: (http://127\.0\.0\.1:\d+/)`))
		backend := p.waitFor(t, regexp.MustCompile(`backend\s+(127\.0\.0\.1:\d+)`))
		for _, a := range []string{proxyAddr, uiURL, backend} {
			if seen[a] {
				t.Errorf("demo %d: %s is printed by both demos", i+1, a)
			}
			seen[a] = true
		}
		res, err := demoClient(t, proxyAddr).Echo(context.Background(), &demopb.EchoRequest{Message: "through demo"})
		if err != nil || res.GetMessage() != "through demo" {
			t.Errorf("demo %d: Echo through %s: %v %v", i+1, proxyAddr, res, err)
		}
		page, err := http.Get(uiURL)
		if err != nil {
			t.Errorf("demo %d: inspector %s: %v", i+1, uiURL, err)
			continue
		}
		page.Body.Close()
		if page.StatusCode != http.StatusOK {
			t.Errorf("demo %d: inspector %s: HTTP %d", i+1, uiURL, page.StatusCode)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	for _, p := range demos {
		p.stop(t)
	}
}

// TestTakenAddressesGivenExplicitly: an address the user gave is not
// replaced; every one that is taken is reported in one error.
func TestTakenAddressesGivenExplicitly(t *testing.T) {
	var taken []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		taken = append(taken, l.Addr().String())
	}
	_, _, err := runCmd(t, "proxy", "--backend", "127.0.0.1:9", "--db", t.TempDir()+"/x.db", "--listen", taken[0], "--ui", taken[1])
	for _, want := range []string{
		"--listen " + taken[0] + ": listen tcp " + taken[0] + ": bind: address already in use (choose another address with --listen)",
		"--ui " + taken[1] + ": listen tcp " + taken[1] + ": bind: address already in use (choose another address with --ui, or --ui '' to turn the inspector off)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v\nwant it to say %q", err, want)
		}
	}
	_, _, err = runCmd(t, "ui", "--db", sampleCapture(t), "--ui", taken[1])
	if err == nil || !strings.Contains(err.Error(), "choose another address with --ui)") {
		t.Errorf("ui --ui %s: %v", taken[1], err)
	}
}

// TestTwoProxiesWithDefaultFlags: the same for 'grpctap proxy', in this
// process: the second proxy listens and serves its inspector elsewhere.
func TestTwoProxiesWithDefaultFlags(t *testing.T) {
	backend := startDemo(t)
	dir := t.TempDir()
	var addrs, urls []string
	for range 2 {
		s := start(t, "proxy", "--backend", backend.Addr(), "--db", dir+"/grpctap.db")
		addrs = append(addrs, s.waitFor(t, listeningLine))
		urls = append(urls, s.waitFor(t, inspectorLine))
	}
	if addrs[0] == addrs[1] || urls[0] == urls[1] {
		t.Fatalf("both proxies print %v and %v", addrs, urls)
	}
	for _, a := range addrs {
		if _, err := demoClient(t, a).Echo(context.Background(), &demopb.EchoRequest{Message: "x"}); err != nil {
			t.Errorf("Echo through %s: %v", a, err)
		}
	}
}
