package msgdiff

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"

	"github.com/grpctap/grpctap/decode"
)

// How a message was made a tree (DecodeTree), and so compared.
const (
	BySchema     = "schema"     // decoded with the method's schema: field names
	BySchemaless = "schemaless" // no schema: field numbers of the schemaless tree
	ByBytes      = "bytes"      // not protobuf and not JSON: raw bytes
)

// DecodeTree decodes one message into a JSON tree as DiffTrees takes it,
// and says how: BySchema (protojson field names), BySchemaless (field
// numbers) or ByBytes (base64 or text), with the decoder's complaint if
// any. dec may be nil (schemaless).
func DecodeTree(ctx context.Context, dec *decode.Decoder, in decode.Input) (tree any, by string, problem string) {
	raw := in.Raw
	if dec == nil {
		node, err := decode.Schemaless(raw)
		if err != nil {
			return base64.StdEncoding.EncodeToString(raw), ByBytes, err.Error()
		}
		return SchemalessTree(node), BySchemaless, ""
	}
	r := dec.Decode(ctx, in)
	if len(r.JSON) > 0 {
		return JSONTree(r.JSON), BySchema, r.Error
	}
	if r.Schemaless != nil {
		return SchemalessTree(r.Schemaless), BySchemaless, r.Error
	}
	if r.Text != "" {
		return r.Text, ByBytes, r.Error
	}
	return base64.StdEncoding.EncodeToString(raw), ByBytes, r.Error
}

// JSONTree reads JSON as DiffTrees takes it (numbers as json.Number);
// text that is not JSON is its own tree, a string.
func JSONTree(b []byte) any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(b)
	}
	return v
}

// SchemalessTree turns a schemaless Node into field number → value (a list
// when the field repeats), dropping the wire offsets that shift whenever a
// length changes.
func SchemalessTree(n *decode.Node) map[string]any {
	out := map[string]any{}
	for _, f := range n.Fields {
		k := strconv.Itoa(int(f.Number))
		v := schemalessValue(f)
		if prev, ok := out[k]; ok {
			if list, ok := prev.([]any); ok {
				out[k] = append(list, v)
			} else {
				out[k] = []any{prev, v}
			}
			continue
		}
		out[k] = v
	}
	return out
}

func schemalessValue(f *decode.Field) any {
	switch {
	case f.Message != nil:
		return SchemalessTree(f.Message)
	case f.Group != nil:
		return SchemalessTree(f.Group)
	case f.String != nil:
		return *f.String
	case f.Bytes != nil:
		return *f.Bytes
	case f.Varint != "":
		return f.Varint
	case f.Fixed64 != "":
		return f.Fixed64
	case f.Fixed32 != nil:
		return strconv.FormatUint(uint64(*f.Fixed32), 10)
	}
	return nil
}
