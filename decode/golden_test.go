package decode

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
)

// TestProtosetUpToDate checks testdata/protoset/kitchen.protoset against the
// .proto files; with -update it rewrites it (this is how it is generated).
func TestProtosetUpToDate(t *testing.T) {
	src := protoFilesSource(t)
	want, err := snapshotFiles(src.Files())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(protosetPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(protosetPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(protosetPath)
	if err != nil {
		t.Fatalf("%v (generate it with: go test ./decode -run TestProtosetUpToDate -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: regenerate with go test ./decode -run TestProtosetUpToDate -update", protosetPath)
	}
}

// decodeSource is one way of getting descriptors; every golden case runs
// against each.
type decodeSource struct {
	name string
	// setup returns a decoder and the backend address to decode against.
	setup func(t *testing.T) (*Decoder, string)
}

var decodeSources = []decodeSource{
	{"proto", func(t *testing.T) (*Decoder, string) {
		return newDecoder(t, WithSources(protoFilesSource(t))), ""
	}},
	{"protoset", func(t *testing.T) (*Decoder, string) {
		return newDecoder(t, WithSources(protosetSource(t))), ""
	}},
	{"snapshot", func(t *testing.T) (*Decoder, string) {
		// What a capture stores: the snapshot of a decoder that learned the
		// schema from reflection, read back without the backend.
		addr, stop := startBackend(t, true, true)
		live := New(WithDialer(dialInsecure))
		defer live.Close()
		if _, _, err := live.FindMethod(bg(), placeOrder, addr); err != nil {
			t.Fatal(err)
		}
		snap, err := live.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		stop()
		src, err := NewFileDescriptorSet(snap)
		if err != nil {
			t.Fatal(err)
		}
		return newDecoder(t, WithSources(src)), ""
	}},
	{"reflection", func(t *testing.T) (*Decoder, string) {
		addr, _ := startBackend(t, true, true)
		return newDecoder(t, WithDialer(dialInsecure)), addr
	}},
}

type goldenCase struct {
	name      string
	method    string
	dir       Direction
	subtype   string
	json      string                       // encoded with the .proto source, or
	raw       func() []byte                // hand-made bytes
	perSource bool                         // the output names the source
	check     func(t *testing.T, r Result) // extra assertions
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

var goldenCases = []goldenCase{
	{
		name:   "scalars",
		method: placeOrder,
		json: `{"d": 1.5, "f": -0.25, "i32": -7, "i64": "-9007199254740993", "u32": 4294967295,
			"u64": "18446744073709551615", "s32": -2147483648, "s64": "-3", "fx32": 123456,
			"fx64": "9876543210", "sfx32": -5, "sfx64": "-6", "ok": true,
			"customerName": "Zoë ☕", "blob": "AAEC/w=="}`,
	},
	{
		name:   "enum_oneof",
		method: placeOrder,
		json: `{"flavor": "FLAVOR_SOUR", "flavors": ["FLAVOR_SWEET", "FLAVOR_UMAMI", "FLAVOR_SWEET"],
			"cash": {"amount": {"currency": "EUR", "units": "12", "nanos": 500000000}}}`,
	},
	{
		name:   "oneof_scalar",
		method: placeOrder,
		json:   `{"voucherId": "42"}`,
	},
	{
		name:   "maps",
		method: placeOrder,
		json: `{"stock": {"eggs": 12, "flour": 0, "milk": -1},
			"dishesById": {"7": {"name": "soup"}, "-1": {"name": "bread", "ingredients": [{"name": "rye", "grams": 250}]}}}`,
	},
	{
		name:   "nested_repeated",
		method: placeOrder,
		json: `{"mainDish": {"name": "pie", "ingredients": [{"name": "apple", "grams": 300.5}, {"name": "sugar"}],
				"garnish": {"name": "mint", "garnish": {"name": "sugar dust"}}},
			"sides": [{"name": "salad"}, {"name": "fries"}],
			"packedInts": [1, 150, -1, 300], "unpackedInts": [3, 270], "tags": ["hot", "", "vegan"],
			"packedDoubles": [0.5, -2]}`,
	},
	{
		name:   "well_known",
		method: placeOrder,
		json: `{"placedAt": "2026-11-23T10:36:30.123456789Z", "prepTime": "90.500s",
			"extra": {"@type": "type.googleapis.com/kitchen.v1.Note", "text": "no nuts", "stars": 5},
			"notes": {"allergy": "nuts", "count": 2, "vip": true, "nested": {"k": [1, "two", null]}},
			"anything": [1, "a", {"b": false}],
			"coupon": "SAVE10", "tipCents": "250", "rush": false, "rating": 4.5, "signature": "c2ln",
			"table": 0}`,
	},
	{
		name:   "any_well_known",
		method: placeOrder,
		json:   `{"extra": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1.5s"}}`,
	},
	{
		name:   "empty",
		method: placeOrder,
		json:   `{}`,
	},
	{
		name:   "response",
		method: watch,
		dir:    Response,
		json:   `{"orderId": "o-1", "total": {"currency": "USD", "units": "3"}, "at": "2026-01-02T03:04:05Z"}`,
	},
	{
		name:   "unknown_fields",
		method: placeOrder,
		raw: func() []byte {
			dish := appendBytesField(nil, 1, []byte("pie"))
			dish = appendBytesField(dish, 50, []byte("from a newer schema"))
			side := appendBytesField(nil, 1, []byte("salad"))
			side = appendVarintField(side, 51, 7)
			b := appendBytesField(nil, 14, []byte("ann"))
			b = appendBytesField(b, 22, dish)
			b = appendBytesField(b, 23, []byte{0x0a, 0x01, 'x'})
			b = appendBytesField(b, 23, side)
			b = appendVarintField(b, 99, 1)
			return b
		},
	},
	{
		name:   "stale_schema_wire_type",
		method: placeOrder,
		raw: func() []byte {
			// customer_name (14) is a string in the schema; the sender's
			// newer schema made it an int.
			b := appendVarintField(nil, 3, 7)
			return appendVarintField(b, 14, 42)
		},
	},
	{
		name:   "stale_schema_nested",
		method: placeOrder,
		raw: func() []byte {
			// main_dish.ingredients[0].grams (a double) sent as a varint.
			ing := appendBytesField(nil, 1, []byte("salt"))
			ing = appendVarintField(ing, 2, 3)
			dish := appendBytesField(nil, 1, []byte("soup"))
			dish = appendBytesField(dish, 2, ing)
			return appendBytesField(nil, 22, dish)
		},
	},
	{
		name:   "invalid_utf8",
		method: placeOrder,
		raw: func() []byte {
			return appendBytesField(nil, 14, []byte{'a', 0xff, 'b'})
		},
	},
	{
		name:   "truncated",
		method: placeOrder,
		raw: func() []byte {
			b := appendVarintField(nil, 3, 7)
			b = appendBytesField(b, 14, []byte("a longer name"))
			return b[:len(b)-4]
		},
	},
	{
		name:   "any_unknown_type",
		method: placeOrder,
		raw: func() []byte {
			anyMsg := appendBytesField(nil, 1, []byte("type.googleapis.com/other.v1.Thing"))
			anyMsg = appendBytesField(anyMsg, 2, appendVarintField(nil, 1, 5))
			return appendBytesField(nil, 32, anyMsg)
		},
	},
	{
		name:      "unknown_method",
		method:    "/kitchen.v1.KitchenService/Cancel",
		json:      "",
		raw:       func() []byte { return appendBytesField(nil, 1, []byte("o-1")) },
		perSource: true,
	},
	{
		name:      "unknown_service",
		method:    "/other.v1.Elsewhere/Do",
		raw:       func() []byte { return appendVarintField(nil, 1, 1) },
		perSource: true,
	},
	{
		name:    "json_subtype",
		method:  placeOrder,
		subtype: "json",
		raw:     func() []byte { return []byte("{\"customerName\": \"ann\",\n \"i32\": 3}") },
	},
	{
		name:    "json_subtype_invalid",
		method:  placeOrder,
		subtype: "json",
		raw:     func() []byte { return []byte(`{"customerName": `) },
	},
}

// input builds the bytes of a case, encoding JSON cases with the .proto
// source so every descriptor source reads the very same bytes.
func (c goldenCase) input(t testing.TB) []byte {
	t.Helper()
	if c.raw != nil {
		return c.raw()
	}
	d := New(WithSources(protoFilesSource(t)))
	defer d.Close()
	b, err := d.Encode(bg(), c.method, "", c.dir, []byte(c.json))
	if err != nil {
		t.Fatalf("encode case %s: %v", c.name, err)
	}
	return b
}

type goldenFile struct {
	Method     string `json:"method"`
	Direction  string `json:"direction"`
	Subtype    string `json:"content_subtype,omitempty"`
	InputHex   string `json:"input_hex"`
	Result     Result `json:"result"`
	Schemaless *Node  `json:"schemaless"`
}

func TestGolden(t *testing.T) {
	for _, src := range decodeSources {
		t.Run(src.name, func(t *testing.T) {
			d, backend := src.setup(t)
			for _, c := range goldenCases {
				t.Run(c.name, func(t *testing.T) {
					raw := c.input(t)
					r := d.Decode(bg(), Input{Method: c.method, Backend: backend, Direction: c.dir, ContentSubtype: c.subtype, Raw: raw})
					if r.JSON != nil && r.Source == "" && c.subtype == "" {
						t.Errorf("decoded without naming the source")
					}
					r.Source = "" // differs by source by design
					if backend != "" {
						r.Error = strings.ReplaceAll(r.Error, backend, "BACKEND")
					}
					sl, slErr := Schemaless(raw)
					if slErr != nil && c.subtype == "" && !strings.HasPrefix(c.name, "truncated") {
						t.Errorf("schemaless: %v", slErr)
					}
					if c.subtype != "" {
						sl = nil
					}
					g := goldenFile{Method: c.method, Direction: c.dir.String(), Subtype: c.subtype, InputHex: hex.EncodeToString(raw), Result: r, Schemaless: sl}
					got, err := json.MarshalIndent(g, "", "  ")
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, '\n')
					name := c.name
					if c.perSource {
						name += "." + src.name
					}
					compareGolden(t, filepath.Join(goldenDir, name+".json"), got)
				})
			}
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}
