package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/grpctap/grpctap/msgdiff"
)

// Summary counts the verdicts of a replay run.
type Summary struct {
	Calls    int `json:"calls"`
	Match    int `json:"match"`
	Mismatch int `json:"mismatch"`
	Errors   int `json:"errors"`
}

// Add counts one result.
func (s *Summary) Add(r Result) {
	s.Calls++
	switch r.Verdict {
	case Match:
		s.Match++
	case Mismatch:
		s.Mismatch++
	default:
		s.Errors++
	}
}

// WriteText prints one result for people: a verdict line, then one line per
// difference (where, path, recorded value → new value) and the notes.
func WriteText(w io.Writer, r Result) {
	fmt.Fprintf(w, "call %d %s → %s: %s", r.CallID, r.Method, r.Target, r.Verdict)
	switch r.Verdict {
	case Error:
		fmt.Fprintf(w, ": %s\n", r.Error)
		return
	default:
		fmt.Fprintf(w, " (%s, %.1fms)\n", r.Got, r.DurationMS)
	}
	WriteDetails(w, r)
}

// WriteDetails prints a result's differences (where, path, recorded value
// → new value), one a line, and its notes, each indented by two spaces.
func WriteDetails(w io.Writer, r Result) {
	for _, d := range r.Diffs {
		where := d.Where
		if d.Path != "" {
			sep := " "
			if strings.HasPrefix(d.Where, "response[") || strings.HasPrefix(d.Where, "status.details[") {
				sep = "."
				if strings.HasPrefix(d.Path, "[") {
					sep = ""
				}
			}
			where += sep + d.Path
		}
		fmt.Fprintf(w, "  %s: %s → %s\n", where, show(d.Recorded), show(d.Got))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// show prints a diff value compactly: strings quoted, absent bare, others
// as JSON.
func show(v any) string {
	if s, ok := v.(string); ok {
		if s == msgdiff.Absent {
			return s
		}
		return fmt.Sprintf("%q", s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// WriteSummary prints the closing line of a replay run.
func WriteSummary(w io.Writer, s Summary) {
	fmt.Fprintf(w, "replayed %s: %d match, %d mismatch, %s\n", count(s.Calls, "call"), s.Match, s.Mismatch, count(s.Errors, "error"))
}

// count says "1 call", "3 calls".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
