package decode

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// marshalSetWithout serializes exactly files, leaving their imports out.
func TestSchemaless(t *testing.T) {
	fixed64 := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), v)
	}
	fixed32 := func(num protowire.Number, v uint32) []byte {
		return protowire.AppendFixed32(protowire.AppendTag(nil, num, protowire.Fixed32Type), v)
	}
	cases := []struct {
		name    string
		raw     []byte
		want    string
		wantErr string
	}{
		{"empty", nil, `{"fields":[]}`, ""},
		{"varint", []byte{0x08, 0x96, 0x01}, `{"fields":[{"number":1,"wire":"varint","offset":0,"varint":"150"}]}`, ""},
		{"negative", appendVarintField(nil, 2, uint64(math.MaxUint64-1)),
			`{"fields":[{"number":2,"wire":"varint","offset":0,"varint":"18446744073709551614","int64":"-2"}]}`, ""},
		{"i64", fixed64(3, math.Float64bits(1.5)),
			`{"fields":[{"number":3,"wire":"i64","offset":0,"fixed64":"4609434218613702656","double":1.5}]}`, ""},
		{"i64 nan", fixed64(3, math.Float64bits(math.NaN())),
			`{"fields":[{"number":3,"wire":"i64","offset":0,"fixed64":"9221120237041090561"}]}`, ""},
		{"i32", fixed32(4, math.Float32bits(-2.5)),
			`{"fields":[{"number":4,"wire":"i32","offset":0,"fixed32":3223322624,"float":-2.5}]}`, ""},
		{"string", appendBytesField(nil, 5, []byte("héllo\n")),
			`{"fields":[{"number":5,"wire":"len","offset":0,"length":7,"string":"héllo\n"}]}`, ""},
		{"nested message", appendBytesField(nil, 2, appendBytesField(appendVarintField(nil, 1, 7), 2, []byte("abc"))),
			`{"fields":[{"number":2,"wire":"len","offset":0,"length":7,"message":{"fields":[{"number":1,"wire":"varint","offset":2,"varint":"7"},{"number":2,"wire":"len","offset":4,"length":3,"string":"abc"}]}}]}`, ""},
		{"message that is also text", appendBytesField(nil, 2, appendBytesField(nil, 1, []byte("sugar dust"))),
			`{"fields":[{"number":2,"wire":"len","offset":0,"length":12,"message":{"fields":[{"number":1,"wire":"len","offset":2,"length":10,"string":"sugar dust"}]}}]}`, ""},
		{"text starting with a newline", appendBytesField(nil, 2, []byte("\nhello")),
			`{"fields":[{"number":2,"wire":"len","offset":0,"length":6,"string":"\nhello"}]}`, ""},
		{"bytes", appendBytesField(nil, 6, []byte{0xff, 0xfe, 0x80}),
			`{"fields":[{"number":6,"wire":"len","offset":0,"length":3,"bytes":"//6A"}]}`, ""},
		{"packed varints", appendBytesField(nil, 7, []byte{0x01, 0x96, 0x01, 0xac, 0x02}),
			`{"fields":[{"number":7,"wire":"len","offset":0,"length":5,"bytes":"AZYBrAI=","packed_varints":["1","150","300"]}]}`, ""},
		{"non-minimal tag is not a message", appendBytesField(nil, 9, []byte{0x88, 0x00, 0x01}),
			`{"fields":[{"number":9,"wire":"len","offset":0,"length":3,"bytes":"iAAB"}]}`, ""},
		{"huge field number is not a message", appendBytesField(nil, 9, appendVarintField(nil, 1<<20, 1)),
			`{"fields":[{"number":9,"wire":"len","offset":0,"length":5,"bytes":"gICABAE=","packed_varints":["8388608","1"]}]}`, ""},
		{"group inside len is not a message", appendBytesField(nil, 9, []byte{0x0b, 0x0c}),
			`{"fields":[{"number":9,"wire":"len","offset":0,"length":2,"bytes":"Cww=","packed_varints":["11","12"]}]}`, ""},
		{"empty len", appendBytesField(nil, 8, nil),
			`{"fields":[{"number":8,"wire":"len","offset":0,"length":0,"bytes":""}]}`, ""},
		{"group", []byte{0x1b, 0x08, 0x05, 0x1c, 0x20, 0x01},
			`{"fields":[{"number":3,"wire":"group","offset":0,"group":{"fields":[{"number":1,"wire":"varint","offset":1,"varint":"5"}]}},{"number":4,"wire":"varint","offset":4,"varint":"1"}]}`, ""},
		{"truncated", append(appendVarintField(nil, 1, 1), 0x12, 0x05, 'a'),
			`{"fields":[{"number":1,"wire":"varint","offset":0,"varint":"1"}]}`, "malformed protobuf at offset 3: field 2: length-delimited value runs past the end"},
		{"field zero", []byte{0x00, 0x01},
			`{"fields":[]}`, "malformed protobuf at offset 0: bad tag"},
		{"unclosed group", []byte{0x1b, 0x08, 0x05},
			`{"fields":[]}`, "group 3 not closed"},
		{"stray end group", []byte{0x1c},
			`{"fields":[]}`, "end of group 3 without a start"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := Schemaless(c.raw)
			if c.wantErr == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
			if got := mustJSON(t, n); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

// A message nested far deeper than maxNesting decodes without blowing the
// stack; beyond the limit the bytes are shown as bytes.
func TestSchemalessDeepNesting(t *testing.T) {
	b := appendVarintField(nil, 1, 1)
	for i := 0; i < 1000; i++ {
		b = appendBytesField(nil, 1, b)
	}
	n, err := Schemaless(b)
	if err != nil {
		t.Fatal(err)
	}
	depth := 0
	for f := n.Fields[0]; f.Message != nil; f = f.Message.Fields[0] {
		depth++
	}
	if depth != maxNesting {
		t.Errorf("nested %d deep, want %d", depth, maxNesting)
	}
}

// A protoset written without --include_imports for the well-known types
// still links: those are built in.
// An explicit source without the method hands over to reflection.
// An explicit common.proto that disagrees with the backend's must not make
// the snapshot unlinkable: the backend's kitchen.proto, which needs its own
// common.proto, is left out instead.
