package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/grpctap/grpctap/store"
)

// TestShowSchemalessTree: text 'show' of a message no schema knows prints
// the schemaless tree the README promises (field numbers, wire types,
// strings, nested messages, packed values), bounded as the JSON views are,
// instead of a hex dump; and it counts messages in plain English.
func TestShowSchemalessTree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tree.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inner := protowire.AppendTag(nil, 1, protowire.VarintType)
	inner = protowire.AppendVarint(inner, 7)
	msg := protowire.AppendTag(nil, 1, protowire.BytesType)
	msg = protowire.AppendString(msg, "hello world")
	msg = protowire.AppendTag(msg, 2, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 150)
	msg = protowire.AppendTag(msg, 3, protowire.BytesType)
	msg = protowire.AppendBytes(msg, inner)
	msg = protowire.AppendTag(msg, 4, protowire.BytesType)
	msg = protowire.AppendString(msg, strings.Repeat("long text ", 1000)) // 10,000 bytes: cut at 4 KiB
	ev := []store.Event{{Start: &store.CallStart{ID: 1, Method: "/test.Unknown/Get", Protocol: "grpc", Time: capT0}},
		{Message: &store.MessageRecord{CallID: 1, Seq: 1, Direction: store.DirRequest, Time: capT0, Size: int64(len(msg)), Raw: msg}}}
	for i := 2; i <= 4; i++ {
		ev = append(ev, store.Event{Message: &store.MessageRecord{CallID: 1, Seq: i, Direction: store.DirResponse, Time: capT0, Size: int64(len(inner)), Raw: inner}})
	}
	ev = append(ev, store.Event{End: &store.CallEnd{CallID: 1, Time: capT0.Add(time.Millisecond)}})
	if err := st.WriteBatch(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	st.Close()

	out := mustRun(t, "show", "1", "--db", path)
	for _, want := range []string{
		"messages   1 request (",
		"3 responses (",
		"schemaless (field number, wire type: value; no schema):",
		`1 len: "hello world"`,
		"2 varint: 150",
		"3 len: {  (message, 2 bytes)",
		"      1 varint: 7",
		"… 10000 bytes in all (--full shows them)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "68 65 6c 6c 6f") || strings.Contains(out, "|hello") {
		t.Errorf("show dumps hex for a message it has a schemaless tree of:\n%s", out)
	}
	if len(out) > 6000 {
		t.Errorf("show printed %d bytes for a 10 KB message: the tree is not bounded", len(out))
	}
	full := mustRun(t, "show", "1", "--db", path, "--full")
	if !strings.Contains(full, strings.Repeat("long text ", 1000)) {
		t.Errorf("show --full does not print the long string whole")
	}
}
