package main

import (
	"strings"
	"testing"
)

// TestLongPatternsRefused: a search text or method glob past 1,000
// characters is refused naming the limit, by every command that takes one,
// rather than failing in SQLite ("LIKE or GLOB pattern too complex").
func TestLongPatternsRefused(t *testing.T) {
	db := sampleCapture(t)
	long := strings.Repeat("x", 100_000)
	for _, args := range [][]string{
		{"calls", "--db", db, "--text", long},
		{"calls", "--db", db, "--method", "*" + long},
		{"export", "--db", db, "--text", long},
		{"stats", "--db", db, "--method", "*" + long},
		{"replay", "--db", db, "--method", "*" + long},
	} {
		_, _, err := runCmd(t, args...)
		if err == nil || !strings.Contains(err.Error(), "at most 1000 characters are allowed") || !strings.Contains(err.Error(), args[3]) {
			t.Errorf("grpctap %s %s: err = %.200v, want it to name %s and the limit", args[0], args[3], err, args[3])
		}
	}
	if _, _, err := runCmd(t, "calls", "--db", db, "--text", strings.Repeat("x", 1000)); err != nil {
		t.Errorf("a 1000-character --text: %v", err)
	}
}
