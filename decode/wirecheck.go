package decode

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MismatchError says where a schema and the bytes disagree. proto.Unmarshal
// quietly files a field with the wrong wire type under unknown fields, which
// is how a stale .proto decodes wrong without a word; checkWire catches it.
type MismatchError struct {
	Message  protoreflect.FullName // the message type being read
	Field    protoreflect.Name     // empty when the fault is not in a known field
	Number   int32
	Expected string // wire type the schema wants, e.g. "len"
	Got      string // wire type on the wire
	Offset   int    // of the field's tag, from the start of the outermost message
	Reason   string // set instead of Expected/Got for other faults
}

func (e *MismatchError) Error() string {
	where := string(e.Message)
	if e.Field != "" {
		where = fmt.Sprintf("%s.%s (field %d)", e.Message, e.Field, e.Number)
	}
	if e.Reason != "" {
		return fmt.Sprintf("schema and bytes disagree at offset %d in %s: %s", e.Offset, where, e.Reason)
	}
	return fmt.Sprintf("schema and bytes disagree at offset %d: %s is %s in the schema but has wire type %s", e.Offset, where, e.Expected, e.Got)
}

func wireName(t protowire.Type) string {
	switch t {
	case protowire.VarintType:
		return "varint"
	case protowire.Fixed64Type:
		return "i64"
	case protowire.BytesType:
		return "len"
	case protowire.StartGroupType:
		return "group"
	case protowire.EndGroupType:
		return "end-group"
	case protowire.Fixed32Type:
		return "i32"
	}
	return fmt.Sprintf("invalid(%d)", t)
}

func expectedWire(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind,
		protoreflect.Uint32Kind, protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		return protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	default: // string, bytes, message
		return protowire.BytesType
	}
}

func kindName(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return fmt.Sprintf("%s %s", fd.Kind(), fd.Message().FullName())
	case protoreflect.EnumKind:
		return fmt.Sprintf("enum %s", fd.Enum().FullName())
	}
	return fd.Kind().String()
}

// check walks b as an md and reports the first place where the bytes
// cannot be that message. Unknown field numbers are fine (they are kept and
// shown); a known field with the wrong wire type is not.
//
// Each unknown field is recorded in c.unknown with path, the JSON path of
// the message holding it (repeated fields and map entries indexed in wire
// order, e.g. "sides[1]" or "dishesById[0].value").
func (c *wireChecker) check(md protoreflect.MessageDescriptor, b []byte, base, depth int, endGroup protowire.Number, path string) (int, error) {
	if depth > 100 {
		return 0, &MismatchError{Message: md.FullName(), Offset: base, Reason: "messages nested more than 100 deep"}
	}
	pos := 0
	var seen map[protowire.Number]int // occurrences of repeated message fields
	for pos < len(b) {
		tagOff := base + pos
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return pos, &MismatchError{Message: md.FullName(), Offset: tagOff, Reason: "bad tag: " + protowire.ParseError(n).Error()}
		}
		pos += n
		if typ == protowire.EndGroupType {
			if endGroup > 0 && num == endGroup {
				return pos, nil
			}
			return pos, &MismatchError{Message: md.FullName(), Number: int32(num), Offset: tagOff, Reason: "end-group tag without a start"}
		}
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			m := protowire.ConsumeFieldValue(num, typ, b[pos:])
			if m < 0 {
				return pos, &MismatchError{Message: md.FullName(), Number: int32(num), Offset: tagOff, Reason: fmt.Sprintf("unknown field %d (wire type %s) is malformed: %v", num, wireName(typ), protowire.ParseError(m))}
			}
			pos += m
			c.unknown = append(c.unknown, unknownAt{path: path, offset: tagOff, raw: b[tagOff-base : pos]})
			continue
		}
		// sub is the path of a nested message, built only when needed.
		sub := func() string {
			p := joinPath(path, fd.JSONName())
			if fd.IsList() || fd.IsMap() {
				if seen == nil {
					seen = map[protowire.Number]int{}
				}
				p = fmt.Sprintf("%s[%d]", p, seen[num])
				seen[num]++
			}
			return p
		}
		want := expectedWire(fd.Kind())
		packed := typ == protowire.BytesType && fd.IsList() && want != protowire.BytesType && want != protowire.StartGroupType
		mismatch := func() error {
			return &MismatchError{Message: md.FullName(), Field: fd.Name(), Number: int32(num), Offset: tagOff, Expected: fmt.Sprintf("%s (wire type %s)", kindName(fd), wireName(want)), Got: wireName(typ)}
		}
		if typ != want && !packed {
			return pos, mismatch()
		}
		bad := func(reason string) error {
			return &MismatchError{Message: md.FullName(), Field: fd.Name(), Number: int32(num), Offset: tagOff, Reason: reason}
		}
		switch {
		case packed:
			v, m := protowire.ConsumeBytes(b[pos:])
			if m < 0 {
				return pos, bad("packed value runs past the end")
			}
			for len(v) > 0 {
				k := protowire.ConsumeFieldValue(num, want, v)
				if k < 0 {
					return pos, bad(fmt.Sprintf("packed %s values are malformed", fd.Kind()))
				}
				v = v[k:]
			}
			pos += m
		case typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b[pos:])
			if m < 0 {
				return pos, bad("length-delimited value runs past the end")
			}
			valueOff := base + pos + m - len(v)
			pos += m
			switch {
			case fd.Kind() == protoreflect.StringKind && enforcesUTF8(fd) && !utf8.Valid(v):
				return pos, bad("string is not valid UTF-8")
			case fd.Kind() == protoreflect.MessageKind:
				if _, err := c.check(fd.Message(), v, valueOff, depth+1, 0, sub()); err != nil {
					return pos, err
				}
			}
		case typ == protowire.StartGroupType:
			m, err := c.check(fd.Message(), b[pos:], base+pos, depth+1, num, sub())
			if err != nil {
				return pos, err
			}
			pos += m
		default:
			m := protowire.ConsumeFieldValue(num, typ, b[pos:])
			if m < 0 {
				return pos, bad(fmt.Sprintf("%s value is malformed: %v", wireName(typ), protowire.ParseError(m)))
			}
			pos += m
		}
	}
	if endGroup > 0 {
		return pos, &MismatchError{Message: md.FullName(), Offset: base + pos, Reason: fmt.Sprintf("group %d not closed", endGroup)}
	}
	return pos, nil
}

type wireChecker struct {
	unknown []unknownAt
}

type unknownAt struct {
	path   string
	offset int
	raw    []byte // tag and value
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func enforcesUTF8(fd protoreflect.FieldDescriptor) bool {
	return fd.ParentFile() != nil && fd.ParentFile().Syntax() == protoreflect.Proto3
}
