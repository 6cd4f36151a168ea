// Package decode turns recorded gRPC message bytes into something a person
// can read, and JSON back into bytes. It owns the descriptor sources, the
// mapping from a method to its request and response types, raw bytes ⇄ JSON,
// and schemaless decoding. It knows nothing of storage or HTTP, and it runs
// on the read path only (show, export, UI), never while forwarding.
//
// # Sources
//
// A Source resolves "/pkg.Service/Method" and message names to descriptors:
//
//   - NewProtoFiles: .proto files (--proto, --import-path), well-known types built in;
//   - NewProtoset: FileDescriptorSet files (--protoset);
//   - NewFileDescriptorSet: the bytes Decoder.Snapshot wrote into a capture;
//   - NewReflection: gRPC server reflection (v1, then v1alpha), fetched on first
//     need, cached, refetched when a name is missing (at most once per
//     RefreshInterval per name).
//
// A Decoder (New) consults the explicit sources in order, then the
// reflection source of the backend the call went to (WithDialer; without it
// reflection is off). Errors say which sources were asked and why each
// failed; a Source that merely lacks a name wraps ErrNotFound.
//
// # Results
//
// Decoder.Decode returns a Result, whose JSON form is the message part of a
// call in grpctap's JSON:
//
//	{"json": {...} | null, "schemaless": <tree> | null, "decode_error": "why",
//	 "message_type": "pkg.Msg", "source": "--proto a.proto",
//	 "unknown_fields": [{"path": "mainDish", "field": <field>}]}
//
// "json" is protojson output with lowerCamelCase names (as grpcurl prints),
// google.protobuf.Any resolved through the same sources. Messages sent as
// application/grpc+json are shown as the JSON they are. When no schema fits,
// "json" is null, "schemaless" holds the tree below and "decode_error" says
// why: no descriptor for the method (and why not, per source), or where
// schema and bytes disagree (message, field, expected and actual wire type,
// byte offset). Fields the schema does not know are listed in
// "unknown_fields" rather than dropped.
//
// # Schemaless tree
//
// Schemaless(raw) reads any protobuf message without a schema. The tree is
// stable JSON:
//
//	{"fields": [<field>, ...]}            fields in wire order
//
// and each field is
//
//	"number":  field number
//	"wire":    "varint" | "i64" | "len" | "group" | "i32"
//	"offset":  byte offset of the field's tag from the start of the message
//	varint:    "varint": "150" (unsigned decimal, as a string for 64-bit safety)
//	           "int64": "-2" (only when the top bit is set: a negative int)
//	i64:       "fixed64": "4609434218613702656", "double": 1.5 (when finite)
//	i32:       "fixed32": 1069547520, "float": 1.5 (when finite)
//	len:       "length": n, then one guess:
//	           "string": "text"   valid UTF-8, only printable characters and \t\n\r
//	           "message": {...}   parses completely as a message written the way
//	                              encoders write (no groups, minimal varints,
//	                              field numbers up to 65536)
//	           "bytes": "base64"  otherwise (standard base64), plus
//	           "packed_varints": ["1","300"] when the bytes are exactly a run of
//	           minimally encoded varints, as a packed repeated integer is written
//	group:     "group": {...}
//
// SchemalessWithin(raw, limits) gives the same tree bounded (the inspector,
// show and export use decode.DefaultLimits): "string" and "bytes" hold the
// first Limits.Bytes bytes with "cut": true ("length" stays the full
// length), "packed_varints" the first Limits.Items with "packed_count" the
// total, and a level shows at most Limits.Items fields with "more_fields"
// counting the rest. Decoder.Decode bounds the JSON view the same way
// (Input.Limits: lists, maps, strings and bytes shortened) and lists each
// cut in Result.Elided.
//
// Text wins over message when both fit, unless the text starts with \t, \n
// or \r (tags of field 1): message tags and short lengths are control
// characters, so real messages are rarely all printable. Nested
// messages are looked for 32 levels deep. It is a guess: about 1 in 200
// random 16-byte values also parses as a message, and a packed_varints
// reading of random bytes is common (which is why "bytes" is kept beside it). On malformed input the tree holds
// the fields before the fault and the error gives its offset.
//
// # Snapshots
//
// Decoder.Snapshot serializes every file learned so far (from any source,
// imports included, in dependency order, deterministic bytes) as a
// google.protobuf.FileDescriptorSet; a capture keeps it so later reads decode
// without the backend and without flags, via NewFileDescriptorSet.
//
// # Test data
//
// The golden files under testdata/golden/decode are rewritten with
//
//	go test ./decode -run TestGolden -update
//
// and testdata/protoset/kitchen.protoset is regenerated from
// testdata/proto with
//
//	go test ./decode -run TestProtosetUpToDate -update
package decode
