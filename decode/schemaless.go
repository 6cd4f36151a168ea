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
	fields, _, err := parseFields(raw, 0, 0, 0, false)
	return &Node{Fields: fields}, err
}

// parseFields reads fields from b until its end, or until the end-group tag
// of endGroup when endGroup > 0. base is b's offset in the outermost message.
//
// guessing is set while testing whether a length-delimited value is a
// message: then encodings no encoder writes (groups, non-minimal varints,
// field numbers above maxGuessedField) make it "not a message".
func parseFields(b []byte, base, depth int, endGroup protowire.Number, guessing bool) ([]*Field, int, error) {
	fields := []*Field{}
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
			guessBytes(f, v, valueOff, depth)
		case protowire.StartGroupType:
			if guessing {
				return fields, pos, &WireError{Offset: base + pos - n, Reason: fmt.Sprintf("field %d: group inside a guessed message", num)}
			}
			if depth >= maxNesting {
				return fields, pos, &WireError{Offset: base + pos - n, Reason: "groups nested too deep"}
			}
			sub, used, err := parseFields(b[pos:], base+pos, depth+1, num, false)
			if err != nil {
				return fields, pos, err
			}
			pos += used
			f.Wire = "group"
			f.Group = &Node{Fields: sub}
		case protowire.EndGroupType:
			if endGroup > 0 && num == endGroup {
				return fields, pos, nil
			}
			return fields, pos - n, &WireError{Offset: base + pos - n, Reason: fmt.Sprintf("end of group %d without a start", num)}
		default:
			return fields, pos - n, &WireError{Offset: base + pos - n, Reason: fmt.Sprintf("field %d: unknown wire type %d", num, typ)}
		}
		fields = append(fields, f)
	}
	if endGroup > 0 {
		return fields, pos, &WireError{Offset: base + pos, Reason: fmt.Sprintf("group %d not closed", endGroup)}
	}
	return fields, pos, nil
}

// guessBytes decides what a length-delimited value most likely is.
func guessBytes(f *Field, v []byte, off, depth int) {
	text := len(v) > 0 && isPrintableText(v)
	// Text starting with a letter or symbol is text. Text starting with \t,
	// \n or \r may be a message: those are the tags of field 1 (i64, len,
	// i32), and \n is also a length of 10, as in {1: "sugar dust"}.
	if text && v[0] >= 0x20 {
		s := string(v)
		f.String = &s
		return
	}
	if len(v) > 0 && depth < maxNesting {
		if sub, _, err := parseFields(v, off, depth+1, 0, true); err == nil && len(sub) > 0 {
			f.Message = &Node{Fields: sub}
			return
		}
	}
	if text {
		s := string(v)
		f.String = &s
		return
	}
	enc := base64.StdEncoding.EncodeToString(v)
	f.Bytes = &enc
	f.PackedVarints = packedVarints(v)
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
// repeated integer field is written; nil when v is not one.
func packedVarints(v []byte) []string {
	if len(v) == 0 {
		return nil
	}
	var out []string
	for len(v) > 0 {
		x, n := protowire.ConsumeVarint(v)
		if n < 0 || n != protowire.SizeVarint(x) {
			return nil
		}
		out = append(out, strconv.FormatUint(x, 10))
		v = v[n:]
	}
	return out
}
