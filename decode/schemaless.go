package decode

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// maxNesting bounds how deep Schemaless looks for nested messages; deeper
// length-delimited fields are shown as strings or bytes.
const maxNesting = 32

// maxGuessedField is the highest field number accepted in a length-delimited
// value guessed to be a message. Real schemas rarely go past a few
// thousand; random bytes often produce huge numbers.
const maxGuessedField = 1 << 16

// Node is a message decoded without a schema: its fields in wire order.
// Its JSON form is documented in the package comment.
type Node struct {
	Fields []*Field `json:"fields"`
	// MoreFields counts the fields a bounded tree (SchemalessWithin) does
	// not show at this level.
	MoreFields int `json:"more_fields,omitempty"`
}

// Field is one field occurrence on the wire. Exactly the members that fit
// the wire type are set.
type Field struct {
	Number int32 `json:"number"`
	// Wire is "varint", "i64", "len", "group" or "i32".
	Wire string `json:"wire"`
	// Offset is the byte offset of the field's tag from the start of the
	// outermost message.
	Offset int `json:"offset"`

	// varint: the value as an unsigned decimal, and as a signed one when
	// the top bit is set (a negative int32/int64).
	Varint string `json:"varint,omitempty"`
	Int64  string `json:"int64,omitempty"`

	// i64: the value as unsigned decimal, and as a double when finite.
	Fixed64 string   `json:"fixed64,omitempty"`
	Double  *float64 `json:"double,omitempty"`

	// i32: the value as unsigned, and as a float when finite.
	Fixed32 *uint32  `json:"fixed32,omitempty"`
	Float   *float32 `json:"float,omitempty"`

	// len: the length, then one guess of what the bytes are: a nested
	// message, printable UTF-8 text, or bytes (base64) — and, for bytes that
	// also read as a run of varints, those varints (a packed repeated field).
	Length        *int     `json:"length,omitempty"`
	Message       *Node    `json:"message,omitempty"`
	String        *string  `json:"string,omitempty"`
	Bytes         *string  `json:"bytes,omitempty"`
	PackedVarints []string `json:"packed_varints,omitempty"`
	// In a bounded tree: Cut says String or Bytes holds only the first
	// Limits.Bytes of the Length bytes, and PackedCount is the number of
	// packed varints when PackedVarints shows only the first ones.
	Cut         bool `json:"cut,omitempty"`
	PackedCount int  `json:"packed_count,omitempty"`

	// group: the fields between start and end group.
	Group *Node `json:"group,omitempty"`
}

// WireError says where bytes stop being protobuf wire format.
type WireError struct {
	Offset int
	Reason string
}

func (e *WireError) Error() string {
	return fmt.Sprintf("malformed protobuf at offset %d: %s", e.Offset, e.Reason)
}

// Schemaless decodes raw as a protobuf message without a schema. On
// malformed input it returns the fields read before the fault and a
// *WireError; the Node is never nil.
func Schemaless(raw []byte) (*Node, error) {
	n, _, err := parseFields(raw, 0, 0, 0, false, nil, "")
	return n, err
}

// SchemalessWithin is Schemaless bounded by lim: long strings and bytes
// cut, long packed runs and field lists shown in part (Field.Cut,
// Field.PackedCount, Node.MoreFields), and what was left out listed. The
// whole of raw is still checked.
func SchemalessWithin(raw []byte, lim Limits) (*Node, []Elision, error) {
	b := &budget{lim: lim}
	n, _, err := parseFields(raw, 0, 0, 0, false, b, "")
	return n, b.list(), err
}

// parseFields reads fields from b until its end, or until the end-group tag
// of endGroup when endGroup > 0. base is b's offset in the outermost message.
//
// guessing is set while testing whether a length-delimited value is a
// message: then encodings no encoder writes (groups, non-minimal varints,
// field numbers above maxGuessedField) make it "not a message".
//
// bud, when set, bounds what is kept (see SchemalessWithin); path is the
// field-number path of b, for its elisions.
func parseFields(b []byte, base, depth int, endGroup protowire.Number, guessing bool, bud *budget, path string) (*Node, int, error) {
	node := &Node{Fields: []*Field{}}
	fields, pos, err := node.parse(b, base, depth, endGroup, guessing, bud, path)
	node.Fields = fields
	if node.MoreFields > 0 {
		bud.elide(fieldPath(path), len(fields), len(fields)+node.MoreFields, "fields")
	}
	return node, pos, err
}

func (node *Node) parse(b []byte, base, depth int, endGroup protowire.Number, guessing bool, bud *budget, path string) ([]*Field, int, error) {
	fields := node.Fields
	pos := 0
	for pos < len(b) {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return fields, pos, &WireError{Offset: base + pos, Reason: "bad tag: " + protowire.ParseError(n).Error()}
		}
		if guessing && (num > maxGuessedField || n != protowire.SizeTag(num)) {
			return fields, pos, &WireError{Offset: base + pos, Reason: "unlikely tag in a guessed message"}
		}
		f := &Field{Number: int32(num), Offset: base + pos}
		// A field past the bounds is read (the bytes are still checked)
		// but neither kept nor looked into.
		keep := bud == nil || bud.take(1) == 1
		if keep && bud != nil && bud.lim.Items > 0 && len(fields) >= bud.lim.Items {
			keep = false
			bud.nodes--
		}
		pos += n
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b[pos:])
			if n < 0 {
				return fields, pos, &WireError{Offset: base + pos, Reason: fmt.Sprintf("field %d: bad varint: %v", num, protowire.ParseError(n))}
			}
			if guessing && n != protowire.SizeVarint(v) {
				return fields, pos, &WireError{Offset: base + pos, Reason: "non-minimal varint in a guessed message"}
			}
			pos += n
			f.Wire = "varint"
			f.Varint = strconv.FormatUint(v, 10)
			if int64(v) < 0 {
				f.Int64 = strconv.FormatInt(int64(v), 10)
			}
		case protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b[pos:])
			if n < 0 {
				return fields, pos, &WireError{Offset: base + pos, Reason: fmt.Sprintf("field %d: truncated fixed64", num)}
			}
			pos += n
			f.Wire = "i64"
			f.Fixed64 = strconv.FormatUint(v, 10)
			if d := math.Float64frombits(v); !math.IsNaN(d) && !math.IsInf(d, 0) {
				f.Double = &d
			}
		case protowire.Fixed32Type:
			v, n := protowire.ConsumeFixed32(b[pos:])
			if n < 0 {
				return fields, pos, &WireError{Offset: base + pos, Reason: fmt.Sprintf("field %d: truncated fixed32", num)}
			}
			pos += n
			f.Wire = "i32"
			f.Fixed32 = &v
			if fl := math.Float32frombits(v); !math.IsNaN(float64(fl)) && !math.IsInf(float64(fl), 0) {
				f.Float = &fl
			}
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b[pos:])
			if n < 0 {
				return fields, pos, &WireError{Offset: base + pos, Reason: fmt.Sprintf("field %d: length-delimited value runs past the end (%v)", num, protowire.ParseError(n))}
			}
			valueOff := base + pos + n - len(v)
			pos += n
			f.Wire = "len"
			l := len(v)
			f.Length = &l
			if keep {
				guessBytes(f, v, valueOff, depth, bud, subPath(path, num))
			}
		case protowire.StartGroupType:
			if guessing {
				return fields, pos, &WireError{Offset: base + pos - n, Reason: fmt.Sprintf("field %d: group inside a guessed message", num)}
			}
			if depth >= maxNesting {
				return fields, pos, &WireError{Offset: base + pos - n, Reason: "groups nested too deep"}
			}
			sub, used, err := parseFields(b[pos:], base+pos, depth+1, num, false, bud, subPath(path, num))
			if err != nil {
				return fields, pos, err
			}
			pos += used
			f.Wire = "group"
			f.Group = sub
		case protowire.EndGroupType:
			if endGroup > 0 && num == endGroup {
				return fields, pos, nil
			}
			return fields, pos - n, &WireError{Offset: base + pos - n, Reason: fmt.Sprintf("end of group %d without a start", num)}
		default:
			return fields, pos - n, &WireError{Offset: base + pos - n, Reason: fmt.Sprintf("field %d: unknown wire type %d", num, typ)}
		}
		if keep {
			fields = append(fields, f)
		} else {
			node.MoreFields++
		}
	}
	if endGroup > 0 {
		return fields, pos, &WireError{Offset: base + pos, Reason: fmt.Sprintf("group %d not closed", endGroup)}
	}
	return fields, pos, nil
}

// fieldPath is how an elision names a schemaless path: "field 1.4".
func fieldPath(path string) string {
	if path == "" {
		return ""
	}
	return "field " + path
}

func subPath(path string, num protowire.Number) string {
	if path == "" {
		return strconv.Itoa(int(num))
	}
	return path + "." + strconv.Itoa(int(num))
}

// guessBytes decides what a length-delimited value most likely is.
func guessBytes(f *Field, v []byte, off, depth int, bud *budget, path string) {
	text := len(v) > 0 && isPrintableText(v)
	// Text starting with a letter or symbol is text. Text starting with \t,
	// \n or \r may be a message: those are the tags of field 1 (i64, len,
	// i32), and \n is also a length of 10, as in {1: "sugar dust"}.
	if text && v[0] >= 0x20 {
		f.setString(v, bud, path)
		return
	}
	if len(v) > 0 && depth < maxNesting {
		var saved budget
		if bud != nil {
			saved = *bud
			saved.elided = append([]Elision(nil), bud.elided...)
		}
		if sub, _, err := parseFields(v, off, depth+1, 0, true, bud, path); err == nil && (len(sub.Fields) > 0 || sub.MoreFields > 0) {
			f.Message = sub
			return
		}
		if bud != nil {
			*bud = saved // what a failed guess kept is not shown
		}
	}
	if text {
		f.setString(v, bud, path)
		return
	}
	shown := v
	if bud != nil && bud.lim.Bytes > 0 && len(v) > bud.lim.Bytes {
		shown = v[:bud.lim.Bytes]
		f.Cut = true
		bud.elide(fieldPath(path), len(shown), len(v), "bytes")
	}
	enc := base64.StdEncoding.EncodeToString(shown)
	f.Bytes = &enc
	items := -1
	if bud != nil && bud.lim.Items > 0 {
		items = bud.lim.Items
	}
	var total int
	f.PackedVarints, total = packedVarints(v, items)
	if len(f.PackedVarints) < total {
		f.PackedCount = total
		bud.elide(fieldPath(path)+" (packed)", len(f.PackedVarints), total, "items")
	}
}

// setString sets f.String to v, cut to the budget's Bytes.
func (f *Field) setString(v []byte, bud *budget, path string) {
	if bud != nil && bud.lim.Bytes > 0 && len(v) > bud.lim.Bytes {
		s := cutString(string(v[:min(len(v), bud.lim.Bytes+utf8.UTFMax)]), bud.lim.Bytes)
		f.String, f.Cut = &s, true
		bud.elide(fieldPath(path), len(s), len(v), "bytes")
		return
	}
	s := string(v)
	f.String = &s
}

// isPrintableText reports whether v is UTF-8 made only of printable
// characters and ordinary whitespace. Message tags and lengths below 0x20
// are control characters, which is what keeps most messages out.
func isPrintableText(v []byte) bool {
	if !utf8.Valid(v) {
		return false
	}
	for _, r := range string(v) {
		if r == '\n' || r == '\r' || r == '\t' {
			continue
		}
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// packedVarints reads v as a run of minimally-encoded varints, as a packed
// repeated integer field is written: the first items of them (all when
// items < 0) and how many there are; nil when v is not one.
func packedVarints(v []byte, items int) ([]string, int) {
	if len(v) == 0 {
		return nil, 0
	}
	var out []string
	total := 0
	for len(v) > 0 {
		x, n := protowire.ConsumeVarint(v)
		if n < 0 || n != protowire.SizeVarint(x) {
			return nil, 0
		}
		if items < 0 || total < items {
			out = append(out, strconv.FormatUint(x, 10))
		}
		total++
		v = v[n:]
	}
	return out, total
}
