package recorder

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/grpctap/grpctap/internal/headers"
	"github.com/grpctap/grpctap/store"
)

// TestPolicyCallKeepsRedactedNames: an imported call keeps the redacted
// names it comes with (an export of a capture) and adds the policy's; one
// that comes with none (a grpc-dump line, an export from before the list)
// is read the old way, from its values.
func TestPolicyCallKeepsRedactedNames(t *testing.T) {
	r := headers.Redacted
	for _, tc := range []struct {
		name   string
		policy []string
		in     []string // the call's Redacted as read
		want   []string
		note   []string // the stored x-note
	}{
		{"export with the list, nothing more redacted", []string{}, []string{"x-old"}, []string{"x-old"}, []string{r}},
		{"export with the list, and the default policy", nil, []string{}, []string{"authorization"}, []string{r}},
		{"no list: values decide", []string{}, nil, []string{"x-note", "x-old"}, []string{r}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &store.CallWithMessages{Call: store.Call{Redacted: tc.in,
				RequestHeaders: store.Metadata{"Authorization": {"Bearer s"}, "x-note": {r}},
				Trailers:       store.Metadata{"x-old": {r}}}}
			NewPolicy(tc.policy, 0).Call(c)
			if d := cmp.Diff(tc.want, c.Redacted); d != "" {
				t.Errorf("redacted (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.note, c.RequestHeaders["x-note"]); d != "" {
				t.Errorf("x-note (-want +got):\n%s", d)
			}
		})
	}
}
