package importer

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpctap/grpctap/store"
)

// TestIntoKeepsBatchesWrittenBeforeAnError: a bad object stops the
// import; the batches written before it stay, with ids in input order, and
// the result counts them (the calls of the unfinished batch are not
// written).
func TestIntoKeepsBatchesWrittenBeforeAnError(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var in strings.Builder
	const good = batchCalls + 3
	for i := range good {
		fmt.Fprintf(&in, `{"service":"t.S","method":"M%d","messages":[{"message_origin":"client","raw_message":"AQI=","timestamp":"2026-11-20T09:30:00Z"}]}`+"\n", i)
	}
	in.WriteString(`{"service":"t.S"}` + "\n")
	seen := 0
	res, err := Into(ctx, st, strings.NewReader(in.String()), func(c *store.CallWithMessages) { seen++ })
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("object %d", good+1)) {
		t.Fatalf("err = %v, want the bad object %d named", err, good+1)
	}
	if seen != good || res.N != batchCalls || res.Last-res.First != batchCalls-1 {
		t.Fatalf("result %+v after %d calls seen, want one batch of %d", res, seen, batchCalls)
	}
	calls, err := st.ListCalls(ctx, store.Filter{})
	if err != nil || len(calls) != batchCalls {
		t.Fatalf("capture holds %d calls (%v), want %d", len(calls), err, batchCalls)
	}
	c, err := st.GetCall(ctx, res.Last)
	if err != nil || c.Method != fmt.Sprintf("/t.S/M%d", batchCalls-1) || len(c.Messages) != 1 {
		t.Fatalf("last call %+v (%v)", c, err)
	}
}
