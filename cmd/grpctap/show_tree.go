package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/store"
)

// plural says "1 request", "3 requests".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.FormatInt(n, 10) + " " + noun + "s"
}

// printSchemaless prints the schemaless tree of a message the decoder
// could not decode with a schema, one field per line, nested messages
// indented: what the README promises and the inspector's Schemaless view
// shows. The tree is as bounded as the decoder made it (decode.Limits);
// what it leaves out is said. It returns false when there is no tree to
// show, or when the bytes are not protobuf all through (the decoder's
// error says where they stop), so that the caller dumps the bytes instead.
func printSchemaless(w io.Writer, m store.Message) bool {
	if len(m.Schemaless) == 0 {
		return false
	}
	var n decode.Node
	if err := json.Unmarshal(m.Schemaless, &n); err != nil || len(n.Fields) == 0 {
		return false
	}
	// The decoder appends "schemaless: <why>" to its error when the bytes
	// stop being protobuf part way; the partial tree would hide the rest.
	if strings.Contains(m.DecodeError, "schemaless: ") {
		return false
	}
	fmt.Fprintln(w, "  schemaless (field number, wire type: value; no schema):")
	printNode(w, &n, "    ")
	return true
}

func printNode(w io.Writer, n *decode.Node, indent string) {
	for _, f := range n.Fields {
		printField(w, f, indent)
	}
	if n.MoreFields > 0 {
		fmt.Fprintf(w, "%s… %d more fields (--full shows them)\n", indent, n.MoreFields)
	}
}

func printField(w io.Writer, f *decode.Field, indent string) {
	head := fmt.Sprintf("%s%d %s: ", indent, f.Number, f.Wire)
	switch {
	case f.Message != nil:
		fmt.Fprintf(w, "%s{  (message, %d bytes)\n", head, deref(f.Length))
		printNode(w, f.Message, indent+"  ")
		fmt.Fprintf(w, "%s}\n", indent)
	case f.Group != nil:
		fmt.Fprintf(w, "%s{  (group)\n", head)
		printNode(w, f.Group, indent+"  ")
		fmt.Fprintf(w, "%s}\n", indent)
	case f.String != nil:
		fmt.Fprintf(w, "%s%q%s\n", head, *f.String, cutNote(f))
	case len(f.PackedVarints) > 0:
		more := ""
		if f.PackedCount > len(f.PackedVarints) {
			more = fmt.Sprintf(" … %d in all (--full shows them)", f.PackedCount)
		}
		fmt.Fprintf(w, "%s[%s]%s  (packed varints, or %d bytes)\n", head, strings.Join(f.PackedVarints, " "), more, deref(f.Length))
	case f.Bytes != nil:
		fmt.Fprintf(w, "%sbytes %s%s\n", head, *f.Bytes, cutNote(f))
	case f.Varint != "":
		if f.Int64 != "" {
			fmt.Fprintf(w, "%s%s (as int64: %s)\n", head, f.Varint, f.Int64)
		} else {
			fmt.Fprintf(w, "%s%s\n", head, f.Varint)
		}
	case f.Fixed64 != "":
		fmt.Fprintf(w, "%s%s%s\n", head, f.Fixed64, asFloat("double", f.Double))
	case f.Fixed32 != nil:
		fmt.Fprintf(w, "%s%d%s\n", head, *f.Fixed32, asFloat32(f.Float))
	case f.Length != nil:
		fmt.Fprintf(w, "%s(%d bytes)\n", head, *f.Length)
	default:
		fmt.Fprintf(w, "%s(empty)\n", head)
	}
}

func cutNote(f *decode.Field) string {
	if !f.Cut {
		return ""
	}
	return fmt.Sprintf(" … %d bytes in all (--full shows them)", deref(f.Length))
}

func asFloat(name string, v *float64) string {
	if v == nil {
		return ""
	}
	return fmt.Sprintf(" (as %s: %s)", name, strconv.FormatFloat(*v, 'g', -1, 64))
}

func asFloat32(v *float32) string {
	if v == nil {
		return ""
	}
	return fmt.Sprintf(" (as float: %s)", strconv.FormatFloat(float64(*v), 'g', -1, 32))
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
