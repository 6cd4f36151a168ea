package decode

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jhump/protoreflect/desc/protoparse"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

type protoreflectFile = protoreflect.FileDescriptor

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
			pretty, err := json.MarshalIndent(map[string]any{"template": tmpl, "hints": TemplateHints(md), "schema": DescribeMessage(md)}, "", "  ")
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
