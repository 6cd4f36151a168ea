package msgdiff

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Absent stands for a value missing on one side of a Diff. (protojson
// leaves fields at their default value out, so a field set to its default
// on one side shows as absent.)
const Absent = "(absent)"

// seg is one step of a field path: a field, a list index or a map key.
type seg struct {
	kind byte // 'f' field, 'i' index, 'k' map key, '*' any (patterns only)
	name string
	idx  int
}

// FieldPath is a path into a decoded message, as printed in diffs and
// taken by --ignore-field: author.name, tags[1], labels["k"]. In a
// pattern, * stands for any one step: tags[*], labels[*], *.name.
type FieldPath []seg

func (p FieldPath) String() string {
	var b strings.Builder
	for i, s := range p {
		switch s.kind {
		case 'f', '*':
			if i > 0 {
				b.WriteByte('.')
			}
			if s.kind == '*' {
				b.WriteByte('*')
			} else {
				b.WriteString(s.name)
			}
		case 'i':
			fmt.Fprintf(&b, "[%d]", s.idx)
		case 'k':
			b.WriteString("[" + strconv.Quote(s.name) + "]")
		}
	}
	return b.String()
}

func (p FieldPath) with(s seg) FieldPath {
	out := make(FieldPath, len(p), len(p)+1)
	copy(out, p)
	return append(out, s)
}

// ParseFieldPath reads a path or pattern: fields separated by dots, list
// indexes as [n], map keys as ["k"] (or [k]), and * or [*] for any step.
func ParseFieldPath(s string) (FieldPath, error) {
	var p FieldPath
	rest := strings.TrimSpace(s)
	if rest == "" {
		return nil, fmt.Errorf("empty field path")
	}
	for rest != "" {
		switch {
		case rest[0] == '.':
			if len(p) == 0 {
				return nil, fmt.Errorf("field path %q starts with a dot", s)
			}
			rest = rest[1:]
			if rest == "" || rest[0] == '.' || rest[0] == '[' {
				return nil, fmt.Errorf("field path %q: a dot must be followed by a field name", s)
			}
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if q := strings.IndexByte(rest, '"'); q == 1 {
				// Quoted key: find the closing quote first.
				k, err := strconv.QuotedPrefix(rest[1:])
				if err != nil {
					return nil, fmt.Errorf("field path %q: %v", s, err)
				}
				if len(rest) < 2+len(k) || rest[1+len(k)] != ']' {
					return nil, fmt.Errorf("field path %q: missing ] after key", s)
				}
				name, _ := strconv.Unquote(k)
				p = append(p, seg{kind: 'k', name: name})
				rest = rest[2+len(k):]
				continue
			}
			if end < 0 {
				return nil, fmt.Errorf("field path %q: missing ]", s)
			}
			inner := rest[1:end]
			rest = rest[end+1:]
			switch n, err := strconv.Atoi(inner); {
			case inner == "*":
				p = append(p, seg{kind: '*'})
			case err == nil:
				p = append(p, seg{kind: 'i', idx: n})
			default:
				p = append(p, seg{kind: 'k', name: inner})
			}
		default:
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			name := rest[:end]
			rest = rest[end:]
			if name == "*" {
				p = append(p, seg{kind: '*'})
			} else {
				p = append(p, seg{kind: 'f', name: name})
			}
		}
	}
	return p, nil
}

// normField compares field names loosely: json_name and proto_name, any
// case ("receivedAt" = "received_at").
func normField(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }

// matches reports whether pattern p covers path q: p matches a prefix of q,
// so ignoring a message ignores everything in it.
func (p FieldPath) matches(q FieldPath) bool {
	if len(p) > len(q) {
		return false
	}
	for i, ps := range p {
		qs := q[i]
		switch ps.kind {
		case '*':
		case 'f':
			if qs.kind == 'f' && normField(qs.name) == normField(ps.name) {
				continue
			}
			// A map key written as a field (labels.k).
			if qs.kind == 'k' && qs.name == ps.name {
				continue
			}
			return false
		case 'i':
			if qs.kind != 'i' || qs.idx != ps.idx {
				return false
			}
		case 'k':
			if (qs.kind != 'k' && qs.kind != 'f') || qs.name != ps.name {
				return false
			}
		}
	}
	return true
}

// Lookup returns the value at path p in a decoded message (a JSON tree as
// DiffTrees takes it), and false when there is none. Field names match
// loosely, as in patterns (receivedAt = received_at), and * takes the
// first element or key there is.
func (p FieldPath) Lookup(tree any) (any, bool) {
	v := tree
	for _, s := range p {
		switch cur := v.(type) {
		case map[string]any:
			next, ok := lookupKey(cur, s)
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			switch {
			case s.kind == 'i' && s.idx >= 0 && s.idx < len(cur):
				v = cur[s.idx]
			case s.kind == '*' && len(cur) > 0:
				v = cur[0]
			default:
				return nil, false
			}
		default:
			return nil, false
		}
	}
	return v, true
}

func lookupKey(m map[string]any, s seg) (any, bool) {
	switch s.kind {
	case 'k':
		v, ok := m[s.name]
		return v, ok
	case 'f':
		if v, ok := m[s.name]; ok {
			return v, true
		}
		for k, v := range m {
			if normField(k) == normField(s.name) {
				return v, true
			}
		}
	case '*':
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		if len(keys) > 0 {
			sort.Strings(keys)
			return m[keys[0]], true
		}
	}
	return nil, false
}

// FieldDiff is one difference between two decoded messages.
type FieldDiff struct {
	Path     string `json:"path"` // "" for the message as a whole
	Recorded any    `json:"recorded"`
	Got      any    `json:"got"`
}

// DiffTrees compares two decoded messages (JSON values as encoding/json
// reads them, numbers as json.Number or float64) and returns their
// differences in path order, leaving out paths an ignore pattern covers.
// md, when not nil, is the messages' type: its map fields give map-key
// steps (labels["k"]); without it every object key is a field step.
func DiffTrees(md protoreflect.MessageDescriptor, recorded, got any, ignore []FieldPath) []FieldDiff {
	var out []FieldDiff
	d := differ{ignore: ignore, out: &out}
	d.walk(nil, msgShape{md: md}, recorded, got)
	return out
}

// msgShape says what a JSON value is, from the schema when known.
type msgShape struct {
	md    protoreflect.MessageDescriptor // a message of this type
	isMap bool                           // a map field; val is its values' shape
	list  bool                           // a repeated field; val is its elements' shape
	val   *msgShape
}

type differ struct {
	ignore []FieldPath
	out    *[]FieldDiff
}

func (d differ) ignored(p FieldPath) bool {
	for _, ig := range d.ignore {
		if ig.matches(p) {
			return true
		}
	}
	return false
}

func (d differ) emit(p FieldPath, a, b any) {
	if d.ignored(p) {
		return
	}
	*d.out = append(*d.out, FieldDiff{Path: p.String(), Recorded: a, Got: b})
}

func (d differ) walk(p FieldPath, sh msgShape, a, b any) {
	if len(p) > 0 && d.ignored(p) {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			d.emit(p, a, b)
			return
		}
		keys := make([]string, 0, len(av)+len(bv))
		for k := range av {
			keys = append(keys, k)
		}
		for k := range bv {
			if _, dup := av[k]; !dup {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			step, child := sh.child(k)
			x, inA := av[k]
			y, inB := bv[k]
			switch {
			case !inA:
				d.emit(p.with(step), Absent, y)
			case !inB:
				d.emit(p.with(step), x, Absent)
			default:
				d.walk(p.with(step), child, x, y)
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok {
			d.emit(p, a, b)
			return
		}
		elem := msgShape{}
		if sh.val != nil {
			elem = *sh.val
		}
		for i := 0; i < max(len(av), len(bv)); i++ {
			step := seg{kind: 'i', idx: i}
			switch {
			case i >= len(av):
				d.emit(p.with(step), Absent, bv[i])
			case i >= len(bv):
				d.emit(p.with(step), av[i], Absent)
			default:
				d.walk(p.with(step), elem, av[i], bv[i])
			}
		}
	default:
		if !scalarEqual(a, b) {
			d.emit(p, a, b)
		}
	}
}

// child returns the path step for key k of a value of shape sh, and the
// shape of the value under it.
func (sh msgShape) child(k string) (seg, msgShape) {
	if sh.isMap {
		if sh.val != nil {
			return seg{kind: 'k', name: k}, *sh.val
		}
		return seg{kind: 'k', name: k}, msgShape{}
	}
	if sh.md == nil {
		if isIdent(k) {
			return seg{kind: 'f', name: k}, msgShape{}
		}
		return seg{kind: 'k', name: k}, msgShape{}
	}
	fd := sh.md.Fields().ByJSONName(k)
	if fd == nil {
		fd = sh.md.Fields().ByName(protoreflect.Name(k))
	}
	if fd == nil {
		return seg{kind: 'f', name: k}, msgShape{}
	}
	return seg{kind: 'f', name: k}, fieldShape(fd)
}

func fieldShape(fd protoreflect.FieldDescriptor) msgShape {
	switch {
	case fd.IsMap():
		v := msgShape{}
		if m := fd.MapValue().Message(); m != nil && !wellKnown(m) {
			v.md = m
		}
		return msgShape{isMap: true, val: &v}
	case fd.IsList():
		v := msgShape{}
		if m := fd.Message(); m != nil && !wellKnown(m) {
			v.md = m
		}
		return msgShape{list: true, val: &v}
	}
	if m := fd.Message(); m != nil && !wellKnown(m) {
		return msgShape{md: m}
	}
	return msgShape{}
}

// wellKnown types have special JSON forms (Struct is an object of any keys,
// Timestamp a string): their insides are not walked by field.
func wellKnown(m protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(m.FullName()), "google.protobuf.")
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		// Schemaless trees use field numbers as keys.
		if r >= '0' && r <= '9' {
			continue
		}
		return false
	}
	return true
}

func scalarEqual(a, b any) bool {
	if an, ok := a.(json.Number); ok {
		if bn, ok := b.(json.Number); ok {
			if an == bn {
				return true
			}
			af, err1 := an.Float64()
			bf, err2 := bn.Float64()
			return err1 == nil && err2 == nil && af == bf
		}
	}
	return reflect.DeepEqual(a, b)
}
