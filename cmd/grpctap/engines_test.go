package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/grpctap/grpctap/internal/pgtest"
)

// TestCommandsOnBothEngines: the same calls imported into an SQLite file
// and into a PostgreSQL database read back the same through every
// reading command: calls (table, JSON, filters, text search), show,
// export, stats, and compact's file.
func TestCommandsOnBothEngines(t *testing.T) {
	dir := t.TempDir()
	dbs := map[string]string{"sqlite": filepath.Join(dir, "cap.db"), "postgres": pgtest.DB(t)}
	for _, db := range dbs {
		mustRun(t, "import", "../../testdata/capture/v1.ndjson", "--db", db)
	}
	commands := [][]string{
		{"calls", "--limit", "0"},
		{"calls", "--json", "--limit", "0"},
		{"calls", "--json", "--method", "*Echo", "--status", "ok"},
		{"calls", "--json", "--protocol", "grpc-web"},
		{"calls", "--json", "--text", "hello", "--limit", "3"},
		{"show", "5", "--json"},
		{"show", "7"},
		{"export"},
		{"stats", "--json", "--buckets", "5"},
	}
	for _, args := range commands {
		got := map[string]string{}
		for engine, db := range dbs {
			out := mustRun(t, append(args, "--db", db)...)
			if args[0] == "stats" { // its window ends now: compare what the calls give
				var st struct {
					Calls, Errors int64
					Methods       json.RawMessage
				}
				if err := json.Unmarshal([]byte(out), &st); err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(st)
				out = string(b)
			}
			got[engine] = out
		}
		if got["sqlite"] == "" || strings.TrimSpace(got["sqlite"]) == "(no calls)" {
			t.Errorf("grpctap %s printed nothing to compare", strings.Join(args, " "))
		}
		if d := cmp.Diff(got["sqlite"], got["postgres"]); d != "" {
			t.Errorf("grpctap %s differs between engines (-sqlite +postgres):\n%s", strings.Join(args, " "), d)
		}
	}
	// compact writes the PostgreSQL capture to a file that reads back the
	// same.
	out := filepath.Join(dir, "fleet.db")
	mustRun(t, "compact", "--db", dbs["postgres"], "--into", out)
	want := mustRun(t, "export", "--db", dbs["postgres"])
	if got := mustRun(t, "export", "--db", out); strings.Count(got, "\n") != strings.Count(want, "\n") || !strings.Contains(got, `"method":"/grpctap.demo.v1.DemoService/Echo"`) {
		t.Errorf("compacted file exports %d calls, the database %d", strings.Count(got, "\n"), strings.Count(want, "\n"))
	}
}
