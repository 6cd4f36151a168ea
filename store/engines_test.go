package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/grpctap/grpctap/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// engines are the kinds of capture the engine-neutral tests run on: each
// gives a test a new, empty capture to Open.
var engines = []struct {
	name string
	db   func(t testing.TB) string
}{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "cap.db") }},
	{"postgres", pgtest.DB},
}

// forEachEngine runs fn as a subtest on a new capture of each engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, db string)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { fn(t, e.db(t)) })
	}
}

// openDB opens db for the test's life.
func openDB(t testing.TB, db string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
