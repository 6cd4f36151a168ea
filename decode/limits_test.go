package decode

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func elisionStrings(e []Elision) string {
	s := make([]string, len(e))
	for i, x := range e {
		s[i] = x.String()
	}
	return strings.Join(s, "; ")
}

// TestLimitsWithSchema: lists, maps, strings and bytes are cut to the
// limits, at character boundaries, nested ones too, and each cut is listed.
func TestLimitsWithSchema(t *testing.T) {
	d := New(WithSources(protoFilesSource(t)))
	defer d.Close()
	ctx := context.Background()
	stock := map[string]int{}
	for i := range 10 {
		stock[fmt.Sprintf("k%d", i)] = i
	}
	ingredients := []map[string]string{{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}, {"name": "e"}}
	order := map[string]any{
		"customerName": "ééé", "blob": "AAECAwQFBgc=", "stock": stock,
		"packedInts": []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
		"sides":      []any{map[string]any{"name": "x", "ingredients": ingredients}, map[string]any{"name": "y"}},
	}
	js, _ := json.Marshal(order)
	raw, err := d.Encode(ctx, placeOrder, "", Request, js)
	if err != nil {
		t.Fatal(err)
	}

	res := d.Decode(ctx, Input{Method: placeOrder, Direction: Request, Raw: raw, Limits: Limits{Items: 3, Bytes: 5}})
	var got struct {
		CustomerName string           `json:"customerName"`
		Blob         string           `json:"blob"`
		Stock        map[string]int   `json:"stock"`
		PackedInts   []int            `json:"packedInts"`
		Sides        []map[string]any `json:"sides"`
	}
	if err := json.Unmarshal(res.JSON, &got); err != nil {
		t.Fatalf("%s: %v", res.JSON, err)
	}
	if got.CustomerName != "éé" || got.Blob != "AAECAwQ=" || len(got.Stock) != 3 || got.Stock["k2"] != 2 ||
		len(got.PackedInts) != 3 || len(got.Sides[0]["ingredients"].([]any)) != 3 {
		t.Errorf("bounded view %s", res.JSON)
	}
	want := []string{"customerName 4 of 6 bytes", "blob 5 of 8 bytes", "stock 3 of 10 items", "packedInts 3 of 10 items", "sides[0].ingredients 3 of 5 items"}
	for _, w := range want {
		if !strings.Contains(elisionStrings(res.Elided), w) {
			t.Errorf("elided %q lacks %q", elisionStrings(res.Elided), w)
		}
	}

	// The whole view has a budget too: past it lists are shown empty.
	res = d.Decode(ctx, Input{Method: placeOrder, Direction: Request, Raw: raw, Limits: Limits{Nodes: 4}})
	if n := strings.Count(elisionStrings(res.Elided), "of"); n < 2 {
		t.Errorf("Nodes 4: elided %q, json %s", elisionStrings(res.Elided), res.JSON)
	}
	// No limits: the message whole.
	if res := d.Decode(ctx, Input{Method: placeOrder, Direction: Request, Raw: raw}); len(res.Elided) != 0 || !strings.Contains(string(res.JSON), `"k9"`) {
		t.Errorf("unbounded: %s %v", res.JSON, res.Elided)
	}
}

// TestLimitsSchemaless: a run of fields is shown in part with the count of
// the rest, and packed runs and bytes are cut.
func TestLimitsSchemaless(t *testing.T) {
	var raw []byte
	for i := range 1000 {
		raw = protowire.AppendTag(raw, 1, protowire.VarintType)
		raw = protowire.AppendVarint(raw, uint64(i))
	}
	n, elided, err := SchemalessWithin(raw, Limits{Items: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Fields) != 3 || n.MoreFields != 997 || elisionStrings(elided) != "(top level) 3 of 1000 fields" {
		t.Errorf("%d fields, %d more, elided %q", len(n.Fields), n.MoreFields, elisionStrings(elided))
	}
	// A nested message's fields past the budget.
	inner := raw[:20]
	outer := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), inner)
	if n, _, err := SchemalessWithin(outer, Limits{Nodes: 4}); err != nil || n.Fields[0].Message == nil || len(n.Fields[0].Message.Fields) != 3 {
		t.Errorf("nested: %+v %v", n.Fields[0], err)
	}
	packed := protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), []byte{0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	n, elided, err = SchemalessWithin(packed, Limits{Items: 2, Bytes: 4})
	if err != nil {
		t.Fatal(err)
	}
	f := n.Fields[0]
	// ff 01 is the varint 255: nine varints in all.
	if f.Bytes == nil || *f.Bytes != "/wECAw==" || !f.Cut || strings.Join(f.PackedVarints, ",") != "255,2" || f.PackedCount != 9 {
		t.Errorf("field %+v", f)
	}
	if !strings.Contains(elisionStrings(elided), "field 3 4 of 10 bytes") {
		t.Errorf("elided %q", elisionStrings(elided))
	}
}

// TestLimitsJSONSubtype: a large message sent as JSON is shortened too.
func TestLimitsJSONSubtype(t *testing.T) {
	items := make([]int, 200_000) // past maxViewJSON
	js, _ := json.Marshal(map[string]any{"items": items, "name": strings.Repeat("n", 10_000)})
	res := New().Decode(context.Background(), Input{ContentSubtype: "json", Raw: js, Limits: DefaultLimits})
	var got struct {
		Items []int  `json:"items"`
		Name  string `json:"name"`
	}
	if err := json.Unmarshal(res.JSON, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != DefaultLimits.Items || len(got.Name) != DefaultLimits.Bytes || len(res.Elided) != 2 {
		t.Errorf("%d items, name of %d, elided %q", len(got.Items), len(got.Name), elisionStrings(res.Elided))
	}
}
