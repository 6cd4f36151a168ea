package decode

import (
	"bytes"
	"encoding/json"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// templateDepth bounds how deep Template fills nested messages.
const templateDepth = 3

// Template returns a JSON object for md that is a valid request as it
// stands, sent unchanged, and shows the fields to edit: every field without
// presence at its zero value (enums their first value), repeated fields as
// [] and maps as {}. Fields with presence, whose mere setting means
// something to a server (message fields, well-known types among them,
// oneof members, optional scalars), are left out unless required (proto2);
// TemplateHints gives an example for each of them and for the elements of
// repeated fields and maps. Required nested messages are filled up to
// three levels; a type that contains itself is filled once and then left
// as {}. The enum values to choose from are in DescribeMessage.
func Template(md protoreflect.MessageDescriptor) json.RawMessage {
	var b bytes.Buffer
	writeTemplate(&b, md, map[protoreflect.FullName]bool{}, 0)
	return b.Bytes()
}

// TemplateHint is an example for a field Template leaves out or leaves
// empty: the value it would have when set, in JSON.
type TemplateHint struct {
	Field string `json:"field"` // JSON name
	// Example is the field's value when set: a message's own template, a
	// list of one element, a map of one entry.
	Example json.RawMessage `json:"example"`
	// Oneof names the oneof the field is a member of; at most one member
	// may be set.
	Oneof string `json:"oneof,omitempty"`
}

// TemplateHints returns, in field order, an example for every field of md
// that Template leaves out (fields with presence) or empty (repeated fields,
// maps).
func TemplateHints(md protoreflect.MessageDescriptor) []TemplateHint {
	if _, ok := wellKnownTemplate(md); ok {
		return nil
	}
	hints := []TemplateHint{}
	open := map[protoreflect.FullName]bool{md.FullName(): true}
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		if !leftOut(fd) && !fd.IsList() && !fd.IsMap() {
			continue
		}
		var b bytes.Buffer
		writeExample(&b, fd, open, 0)
		h := TemplateHint{Field: fd.JSONName(), Example: b.Bytes()}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			h.Oneof = string(od.Name())
		}
		hints = append(hints, h)
	}
	return hints
}

// leftOut reports whether Template leaves fd out: setting it at all says
// something (it has presence) and nothing requires it.
func leftOut(fd protoreflect.FieldDescriptor) bool {
	return fd.HasPresence() && fd.Cardinality() != protoreflect.Required
}

func writeTemplate(b *bytes.Buffer, md protoreflect.MessageDescriptor, open map[protoreflect.FullName]bool, depth int) {
	if wkt, ok := wellKnownTemplate(md); ok {
		b.WriteString(wkt)
		return
	}
	if open[md.FullName()] || depth >= templateDepth {
		b.WriteString("{}")
		return
	}
	open[md.FullName()] = true
	defer delete(open, md.FullName())
	b.WriteByte('{')
	first := true
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		if leftOut(fd) {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		name, _ := json.Marshal(fd.JSONName())
		b.Write(name)
		b.WriteByte(':')
		switch {
		case fd.IsMap():
			b.WriteString("{}")
		case fd.IsList():
			b.WriteString("[]")
		default:
			writeValue(b, fd, open, depth)
		}
	}
	b.WriteByte('}')
}

// writeExample writes the value fd has when set: one element for a list,
// one entry for a map.
func writeExample(b *bytes.Buffer, fd protoreflect.FieldDescriptor, open map[protoreflect.FullName]bool, depth int) {
	switch {
	case fd.IsMap():
		b.WriteByte('{')
		switch fd.MapKey().Kind() {
		case protoreflect.StringKind:
			b.WriteString(`"key"`)
		case protoreflect.BoolKind:
			b.WriteString(`"true"`)
		default:
			b.WriteString(`"1"`)
		}
		b.WriteByte(':')
		writeValue(b, fd.MapValue(), open, depth)
		b.WriteByte('}')
	case fd.IsList():
		b.WriteByte('[')
		writeValue(b, fd, open, depth)
		b.WriteByte(']')
	default:
		writeValue(b, fd, open, depth)
	}
}

func writeValue(b *bytes.Buffer, fd protoreflect.FieldDescriptor, open map[protoreflect.FullName]bool, depth int) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		writeTemplate(b, fd.Message(), open, depth+1)
	case protoreflect.EnumKind:
		if fd.Enum().Values().Len() == 0 {
			b.WriteString("0")
			return
		}
		n, _ := json.Marshal(string(fd.Enum().Values().Get(0).Name()))
		b.Write(n)
	case protoreflect.BoolKind:
		b.WriteString("false")
	case protoreflect.StringKind, protoreflect.BytesKind:
		b.WriteString(`""`)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		b.WriteString(`"0"`)
	default:
		b.WriteString("0")
	}
}

func wellKnownTemplate(md protoreflect.MessageDescriptor) (string, bool) {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return `"1970-01-01T00:00:00Z"`, true
	case "google.protobuf.Duration":
		return `"0s"`, true
	case "google.protobuf.Any", "google.protobuf.Struct", "google.protobuf.Empty":
		return "{}", true
	case "google.protobuf.Value":
		return "null", true
	case "google.protobuf.ListValue":
		return "[]", true
	case "google.protobuf.FieldMask":
		return `""`, true
	case "google.protobuf.StringValue", "google.protobuf.BytesValue":
		return `""`, true
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
		return `"0"`, true
	case "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		return "0", true
	case "google.protobuf.BoolValue":
		return "false", true
	}
	return "", false
}

// MessageSchema describes a message type for the UI.
type MessageSchema struct {
	Name   string        `json:"name"` // full name
	Fields []FieldSchema `json:"fields"`
}

// FieldSchema describes one field.
type FieldSchema struct {
	Name     string `json:"name"`      // as in the .proto
	JSONName string `json:"json_name"` // as in JSON
	Number   int32  `json:"number"`
	// Kind is the scalar kind ("int32", "string", …), "message", "enum" or "map".
	Kind string `json:"kind"`
	// Type is the full name of the message or enum type, for those kinds.
	Type       string   `json:"type,omitempty"`
	Repeated   bool     `json:"repeated,omitempty"`
	Optional   bool     `json:"optional,omitempty"` // declared with the optional keyword
	Oneof      string   `json:"oneof,omitempty"`
	EnumValues []string `json:"enum_values,omitempty"`
	MapKey     string   `json:"map_key,omitempty"`   // key kind, for maps
	MapValue   string   `json:"map_value,omitempty"` // value kind or type, for maps
}

// MethodSchema describes a method for the UI.
type MethodSchema struct {
	FullMethod      string `json:"full_method"` // "/pkg.Service/Method"
	Name            string `json:"name"`
	Input           string `json:"input"`
	Output          string `json:"output"`
	ClientStreaming bool   `json:"client_streaming"`
	ServerStreaming bool   `json:"server_streaming"`
}

// ServiceSchema describes a service for the UI.
type ServiceSchema struct {
	Name    string         `json:"name"`
	Methods []MethodSchema `json:"methods"`
}

// DescribeService describes a service and its methods.
func DescribeService(sd protoreflect.ServiceDescriptor) ServiceSchema {
	s := ServiceSchema{Name: string(sd.FullName()), Methods: []MethodSchema{}}
	for i := 0; i < sd.Methods().Len(); i++ {
		s.Methods = append(s.Methods, DescribeMethod(sd.Methods().Get(i)))
	}
	return s
}

// DescribeMethod describes a method.
func DescribeMethod(md protoreflect.MethodDescriptor) MethodSchema {
	return MethodSchema{
		FullMethod:      "/" + string(md.Parent().FullName()) + "/" + string(md.Name()),
		Name:            string(md.Name()),
		Input:           string(md.Input().FullName()),
		Output:          string(md.Output().FullName()),
		ClientStreaming: md.IsStreamingClient(),
		ServerStreaming: md.IsStreamingServer(),
	}
}

// DescribeMessage describes a message's fields (one level; nested types are
// named, and described by calling DescribeMessage on them).
func DescribeMessage(md protoreflect.MessageDescriptor) MessageSchema {
	s := MessageSchema{Name: string(md.FullName()), Fields: []FieldSchema{}}
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		f := FieldSchema{
			Name:     string(fd.Name()),
			JSONName: fd.JSONName(),
			Number:   int32(fd.Number()),
			Kind:     fd.Kind().String(),
			Repeated: fd.IsList(),
			Optional: fd.HasOptionalKeyword(),
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			f.Oneof = string(od.Name())
		}
		switch {
		case fd.IsMap():
			f.Kind = "map"
			f.MapKey = fd.MapKey().Kind().String()
			f.MapValue = typeName(fd.MapValue())
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			f.Kind = "message"
			f.Type = string(fd.Message().FullName())
		case fd.Kind() == protoreflect.EnumKind:
			f.Type = string(fd.Enum().FullName())
			vals := fd.Enum().Values()
			for j := 0; j < vals.Len(); j++ {
				f.EnumValues = append(f.EnumValues, string(vals.Get(j).Name()))
			}
		}
		s.Fields = append(s.Fields, f)
	}
	return s
}

func typeName(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return string(fd.Message().FullName())
	case protoreflect.EnumKind:
		return string(fd.Enum().FullName())
	}
	return fd.Kind().String()
}
