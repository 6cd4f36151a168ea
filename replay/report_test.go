package replay

import (
	"strings"
	"testing"
)

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
