package decode

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jhump/protoreflect/desc/protoparse"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

type protoreflectFile = protoreflect.FileDescriptor

// marshalSetWithout serializes exactly files, leaving their imports out.
func marshalSetWithout(t *testing.T, files []protoreflectFile) []byte {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	for _, fd := range files {
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

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

func TestTemplateEncodes(t *testing.T) {
	d := newDecoder(t, WithSources(protoFilesSource(t)))
	for _, name := range []string{"kitchen.v1.Order", "kitchen.v1.Receipt", "kitchen.v1.Dish"} {
		t.Run(name, func(t *testing.T) {
			md, err := d.FindMessage(bg(), name, "")
			if err != nil {
				t.Fatal(err)
			}
			tmpl := Template(md)
			if !json.Valid(tmpl) {
				t.Fatalf("invalid JSON: %s", tmpl)
			}
			if _, err := d.EncodeMessage(bg(), md, "", tmpl); err != nil {
				t.Fatalf("template does not encode: %v\n%s", err, tmpl)
			}
			pretty, err := json.MarshalIndent(map[string]any{"template": tmpl, "schema": DescribeMessage(md)}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join(goldenDir, "template."+name+".json"), append(pretty, '\n'))
		})
	}
	sds, err := d.ListServices(bg(), "")
	if err != nil {
		t.Fatal(err)
	}
	var svcs []ServiceSchema
	for _, sd := range sds {
		svcs = append(svcs, DescribeService(sd))
	}
	got, _ := json.MarshalIndent(svcs, "", "  ")
	compareGolden(t, filepath.Join(goldenDir, "services.json"), append(got, '\n'))
}

func TestEncode(t *testing.T) {
	d := newDecoder(t, WithSources(protoFilesSource(t)))
	b, err := d.Encode(bg(), placeOrder, "", Request, []byte(`{"customer_name": "proto names work", "i32": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	r := d.Decode(bg(), Input{Method: placeOrder, Raw: b})
	if got, want := string(r.JSON), `{"i32":3,"customerName":"proto names work"}`; got != want {
		t.Errorf("round trip = %s, want %s", got, want)
	}
	_, err = d.Encode(bg(), placeOrder, "", Request, []byte(`{"nope": 1}`))
	if err == nil || !strings.Contains(err.Error(), `encode JSON as kitchen.v1.Order`) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown JSON field: %v", err)
	}
	_, err = d.Encode(bg(), "/kitchen.v1.KitchenService/Nope", "", Request, []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "no method Nope") {
		t.Errorf("unknown method: %v", err)
	}
	_, err = d.Encode(bg(), "garbage", "", Request, []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "malformed method name") {
		t.Errorf("bad method: %v", err)
	}
}

func TestNoSources(t *testing.T) {
	d := newDecoder(t)
	r := d.Decode(bg(), Input{Method: placeOrder, Raw: []byte{0x18, 1}})
	if r.JSON != nil || r.Schemaless == nil || !strings.Contains(r.Error, "no descriptor source") {
		t.Errorf("%+v", r)
	}
	r = d.Decode(bg(), Input{Method: placeOrder, ContentSubtype: "cbor", Raw: []byte{0x18, 1}})
	if !strings.Contains(r.Error, `content subtype "cbor"`) || r.Schemaless == nil {
		t.Errorf("%+v", r)
	}
}

func TestProtoFilesErrors(t *testing.T) {
	// The file named with its import path in front is found too.
	if _, err := NewProtoFiles([]string{protoDir}, []string{filepath.Join(protoDir, kitchenProto)}); err != nil {
		t.Errorf("path with import dir prefix: %v", err)
	}
	abs, err := filepath.Abs(filepath.Join(protoDir, kitchenProto))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewProtoFiles([]string{protoDir}, []string{abs}); err != nil {
		t.Errorf("absolute path under the import dir: %v", err)
	}
	_, err = NewProtoFiles([]string{protoDir}, []string{"kitchen/v1/missing.proto"})
	if err == nil || !strings.Contains(err.Error(), "missing.proto") {
		t.Errorf("missing file: %v", err)
	}
	_, err = NewProtoset(filepath.Join(protoDir, kitchenProto))
	if err == nil || !strings.Contains(err.Error(), "not a serialized FileDescriptorSet") {
		t.Errorf("protoset that is a .proto: %v", err)
	}
	src := protoFilesSource(t)
	if _, err := src.FindMessage(bg(), "kitchen.v1.Flavor"); err == nil || !strings.Contains(err.Error(), "kitchen.v1.Flavor is an enum, not a message") {
		t.Errorf("enum as message: %v", err)
	}
}

// A protoset written without --include_imports for the well-known types
// still links: those are built in.
func TestProtosetWithoutWellKnownImports(t *testing.T) {
	full := protoFilesSource(t)
	var kitchenOnly []protoreflectFile
	for _, fd := range full.Files() {
		if !strings.HasPrefix(fd.Path(), "google/") {
			kitchenOnly = append(kitchenOnly, fd)
		}
	}
	raw := marshalSetWithout(t, kitchenOnly)
	src, err := NewFileDescriptorSet(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.FindMethod(bg(), placeOrder); err != nil {
		t.Fatal(err)
	}
	// But a missing user import is an error that says what to do.
	var orderOnly []protoreflectFile
	for _, fd := range kitchenOnly {
		if fd.Path() == kitchenProto {
			orderOnly = append(orderOnly, fd)
		}
	}
	_, err = NewFileDescriptorSet(marshalSetWithout(t, orderOnly))
	if err == nil || !strings.Contains(err.Error(), "kitchen/v1/common.proto is imported but not in the set") {
		t.Errorf("missing import: %v", err)
	}
}

func TestEmitDefaults(t *testing.T) {
	d := newDecoder(t, WithSources(protoFilesSource(t)), WithEmitDefaults(true))
	r := d.Decode(bg(), Input{Method: watch, Direction: Response, Raw: nil})
	if got, want := string(r.JSON), `{"orderId":"","total":null,"at":null}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// An explicit source without the method hands over to reflection.
func TestDecoderFallsThroughToReflection(t *testing.T) {
	var common []protoreflectFile
	for _, fd := range protoFilesSource(t).Files() {
		if fd.Path() == "kitchen/v1/common.proto" {
			common = append(common, fd)
		}
	}
	partial, err := NewFileDescriptorSet(marshalSetWithout(t, common))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startBackend(t, true, true)
	d := newDecoder(t, WithSources(partial), WithDialer(dialInsecure))
	r := d.Decode(bg(), Input{Method: placeOrder, Backend: addr, Raw: []byte{0x18, 1}})
	if r.JSON == nil || r.Source != "reflection from "+addr {
		t.Fatalf("got source %q, error %q", r.Source, r.Error)
	}
	// Money is known to both; the explicit source answers first.
	snap, err := d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewFileDescriptorSet(snap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.FindMethod(bg(), placeOrder); err != nil {
		t.Errorf("snapshot lost what reflection taught: %v", err)
	}
}

// An explicit common.proto that disagrees with the backend's must not make
// the snapshot unlinkable: the backend's kitchen.proto, which needs its own
// common.proto, is left out instead.
func TestSnapshotConflictStillLinks(t *testing.T) {
	p := protoparse.Parser{
		Accessor: protoparse.FileContentsFromMap(map[string]string{
			"kitchen/v1/common.proto": "syntax = \"proto3\";\npackage kitchen.v1;\nmessage Note { string text = 1; }\n",
		}),
	}
	fds, err := p.ParseFiles("kitchen/v1/common.proto")
	if err != nil {
		t.Fatal(err)
	}
	stale, err := NewFileDescriptorSet(marshalSetWithout(t, fromDesc(fds)))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startBackend(t, true, true)
	d := newDecoder(t, WithSources(stale), WithDialer(dialInsecure))
	if r := d.Decode(bg(), Input{Method: placeOrder, Backend: addr, Raw: []byte{0x18, 1}}); r.JSON == nil {
		t.Fatal(r.Error)
	}
	snap, err := d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewFileDescriptorSet(snap)
	if err != nil {
		t.Fatalf("snapshot does not link: %v", err)
	}
	if _, err := src.FindMessage(bg(), "kitchen.v1.Note"); err != nil {
		t.Errorf("explicit file lost: %v", err)
	}
	if _, err := src.FindMethod(bg(), placeOrder); err == nil {
		t.Errorf("kept a kitchen.proto that cannot link against the chosen common.proto")
	}
}
