package replay

import (
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/grpctap/grpctap/msgdiff"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSummaryGrammar: the closing line counts in plain English ("1 call",
// "1 error"), not "replayed 1 calls ... 1 errors".
func TestSummaryGrammar(t *testing.T) {
	for _, tc := range []struct {
		s    Summary
		want string
	}{
		{Summary{Calls: 1, Mismatch: 1}, "replayed 1 call: 0 match, 1 mismatch, 0 errors\n"},
		{Summary{Calls: 3, Match: 2, Errors: 1}, "replayed 3 calls: 2 match, 0 mismatch, 1 error\n"},
	} {
		var b strings.Builder
		WriteSummary(&b, tc.s)
		if b.String() != tc.want {
			t.Errorf("summary %+v: %q, want %q", tc.s, b.String(), tc.want)
		}
	}
}

func TestWriteText(t *testing.T) {
	var b strings.Builder
	WriteText(&b, Result{CallID: 3, Method: "/p.S/M", Target: "t", Verdict: Mismatch, Got: "OK", Diffs: []Diff{
		{Where: "response[0]", Path: "a.b", Recorded: "x", Got: json.Number("2")},
		{Where: "trailer", Path: "x-k", Recorded: "1", Got: msgdiff.Absent},
	}})
	want := "call 3 /p.S/M → t: mismatch (OK, 0.0ms)\n  response[0].a.b: \"x\" → 2\n  trailer x-k: \"1\" → (absent)\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
