package decode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Limits bound how much of one message a decoded view shows, so that one
// large message cannot make a view many times its size: a 4 MiB packed
// field is 4 million numbers. What is left out is listed in
// Result.Elided; the raw bytes stay whole. A zero field means no bound.
type Limits struct {
	// Items is how many elements of each repeated field, map or packed
	// run are shown.
	Items int
	// Bytes is how many bytes of each string or bytes value are shown.
	Bytes int
	// Nodes is how many elements (list items, map entries, schemaless
	// fields) the whole view shows; past it, lists are shown empty and
	// schemaless fields are counted, not shown.
	Nodes int
}

// DefaultLimits are the bounds of what show, export and the inspector
// render: views of any message stay within a few hundred KiB.
var DefaultLimits = Limits{Items: 200, Bytes: 4096, Nodes: 5000}

// NoLimits shows everything.
var NoLimits = Limits{}

// Scale returns l with every bound multiplied by k (k ≤ 1 gives l).
func (l Limits) Scale(k int) Limits {
	if k <= 1 {
		return l
	}
	mul := func(n int) int {
		if n == 0 || n > (1<<40)/k {
			return 0
		}
		return n * k
	}
	return Limits{Items: mul(l.Items), Bytes: mul(l.Bytes), Nodes: mul(l.Nodes)}
}

// Elision is one thing a view leaves out.
type Elision struct {
	// Path is where: a JSON path in the decoded view ("items[2].tags"), or
	// field numbers in the schemaless tree ("field 1.4", "" for the top
	// level).
	Path string `json:"path"`
	// Shown of Total Units are in the view; Unit is "items", "bytes" or
	// "fields".
	Shown int    `json:"shown"`
	Total int    `json:"total"`
	Unit  string `json:"unit"`
}

func (e Elision) String() string {
	where := e.Path
	if where == "" {
		where = "(top level)"
	}
	return fmt.Sprintf("%s %d of %d %s", where, e.Shown, e.Total, e.Unit)
}

// maxElisions bounds Result.Elided; later ones are counted in the last.
const maxElisions = 20

// budget tracks a view's Limits while it is built.
type budget struct {
	lim    Limits
	nodes  int
	elided []Elision
	more   int // elisions past maxElisions
}

// take reserves up to want elements of a list; it returns how many fit.
func (b *budget) take(want int) int {
	n := want
	if b.lim.Items > 0 && n > b.lim.Items {
		n = b.lim.Items
	}
	if b.lim.Nodes > 0 {
		n = max(0, min(n, b.lim.Nodes-b.nodes))
	}
	b.nodes += n
	return n
}

func (b *budget) elide(path string, shown, total int, unit string) {
	if len(b.elided) < maxElisions {
		b.elided = append(b.elided, Elision{Path: path, Shown: shown, Total: total, Unit: unit})
		return
	}
	b.more++
}

// list returns the elisions, with a last entry counting those left out.
func (b *budget) list() []Elision {
	if b.more > 0 {
		return append(b.elided, Elision{Path: fmt.Sprintf("(%d more places)", b.more), Unit: "places"})
	}
	return b.elided
}

// cutString returns at most n bytes of s, cut at a character boundary.
func cutString(s string, n int) string {
	if n <= 0 || len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// prune shortens a decoded message in place to fit b: lists and maps to
// b's item budget, strings and bytes to b.lim.Bytes, recursively.
func (b *budget) prune(m protoreflect.Message, path string) {
	// Set is not allowed while Range runs: gather the fields first.
	type field struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var fields []field
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		fields = append(fields, field{fd, v})
		return true
	})
	for _, f := range fields {
		fd, v := f.fd, f.v
		name := fd.JSONName()
		if fd.IsExtension() {
			name = "[" + string(fd.FullName()) + "]"
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		switch {
		case fd.IsList():
			l := v.List()
			n := b.take(l.Len())
			if n < l.Len() {
				b.elide(p, n, l.Len(), "items")
				l.Truncate(n)
			}
			for i := 0; i < l.Len(); i++ {
				ip := p + "[" + strconv.Itoa(i) + "]"
				if fd.Message() != nil {
					b.prune(l.Get(i).Message(), ip)
				} else if s, ok := b.cutScalar(fd, l.Get(i), ip); ok {
					l.Set(i, s)
				}
			}
		case fd.IsMap():
			b.pruneMap(fd, v.Map(), p)
		case fd.Message() != nil:
			b.prune(v.Message(), p)
		default:
			if s, ok := b.cutScalar(fd, v, p); ok {
				m.Set(fd, s)
			}
		}
	}
}

// pruneMap keeps the entries with the smallest keys (protojson prints maps
// sorted by key).
func (b *budget) pruneMap(fd protoreflect.FieldDescriptor, mp protoreflect.Map, path string) {
	total := mp.Len()
	n := b.take(total)
	if n < total {
		keys := make([]protoreflect.MapKey, 0, total)
		mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
			keys = append(keys, k)
			return true
		})
		sort.Slice(keys, func(i, j int) bool { return mapKeyLess(keys[i], keys[j]) })
		for _, k := range keys[n:] {
			mp.Clear(k)
		}
		b.elide(path, n, total, "items")
	}
	vd := fd.MapValue()
	type entry struct {
		k protoreflect.MapKey
		v protoreflect.Value
	}
	var set []entry
	mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		ep := path + "[" + k.String() + "]"
		if vd.Message() != nil {
			b.prune(v.Message(), ep)
		} else if s, ok := b.cutScalar(vd, v, ep); ok {
			set = append(set, entry{k, s})
		}
		return true
	})
	for _, e := range set {
		mp.Set(e.k, e.v)
	}
}

func mapKeyLess(a, b protoreflect.MapKey) bool {
	switch x := a.Interface().(type) {
	case string:
		return x < b.String()
	case bool:
		return !x && b.Bool()
	case int32, int64:
		return a.Int() < b.Int()
	default:
		return a.Uint() < b.Uint()
	}
}

// cutScalar shortens a string or bytes value longer than b.lim.Bytes.
func (b *budget) cutScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) (protoreflect.Value, bool) {
	if b.lim.Bytes <= 0 {
		return v, false
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		s := v.String()
		if len(s) <= b.lim.Bytes {
			return v, false
		}
		cut := cutString(s, b.lim.Bytes)
		b.elide(path, len(cut), len(s), "bytes")
		return protoreflect.ValueOfString(cut), true
	case protoreflect.BytesKind:
		s := v.Bytes()
		if len(s) <= b.lim.Bytes {
			return v, false
		}
		b.elide(path, b.lim.Bytes, len(s), "bytes")
		return protoreflect.ValueOfBytes(s[:b.lim.Bytes]), true
	}
	return v, false
}

// maxViewJSON is the size past which a JSON view made outside prune (a
// message sent as JSON, google.protobuf.Any expanded by protojson) is
// shortened generically.
const maxViewJSON = 256 << 10

// pruneJSON shortens a JSON document to fit b: arrays and objects to the
// item budget, strings to b.lim.Bytes. Objects come out with sorted keys.
// It returns js itself when js is small or nothing needed cutting.
func (b *budget) pruneJSON(js []byte) []byte {
	if b.lim == (Limits{}) || len(js) <= maxViewJSON {
		return js
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return js
	}
	before := len(b.elided) + b.more
	v = b.pruneValue(v, "")
	if len(b.elided)+b.more == before {
		return js
	}
	out, err := json.Marshal(v)
	if err != nil {
		return js
	}
	return out
}

func (b *budget) pruneValue(v any, path string) any {
	switch x := v.(type) {
	case string:
		if b.lim.Bytes > 0 && len(x) > b.lim.Bytes {
			cut := cutString(x, b.lim.Bytes)
			b.elide(path, len(cut), len(x), "bytes")
			return cut
		}
	case []any:
		n := b.take(len(x))
		if n < len(x) {
			b.elide(path, n, len(x), "items")
			x = x[:n]
		}
		for i := range x {
			x[i] = b.pruneValue(x[i], path+"["+strconv.Itoa(i)+"]")
		}
		return x
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		n := b.take(len(keys))
		if n < len(keys) {
			b.elide(path, n, len(keys), "items")
			for _, k := range keys[n:] {
				delete(x, k)
			}
			keys = keys[:n]
		}
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			x[k] = b.pruneValue(x[k], p)
		}
	}
	return v
}

// ElisionNote is the sentence show and the inspector print about what a
// view left out ("" for nothing).
func ElisionNote(e []Elision) string {
	if len(e) == 0 {
		return ""
	}
	parts := make([]string, len(e))
	for i, x := range e {
		parts[i] = x.String()
	}
	return "shown shortened: " + strings.Join(parts, "; ")
}
