package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/grpctap/grpctap/store"
)

// detailJSON is what show --json and export print of one call's status.
type detailJSON struct {
	Status struct {
		Details [][]byte `json:"details"`
	} `json:"status"`
	Decoded []struct {
		Type  string         `json:"type"`
		JSON  map[string]any `json:"json"`
		Error string         `json:"error"`
	} `json:"status_details_decoded"`
}

// TestShowDecodesStatusDetails: the details of a failed call (the demo's
// google.rpc.ErrorInfo and BadRequest, recorded through the proxy) are
// decoded in show's text, and in show --json and export beside the raw
// base64, as the inspector shows them.
func TestShowDecodesStatusDetails(t *testing.T) {
	d := startDemo(t)
	db, ids := recordDemo(t, d.Addr())
	id := itoa(ids.echoFail)

	out := mustRun(t, "show", id, "--db", db)
	for _, want := range []string{"detail 1   google.rpc.ErrorInfo", `"reason": "DEMO_REQUESTED_FAILURE"`,
		"detail 2   google.rpc.BadRequest", `"description": "the caller asked for this error"`} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}

	check := func(what, line string) {
		t.Helper()
		var c detailJSON
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(c.Status.Details) != 2 || len(c.Decoded) != 2 {
			t.Fatalf("%s: %d raw details, %d decoded: %s", what, len(c.Status.Details), len(c.Decoded), line)
		}
		var a anypb.Any
		if err := proto.Unmarshal(c.Status.Details[0], &a); err != nil || !strings.HasSuffix(a.GetTypeUrl(), "google.rpc.ErrorInfo") {
			t.Errorf("%s: raw detail 1 is not the ErrorInfo Any: %v %v", what, a.GetTypeUrl(), err)
		}
		if c.Decoded[0].Type != "google.rpc.ErrorInfo" || c.Decoded[0].JSON["reason"] != "DEMO_REQUESTED_FAILURE" || c.Decoded[0].JSON["domain"] != "demo.grpctap.dev" {
			t.Errorf("%s: detail 1 decoded as %+v", what, c.Decoded[0])
		}
		if c.Decoded[1].Type != "google.rpc.BadRequest" || c.Decoded[1].JSON["fieldViolations"] == nil {
			t.Errorf("%s: detail 2 decoded as %+v", what, c.Decoded[1])
		}
	}
	check("show --json", mustRun(t, "show", id, "--db", db, "--json"))
	var line string
	for _, l := range strings.Split(strings.TrimSpace(mustRun(t, "export", "--db", db)), "\n") {
		if strings.Contains(l, `"id":`+id+`,`) {
			line = l
		}
	}
	check("export", line)
}

// TestShowDecodesStatusDetailsWithTheGivenSchema: a detail of a type only
// --protoset knows is decoded with it; one of an unknown type says so and
// keeps its bytes.
func TestShowDecodesStatusDetailsWithTheGivenSchema(t *testing.T) {
	db := filepath.Join(t.TempDir(), "cap.db")
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	note := protowire.AppendTag(nil, 1, protowire.BytesType)
	note = protowire.AppendString(note, "too salty")
	note = protowire.AppendTag(note, 2, protowire.VarintType)
	note = protowire.AppendVarint(note, 2)
	known, err := proto.Marshal(&anypb.Any{TypeUrl: "type.googleapis.com/kitchen.v1.Note", Value: note})
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := proto.Marshal(&anypb.Any{TypeUrl: "type.googleapis.com/elsewhere.v9.Secret", Value: []byte{8, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WriteBatch(context.Background(), []store.Event{
		{Start: &store.CallStart{ID: 1, Method: "/kitchen.v1.Kitchen/Order", Protocol: "grpc", Time: capT0}},
		{End: &store.CallEnd{CallID: 1, Time: capT0, Code: 9, Message: "no", Details: [][]byte{known, unknown}}},
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	protoset := filepath.Join("..", "..", "testdata", "protoset", "kitchen.protoset")

	out := mustRun(t, "show", "1", "--db", db, "--protoset", protoset)
	for _, want := range []string{"detail 1   kitchen.v1.Note", `"text": "too salty"`, `"stars": 2`,
		"detail 2   elsewhere.v9.Secret, ", "(not decoded: no schema for elsewhere.v9.Secret)"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	var c detailJSON
	if err := json.Unmarshal([]byte(mustRun(t, "show", "1", "--db", db, "--protoset", protoset, "--json")), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Decoded) != 2 || c.Decoded[0].JSON["text"] != "too salty" || c.Decoded[1].Error != "no schema for elsewhere.v9.Secret" || c.Decoded[1].JSON != nil {
		t.Errorf("decoded details %+v", c.Decoded)
	}
	if len(c.Status.Details) != 2 || base64.StdEncoding.EncodeToString(c.Status.Details[1]) != base64.StdEncoding.EncodeToString(unknown) {
		t.Errorf("raw details %v", c.Status.Details)
	}
}
