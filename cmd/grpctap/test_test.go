package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/grpctap/grpctap/collection"
	"github.com/grpctap/grpctap/internal/pgtest"
	"github.com/grpctap/grpctap/internal/stubserver"
)

type testReport struct {
	Collection string              `json:"collection"`
	Results    []collection.Result `json:"results"`
	Summary    struct {
		Calls, Match, Mismatch, Errors int
	} `json:"summary"`
}

func runTestJSON(t *testing.T, wantCode int, args ...string) testReport {
	t.Helper()
	out, errOut, err := runCmd(t, append([]string{"test", "--json"}, args...)...)
	code := exitOK
	var ec *exitCodeError
	if errors.As(err, &ec) {
		code = ec.code
	} else if err != nil {
		code = exitError
	}
	if code != wantCode {
		t.Fatalf("grpctap test %v: exit %d (%v), want %d\n%s\n%s", args, code, err, wantCode, out, errOut)
	}
	var rep testReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	return rep
}

// TestCollectionFromCapturesPassesThenFails: calls of every RPC kind
// captured through the proxy become a collection (grpctap collection add);
// grpctap test passes against the backend they were captured from, and
// against the changed demo backend fails with the field differences,
// exit 1, and a JUnit file as Jenkins and GitLab read it.
func TestCollectionFromCapturesPassesThenFails(t *testing.T) {
	backend := startDemo(t)
	db, ids := recordDemo(t, backend.Addr())

	out := mustRun(t, "collection", "add", "smoke", "--db", db, "--all")
	if !strings.Contains(out, `saved 5 requests into collection "smoke"`) {
		t.Fatalf("collection add:\n%s", out)
	}
	list := mustRun(t, "collection", "list", "--db", db)
	if !regexp.MustCompile(`(?m)^1\s+smoke\s+5\s`).MatchString(list) {
		t.Errorf("collection list:\n%s", list)
	}
	// The saved Echo carries the request's metadata less the redacted
	// credential, and the captured answer as its example.
	exported := filepath.Join(t.TempDir(), "smoke.grpctap.json")
	mustRun(t, "collection", "export", "smoke", "--db", db, "-o", exported)
	col, err := readCollectionFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	echo := col.Requests[0]
	if echo.Name != "Echo #"+strconv.FormatInt(ids.echo, 10) || echo.FromCall != ids.echo || len(echo.Examples) != 1 {
		t.Errorf("saved Echo %+v", echo)
	}
	if got := echo.Metadata["x-trace"]; len(got) != 1 || got[0] != "t-1" {
		t.Errorf("saved metadata %v lacks x-trace", echo.Metadata)
	}
	if _, ok := echo.Metadata["authorization"]; ok {
		t.Errorf("the redacted authorization header was saved: %v", echo.Metadata)
	}
	var msg bytes.Buffer
	if len(echo.Messages) == 1 {
		_ = json.Compact(&msg, echo.Messages[0])
	}
	if !strings.HasPrefix(msg.String(), `{"message":"hello","author":{"name":"ann"`) {
		t.Errorf("saved Echo request %s", echo.Messages)
	}

	// The file imports into another capture, under another name.
	other := filepath.Join(t.TempDir(), "other.db")
	if out := mustRun(t, "collection", "import", exported, "--db", other, "--name", "copied"); !strings.Contains(out, `imported 5 requests into collection "copied"`) {
		t.Errorf("import: %s", out)
	}
	if out := mustRun(t, "collection", "list", "--db", other, "--json"); !strings.Contains(out, `"name": "copied"`) || !strings.Contains(out, `"from_call": `+strconv.FormatInt(ids.echo, 10)) {
		t.Errorf("imported collection:\n%s", out)
	}

	junit := filepath.Join(t.TempDir(), "pass.xml")
	rep := runTestJSON(t, exitOK, append([]string{"smoke", "--db", db, "--junit", junit}, demoVolatile...)...)
	if rep.Summary.Calls != 5 || rep.Summary.Match != 5 {
		t.Fatalf("against the same backend: %+v\n%+v", rep.Summary, rep.Results)
	}
	for _, r := range rep.Results {
		if !r.Compared || (r.ComparedBy != "schema" && r.CallID != ids.echoFail) { // a failed Echo has no message to compare
			t.Errorf("%s: compared %v by %q, want with its example by schema", r.Request, r.Compared, r.ComparedBy)
		}
	}
	checkJUnit(t, junit, 5, 0, 0)

	// The changed demo backend: the same methods, some answers altered.
	changed := start(t, "demo", "--changed", "--listen", "127.0.0.1:0", "--backend-listen", "127.0.0.1:0", "--traffic", "0",
		"--db", filepath.Join(t.TempDir(), "changed.db"), "--ui", "127.0.0.1:0", "--web", "127.0.0.1:0")
	changedAddr := changed.waitFor(t, demoProxyLine)
	changed.waitFor(t, regexp.MustCompile(`backend\s+\S+\s+\(.*(--changed: some answers altered)\)`))
	junit = filepath.Join(t.TempDir(), "fail.xml")
	rep = runTestJSON(t, exitMismatch, append([]string{"smoke", "--db", db, "--target", changedAddr, "--junit", junit}, demoVolatile...)...)
	paths := map[string][]string{}
	for _, r := range rep.Results {
		for _, d := range r.Diffs {
			paths[r.Request] = append(paths[r.Request], d.Where+"|"+d.Path)
		}
		sort.Strings(paths[r.Request])
	}
	name := func(method string, id int64) string { return fmt.Sprintf("%s #%d", method, id) }
	want := map[string][]string{
		name("Echo", ids.echo):           {`response[0]|author.name`, `response[0]|labels["k"]`, `response[0]|tags[2]`},
		name("Echo", ids.echoFail):       nil,
		name("Sum", ids.sum):             {`response[0]|total`},
		name("Countdown", ids.countdown): {`response[0]|remaining`, `response[1]|remaining`, `response[2]|remaining`},
		name("Chat", ids.chat):           {`response[0]|text`, `response[1]|text`},
	}
	for n, w := range want {
		if strings.Join(paths[n], " ") != strings.Join(w, " ") {
			t.Errorf("%s: diffs %v, want %v", n, paths[n], w)
		}
	}
	if rep.Summary.Match != 1 || rep.Summary.Mismatch != 4 {
		t.Errorf("summary %+v", rep.Summary)
	}
	checkJUnit(t, junit, 5, 4, 0)
	xmlText, _ := os.ReadFile(junit)
	if !strings.Contains(string(xmlText), `author.name: &#34;ann&#34; → &#34;ANN&#34;`) {
		t.Errorf("the JUnit failure does not show the field diff:\n%s", xmlText)
	}

	// The text report names the field with both values.
	text, _, err := runCmd(t, append([]string{"test", "smoke", "--db", db, "--target", changedAddr}, demoVolatile...)...)
	var ec *exitCodeError
	if !errors.As(err, &ec) || ec.code != exitMismatch {
		t.Errorf("text run: %v", err)
	}
	for _, line := range []string{"Echo #" + strconv.FormatInt(ids.echo, 10) + " /grpctap.demo.v1.DemoService/Echo → " + changedAddr + ": FAIL",
		`response[0].author.name: "ann" → "ANN"`, "smoke: 1 passed, 4 failed, 0 errors of 5 requests"} {
		if !strings.Contains(text, line) {
			t.Errorf("text report lacks %q:\n%s", line, text)
		}
	}
}

// TestCollectionAssertions: assertions saved with a request are checked
// with or without an example; the file is run directly.
func TestCollectionAssertions(t *testing.T) {
	backend := startDemo(t)
	changed := startChanged(t)
	file := filepath.Join(t.TempDir(), "checks.grpctap.json")
	doc := `{"name": "checks", "requests": [
	  {"name": "echo ann", "method": "grpctap.demo.v1.DemoService/Echo",
	   "messages": [{"message": "hi", "author": {"name": "ann"}, "tags": ["a"]}],
	   "assertions": [
	     {"status": "OK"},
	     {"path": "author.name", "equals": "ann"},
	     {"path": "message", "matches": "^h"},
	     {"path": "tags[1]", "exists": false},
	     {"path": "receivedAt", "exists": true}
	   ]},
	  {"name": "echo fails", "method": "/grpctap.demo.v1.DemoService/Echo",
	   "messages": [{"fail": {"code": 5, "message": "gone"}}],
	   "assertions": [{"status": "NOT_FOUND"}]},
	  {"name": "countdown last", "method": "/grpctap.demo.v1.DemoService/Countdown",
	   "messages": [{"count": 2, "interval": "0.01s"}],
	   "assertions": [{"response": -1, "path": "remaining", "exists": false}]}
	]}`
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	noDB := filepath.Join(t.TempDir(), "none.db")
	rep := runTestJSON(t, exitOK, file, "--db", noDB, "--target", backend.Addr())
	if rep.Summary.Match != 3 {
		t.Fatalf("against the demo: %+v", rep.Results)
	}
	if rep.Results[0].Assertions != 5 || rep.Results[0].Compared {
		t.Errorf("first result %+v", rep.Results[0])
	}
	rep = runTestJSON(t, exitMismatch, file, "--db", noDB, "--target", changed)
	var diffs []string
	for _, d := range rep.Results[0].Diffs {
		diffs = append(diffs, fmt.Sprintf("%s %s %v→%v", d.Where, d.Path, d.Recorded, d.Got))
	}
	if strings.Join(diffs, "; ") != "assertion response[0].author.name ann→ANN; assertion response[0].tags[1] (absent)→present" {
		t.Errorf("assertion diffs: %v", diffs)
	}
	// Countdown's last tick on the changed backend says remaining 1.
	if r := rep.Results[2]; r.Verdict != "mismatch" || len(r.Diffs) != 1 || r.Diffs[0].Path != "response[1].remaining" {
		t.Errorf("countdown %+v", r)
	}

	// A bad assertion is refused with the request named; exit 2.
	bad := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(bad, []byte(`{"name": "b", "requests": [{"name": "x", "method": "/a.B/C", "messages": [{}], "assertions": [{"path": "a", "matches": "("}]}]}`), 0o644)
	_, _, err := runCmd(t, "test", bad, "--db", noDB, "--target", backend.Addr())
	if err == nil || !strings.Contains(err.Error(), "request 1 (x): assertion 1: matches:") || exitCode(err, io.Discard) != exitError {
		t.Errorf("bad assertion: %v", err)
	}
	// An unreachable target is an error (exit 2), not a failure.
	_, _, err = runCmd(t, "test", file, "--db", noDB, "--target", stubserver.DeadAddr(t))
	if exitCode(err, io.Discard) != exitError {
		t.Errorf("unreachable target: %v", err)
	}
}

// checkJUnit checks a JUnit file against the rules of the schema Jenkins
// reads (junit-10.xsd of the xunit plugin; GitLab reads the same elements):
// the elements each may hold, their attributes, which are required, their
// types, and that the counts add up.
func checkJUnit(t *testing.T, path string, tests, failures, errs int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type rule struct {
		children map[string]bool
		attrs    map[string]string // name → type
		required []string
		text     bool
	}
	set := func(s ...string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	rules := map[string]rule{
		"testsuites": {children: set("testsuite"), attrs: map[string]string{"name": "string", "time": "time", "tests": "int", "failures": "int", "disabled": "int", "errors": "int"}},
		"testsuite": {children: set("testcase", "properties", "system-out", "system-err"), required: []string{"name", "tests"},
			attrs: map[string]string{"name": "string", "tests": "int", "failures": "int", "errors": "int", "time": "time", "disabled": "int", "skipped": "int",
				"timestamp": "datetime", "hostname": "string", "id": "string", "package": "string", "file": "string", "log": "string", "url": "string", "version": "string"}},
		"testcase": {children: set("skipped", "error", "failure", "system-out", "system-err"), required: []string{"name"},
			attrs: map[string]string{"name": "string", "assertions": "string", "time": "time", "classname": "string", "status": "string", "class": "string", "file": "string", "line": "string", "log": "string", "group": "string", "url": "string"}},
		"failure":    {attrs: map[string]string{"type": "string", "message": "string"}, text: true},
		"error":      {attrs: map[string]string{"type": "string", "message": "string"}, text: true},
		"system-out": {text: true},
		"system-err": {text: true},
	}
	timeRE := regexp.MustCompile(`^(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]{0,3})?$`)
	dateRE := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$`)
	counts := map[string]int{}
	var stack []string
	dec := xml.NewDecoder(f)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			name := el.Name.Local
			r, ok := rules[name]
			if !ok {
				t.Errorf("element <%s> is not in the schema", name)
				continue
			}
			if len(stack) == 0 && name != "testsuites" {
				t.Errorf("root <%s>, want <testsuites>", name)
			}
			if len(stack) > 0 && !rules[stack[len(stack)-1]].children[name] {
				t.Errorf("<%s> may not hold <%s>", stack[len(stack)-1], name)
			}
			got := map[string]bool{}
			for _, a := range el.Attr {
				got[a.Name.Local] = true
				typ, ok := r.attrs[a.Name.Local]
				switch {
				case !ok:
					t.Errorf("<%s %s> is not in the schema", name, a.Name.Local)
				case typ == "int":
					if _, err := strconv.Atoi(a.Value); err != nil {
						t.Errorf("<%s %s=%q>: want an integer", name, a.Name.Local, a.Value)
					}
				case typ == "time" && !timeRE.MatchString(a.Value):
					t.Errorf("<%s %s=%q>: not the schema's time", name, a.Name.Local, a.Value)
				case typ == "datetime" && !dateRE.MatchString(a.Value):
					t.Errorf("<%s %s=%q>: not an xs:dateTime without zone", name, a.Name.Local, a.Value)
				}
			}
			for _, req := range r.required {
				if !got[req] {
					t.Errorf("<%s> lacks the required %s", name, req)
				}
			}
			if name == "testsuite" {
				for _, a := range el.Attr {
					n, _ := strconv.Atoi(a.Value)
					counts["suite."+a.Name.Local] = n
				}
			}
			counts[name]++
			stack = append(stack, name)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 && !rules[stack[len(stack)-1]].text && strings.TrimSpace(string(el)) != "" {
				t.Errorf("<%s> holds text %q", stack[len(stack)-1], el)
			}
		}
	}
	if counts["testsuites"] != 1 || counts["testsuite"] != 1 || counts["testcase"] != tests || counts["failure"] != failures || counts["error"] != errs {
		t.Errorf("JUnit counts %v, want %d tests, %d failures, %d errors", counts, tests, failures, errs)
	}
	if counts["suite.tests"] != tests || counts["suite.failures"] != failures || counts["suite.errors"] != errs {
		t.Errorf("<testsuite> attributes %v disagree with its test cases", counts)
	}
}

// TestCollectionOnPostgres: a capture in PostgreSQL keeps collections and
// runs them as an SQLite file does.
func TestCollectionOnPostgres(t *testing.T) {
	backend := startDemo(t)
	file, _ := recordDemo(t, backend.Addr())
	pg := pgtest.DB(t)
	calls := filepath.Join(t.TempDir(), "calls.ndjson")
	if err := os.WriteFile(calls, []byte(mustRun(t, "export", "--db", file)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "import", calls, "--db", pg)
	if out := mustRun(t, "collection", "add", "smoke", "--all", "--db", pg); !strings.Contains(out, `saved 5 requests into collection "smoke"`) {
		t.Fatalf("collection add: %s", out)
	}
	rep := runTestJSON(t, exitOK, append([]string{"smoke", "--db", pg}, demoVolatile...)...)
	if rep.Summary.Calls != 5 || rep.Summary.Match != 5 {
		t.Errorf("on PostgreSQL: %+v", rep.Summary)
	}
}
