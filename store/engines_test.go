package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

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

// TestRedactedOutOfBand: which headers were redacted is kept beside the
// values, not read from them: a header whose real value is "[redacted]"
// reads back as sent, on both engines, whether written by a recorder's
// events or by Import; and a client's header cannot pose as the list.
func TestRedactedOutOfBand(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db string) {
		ctx := context.Background()
		s := openDB(t, db, Options{})
		red := []string{"authorization", "set-cookie"}
		start := &CallStart{ID: 1, Method: "/a.B/C", Time: t0, Redacted: red, Header: Metadata{
			"authorization": {"[redacted]"}, "x-note": {"[redacted]"}, redactedKey: {"x-note"}}}
		err := s.WriteBatch(ctx, []Event{
			{Start: start},
			{Header: &ResponseHeader{CallID: 1, Time: t0, Redacted: red, Header: Metadata{"set-cookie": {"[redacted]", "[redacted]"}}}},
			{End: &CallEnd{CallID: 1, Time: t0, Redacted: red, Trailers: Metadata{"x-trailer": {"[redacted]"}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetCall(ctx, start.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := Call{RequestHeaders: Metadata{"authorization": {"[redacted]"}, "x-note": {"[redacted]"}},
			ResponseHeaders: Metadata{"set-cookie": {"[redacted]", "[redacted]"}},
			Trailers:        Metadata{"x-trailer": {"[redacted]"}}, Redacted: []string{"authorization", "set-cookie"}}
		check := func(what string, c *CallWithMessages) {
			t.Helper()
			if d := cmp.Diff(want, Call{RequestHeaders: c.RequestHeaders, ResponseHeaders: c.ResponseHeaders,
				Trailers: c.Trailers, Redacted: c.Redacted}); d != "" {
				t.Errorf("%s (-want +got):\n%s", what, d)
			}
		}
		check("recorded", got)

		ids, err := s.Import(ctx, []CallWithMessages{*got})
		if err != nil {
			t.Fatal(err)
		}
		again, err := s.GetCall(ctx, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		check("imported", again)

		// Nothing redacted: no list is written, and none is read.
		plain, err := s.Import(ctx, []CallWithMessages{{Call: Call{Method: "/a.B/C", Start: t0,
			RequestHeaders: Metadata{"x-a": {"1"}}}}})
		if err != nil {
			t.Fatal(err)
		}
		if c, err := s.GetCall(ctx, plain[0]); err != nil || c.Redacted == nil || len(c.Redacted) != 0 {
			t.Errorf("call without redaction: redacted %#v (%v), want []", c.Redacted, err)
		}
	})
}
