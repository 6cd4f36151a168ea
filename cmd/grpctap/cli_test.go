package main

import (
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestCLIRoughEdges: what a new user typed and what grpctap answered.
func TestCLIRoughEdges(t *testing.T) {
	db := sampleCapture(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		// An unclosed '[' matched nothing and said "(no calls)".
		{[]string{"calls", "--db", db, "--method", "["}, `--method "[": invalid glob: the '[' at 1 opens a set of characters that is never closed`},
		{[]string{"export", "--db", db, "--method", "/shop.v1.Cart/[GR"}, `--method "/shop.v1.Cart/[GR": invalid glob: the '[' at 15`},
		{[]string{"replay", "--db", db, "--method", "*[x"}, `invalid glob`},
		// "accepts 1 arg(s), received 0".
		{[]string{"show", "--db", db}, "show needs the id of a call: grpctap show ID"},
		{[]string{"show", "--db", db, "1", "2"}, "show takes one call id, not 2"},
		// "call 999999  → :".
		{[]string{"replay", "--db", db, "999999", "1", "77"}, "no call 999999, 77 in " + db},
		// The whole capture, without asking.
		{[]string{"replay", "--db", db}, "replay needs call ids (grpctap replay 12 14), a filter (--method, --status, --since, --proxy) or --all"},
		{[]string{"replay", "--db", db, "--all", "1"}, "give call ids, or --method/--status/--since/--proxy, or --all: one of them"},
	} {
		out, _, err := runCmd(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("grpctap %s: err = %v, want it to say %q\n%s", strings.Join(tc.args, " "), err, tc.want, out)
		}
	}
	// Valid sets still select.
	if out := mustRun(t, "calls", "--db", db, "--json", "--method", "/shop.v1.Cart/[GR]*"); len(callIDs(t, out)) != 2 {
		t.Errorf("--method with a set: %s", out)
	}
}

// TestHelpShowsDefaultsAsTheyAreWritten: defaults in --help are what the
// README says and what the flag takes.
func TestHelpShowsDefaultsAsTheyAreWritten(t *testing.T) {
	help := func(args ...string) string {
		out := mustRun(t, append(args, "--help")...)
		return strings.Join(strings.Fields(out), " ")
	}
	proxyHelp := help("proxy")
	for _, want := range []string{
		"--max-msg-size bytes largest message forwarded each way, in bytes (accepts KiB/MiB suffixes) (default 64MiB)",
		"--record-max-message bytes", "(default 4MiB)",
		"--log-level level log level: debug (one line per call), info, warn or error (default info)",
	} {
		if !strings.Contains(proxyHelp, want) {
			t.Errorf("proxy --help lacks %q:\n%s", want, proxyHelp)
		}
	}
	if want := "(default info)"; !strings.Contains(help("replay"), want) {
		t.Errorf("replay --help lacks %q", want)
	}
	uiHelp := help("ui")
	if strings.Contains(uiHelp, "''") || !strings.Contains(uiHelp, "(default info)") {
		t.Errorf("ui --help suggests --ui '' or shows another log level:\n%s", uiHelp)
	}
	if !strings.Contains(proxyHelp, "'' turns it off") {
		t.Errorf("proxy --help no longer says how to turn the inspector off")
	}
}

// TestUIOnEveryInterfacePrintsWhereItListens: --ui 0.0.0.0:PORT printed a
// 127.0.0.1 URL, as if it listened on loopback only.
func TestUIOnEveryInterfacePrintsWhereItListens(t *testing.T) {
	s := start(t, "ui", "--db", sampleCapture(t), "--ui", "0.0.0.0:0", "--no-reflection")
	re := regexp.MustCompile(`inspector\s+http://0\.0\.0\.0:(\d+)/\?token=\w+\s+\(every interface; on this machine (http://127\.0\.0\.1:\d+/\?token=\w+)\)`)
	port := s.waitFor(t, re)
	local := re.FindStringSubmatch(s.out.String())[2]
	if !strings.Contains(local, ":"+port+"/") {
		t.Errorf("the two URLs name different ports: %s", s.out)
	}
	res, err := http.Get(local)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET %s: HTTP %d", local, res.StatusCode)
	}
	if err := s.stop(t, 10*time.Second); err != nil {
		t.Error(err)
	}
}

// TestVersion: the binary says which grpctap it is, from Go's build
// information; a build from a checkout is "(devel)".
func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("grpctap --version: %v\n%s", err, out)
	}
	want := regexp.MustCompile(`^grpctap (\(devel\)|v\d+\.\d+\.\d+\S*)(, commit [0-9a-f]{12}(\+dirty)?, \S+)?, go1\.\d+\S*\n$`)
	if !want.Match(out) {
		t.Errorf("grpctap --version printed %q, want it to match %v", out, want)
	}
}
