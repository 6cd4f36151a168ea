package decode

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func addGoldenSeeds(f *testing.F) {
	for _, c := range goldenCases {
		if c.raw != nil {
			f.Add(c.raw())
		}
	}
	f.Add([]byte{0x1b, 0x08, 0x05, 0x1c})
	f.Add([]byte{0x0a, 0x80, 0x80, 0x80, 0x80, 0x10})
	f.Add([]byte{})
}

// FuzzSchemaless: any bytes give a tree (maybe with an error), never a
// panic; the tree always renders as JSON; offsets stay inside the input.
// The schema-driven path gets the same bytes.
func FuzzSchemaless(f *testing.F) {
	addGoldenSeeds(f)
	for _, c := range goldenCases {
		if c.json != "" {
			f.Add(c.input(f))
		}
	}
	d := New(WithSources(protoFilesSource(f)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := Schemaless(raw)
		if n == nil {
			t.Fatal("nil tree")
		}
		if _, jerr := json.Marshal(n); jerr != nil {
			t.Fatalf("tree does not render: %v", jerr)
		}
		if err == nil {
			checkOffsets(t, n, len(raw))
		}
		// Bounds change what is shown, never whether the bytes are valid.
		small := Limits{Items: 2, Bytes: 3, Nodes: 5}
		if bn, _, berr := SchemalessWithin(raw, small); bn == nil || (berr == nil) != (err == nil) {
			t.Fatalf("bounded tree %v, error %v; unbounded error %v", bn, berr, err)
		}
		for _, lim := range []Limits{NoLimits, small} {
			for _, dir := range []Direction{Request, Response} {
				r := d.Decode(bg(), Input{Method: placeOrder, Direction: dir, Raw: raw, Limits: lim})
				if r.JSON != nil && !json.Valid(r.JSON) {
					t.Fatalf("invalid JSON %q", r.JSON)
				}
				if r.JSON == nil && (r.Schemaless == nil || r.Error == "") {
					t.Fatalf("no JSON and no explanation: %+v", r)
				}
				if _, err := json.Marshal(r); err != nil {
					t.Fatalf("result does not render: %v", err)
				}
			}
		}
	})
}

func checkOffsets(t *testing.T, n *Node, size int) {
	t.Helper()
	for _, f := range n.Fields {
		if f.Offset < 0 || f.Offset >= size {
			t.Fatalf("field %d offset %d outside %d bytes", f.Number, f.Offset, size)
		}
		if f.Message != nil {
			checkOffsets(t, f.Message, size)
		}
		if f.Group != nil {
			checkOffsets(t, f.Group, size)
		}
	}
}

// FuzzEncode: any JSON either fails to encode with an error or encodes to
// bytes that decode back to JSON, never a panic.
func FuzzEncode(f *testing.F) {
	for _, c := range goldenCases {
		if c.json != "" && c.method == placeOrder {
			f.Add(c.json)
		}
	}
	f.Add(`{"extra": {"@type": "type.googleapis.com/kitchen.v1.Order", "extra": {"@type": "type.googleapis.com/google.protobuf.Value", "value": [1]}}}`)
	f.Add(`{"notes": {"a": {"b": {"c": [[[]]]}}}}`)
	f.Add(`{"i64": "1e3", "u32": -1, "flavor": 7, "dishesById": {"x": {}}}`)
	f.Add(`[`)
	d := New(WithSources(protoFilesSource(f)))
	md, err := d.FindMessage(bg(), "kitchen.v1.Order", "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, js string) {
		b, err := d.EncodeMessage(bg(), md, "", []byte(js))
		if err != nil {
			return
		}
		r := d.DecodeMessage(bg(), md, "", b)
		if r.JSON == nil || r.Error != "" {
			t.Fatalf("encoded %q to %x, which does not decode: %s", js, b, r.Error)
		}
	})
}

// bench1KiB returns an Order of exactly 1024 bytes on the wire.
func bench1KiB(tb testing.TB, d *Decoder) []byte {
	tb.Helper()
	var sides []string
	for i := 0; i < 8; i++ {
		sides = append(sides, fmt.Sprintf(`{"name": "side %d", "ingredients": [{"name": "salt", "grams": 1.5}, {"name": "pepper", "grams": 0.25}]}`, i))
	}
	body := `"i64": "-42", "flavor": "FLAVOR_UMAMI", "stock": {"eggs": 12, "milk": 3},
		"mainDish": {"name": "pie", "ingredients": [{"name": "apple", "grams": 300}]},
		"sides": [` + strings.Join(sides, ",") + `], "packedInts": [1, 2, 3, 150, 300, 70000],
		"tags": ["hot", "vegan"], "placedAt": "2026-11-23T10:36:30Z", "prepTime": "90s",
		"extra": {"@type": "type.googleapis.com/kitchen.v1.Note", "text": "no nuts", "stars": 5},
		"notes": {"allergy": "nuts", "count": 2}, "coupon": "SAVE10"`
	for pad := 0; pad < 1024; pad++ {
		js := fmt.Sprintf(`{%s, "customerName": %q}`, body, strings.Repeat("x", pad))
		b, err := d.Encode(bg(), placeOrder, "", Request, []byte(js))
		if err != nil {
			tb.Fatal(err)
		}
		if len(b) == 1024 {
			return b
		}
		if len(b) > 1024 {
			tb.Fatalf("base message already %d bytes", len(b))
		}
	}
	tb.Fatal("could not reach 1024 bytes")
	return nil
}

// BenchmarkDecode decodes 1 KiB messages (bytes → protojson) on one
// goroutine: msgs/s is per core.
func BenchmarkDecode(b *testing.B) {
	d := New(WithSources(protoFilesSource(b)))
	raw := bench1KiB(b, d)
	in := Input{Method: placeOrder, Raw: raw}
	if r := d.Decode(bg(), in); r.JSON == nil {
		b.Fatal(r.Error)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := d.Decode(bg(), in); r.JSON == nil {
			b.Fatal(r.Error)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSchemaless is the same 1 KiB message without a schema.
func BenchmarkSchemaless(b *testing.B) {
	d := New(WithSources(protoFilesSource(b)))
	raw := bench1KiB(b, d)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Schemaless(raw); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
