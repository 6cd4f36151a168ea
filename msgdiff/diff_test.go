package msgdiff

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/grpctap/grpctap/demo/demopb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func tree(t *testing.T, s string) any {
	t.Helper()
	return JSONTree([]byte(s))
}

func TestDiffTreesPaths(t *testing.T) {
	md := (&demopb.EchoResponse{}).ProtoReflect().Descriptor()
	rec := tree(t, `{"message":"hi","author":{"name":"ann"},"tags":["a","b"],"labels":{"k":"v","x.y":"1"},"receivedAt":"2026-01-01T00:00:00Z"}`)
	got := tree(t, `{"message":"hi","author":{"name":"ANN","mood":"MOOD_CURIOUS"},"tags":["a"],"labels":{"k":"w","x.y":"1"},"receivedAt":"2026-01-02T00:00:00Z"}`)
	ig, err := ParseFieldPath("received_at")
	if err != nil {
		t.Fatal(err)
	}
	diffs := DiffTrees(md, rec, got, []FieldPath{ig})
	want := []FieldDiff{
		{Path: "author.mood", Recorded: Absent, Got: "MOOD_CURIOUS"},
		{Path: "author.name", Recorded: "ann", Got: "ANN"},
		{Path: `labels["k"]`, Recorded: "v", Got: "w"},
		{Path: "tags[1]", Recorded: "b", Got: Absent},
	}
	if d := cmp.Diff(want, diffs); d != "" {
		t.Errorf("diffs (-want +got):\n%s", d)
	}
}

func TestDiffTreesNumbersAndWildcards(t *testing.T) {
	rec := tree(t, `{"items":[{"id":"1","n":1.0},{"id":"2","n":2}]}`)
	got := tree(t, `{"items":[{"id":"9","n":1},{"id":"8","n":3}]}`)
	ig, _ := ParseFieldPath("items[*].id")
	diffs := DiffTrees(nil, rec, got, []FieldPath{ig})
	if len(diffs) != 1 || diffs[0].Path != "items[1].n" {
		t.Errorf("diffs %+v", diffs)
	}
	if d := DiffTrees(nil, rec, rec, nil); len(d) != 0 {
		t.Errorf("equal trees differ: %+v", d)
	}
}

func TestParseFieldPath(t *testing.T) {
	for in, want := range map[string]string{
		"author.name":   "author.name",
		"tags[1]":       "tags[1]",
		`labels["a.b"]`: `labels["a.b"]`,
		"labels[k]":     `labels["k"]`,
		"items[*].id":   "items.*.id",
		"*.name":        "*.name",
		`m["q\"x"].v`:   `m["q\"x"].v`,
	} {
		p, err := ParseFieldPath(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		// [*] prints as a bare step.
		if got := p.String(); got != want {
			t.Errorf("%s → %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"", ".a", "a..b", "a[1", `a["x`} {
		if _, err := ParseFieldPath(bad); err == nil {
			t.Errorf("%q should not parse", bad)
		}
	}
}
