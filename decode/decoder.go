package decode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Direction says which message of a method is being read.
type Direction int

const (
	Request  Direction = iota // client to server: the method's input type
	Response                  // server to client: the method's output type
)

func (d Direction) String() string {
	if d == Response {
		return "response"
	}
	return "request"
}

// Dialer returns a connection to a backend for server reflection. The
// Decoder calls it at most once per backend, on first need, and closes the
// connection in Close when it implements io.Closer (*grpc.ClientConn does).
type Dialer func(backend string) (grpc.ClientConnInterface, error)

// Option configures New.
type Option func(*Decoder)

// WithSources adds explicit descriptor sources (--proto, --protoset, a
// capture's saved descriptors), consulted in the order given and always
// before reflection. Default: none.
func WithSources(s ...Source) Option {
	return func(d *Decoder) { d.sources = append(d.sources, s...) }
}

// WithDialer turns on server reflection: each backend is asked about its
// own methods over the connection dial returns. Default: nil, no
// reflection (what --no-reflection gives).
func WithDialer(dial Dialer) Option {
	return func(d *Decoder) { d.dial = dial }
}

// WithReflectionOptions configures every per-backend reflection source.
// Default: none (see RefreshInterval and ReflectionTimeout).
func WithReflectionOptions(opts ...ReflectionOption) Option {
	return func(d *Decoder) { d.reflOpts = append(d.reflOpts, opts...) }
}

// WithEmitDefaults makes JSON output include fields that hold their zero
// value. Default false, as grpcurl prints.
func WithEmitDefaults(on bool) Option {
	return func(d *Decoder) { d.emitDefaults = on }
}

// Decoder turns recorded message bytes into JSON and back, with every
// source it has: explicit files first, then reflection against the backend
// the call went to. It is safe for concurrent use. Decoding is meant for the
// read path (show, export, UI), never the forwarding path.
type Decoder struct {
	sources      []Source
	dial         Dialer
	reflOpts     []ReflectionOption
	emitDefaults bool

	mu     sync.Mutex
	refl   map[string]*reflEntry
	closed bool
}

type reflEntry struct {
	src  *Reflection
	conn grpc.ClientConnInterface
	err  error
}

// New returns a Decoder.
func New(opts ...Option) *Decoder {
	d := &Decoder{refl: map[string]*reflEntry{}}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Close closes the reflection connections the Decoder dialed.
func (d *Decoder) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	var errs []error
	for _, backend := range sortedKeys(d.refl) {
		if c, ok := d.refl[backend].conn.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close reflection connection to %s: %w", backend, err))
			}
		}
	}
	d.refl = map[string]*reflEntry{}
	return errors.Join(errs...)
}

// Input is one recorded message to decode.
type Input struct {
	Method         string // "/pkg.Service/Method"
	Backend        string // address the call was forwarded to; picks the reflection source ("" for none)
	Direction      Direction
	ContentSubtype string // "" or "proto" for protobuf, "json" for application/grpc+json
	Raw            []byte // the message, without the 5-byte gRPC frame header
	// Limits bound the views (JSON, schemaless tree, unknown fields); what
	// they leave out is in Result.Elided. Default: NoLimits, everything.
	Limits Limits
}

// Result is a decoded message, ready to be embedded in the call JSON.
type Result struct {
	// JSON is the message as protojson prints it (lowerCamelCase names),
	// compact; null when it could not be decoded with a schema.
	JSON json.RawMessage `json:"json"`
	// Schemaless is the schemaless tree, set when JSON is null.
	Schemaless *Node `json:"schemaless"`
	// Error says why JSON is null (or, with JSON set, what else went wrong).
	Error string `json:"decode_error,omitempty"`
	// MessageType is the full name of the type the bytes were read as.
	MessageType string `json:"message_type,omitempty"`
	// Source names the descriptor source that described the method.
	Source string `json:"source,omitempty"`
	// Unknown lists fields the schema does not know (a newer sender), which
	// protojson would otherwise drop without a trace.
	Unknown []UnknownField `json:"unknown_fields,omitempty"`
	// Text is the payload of a json-subtype message that is not valid JSON.
	Text string `json:"text,omitempty"`
	// Elided lists what Input.Limits left out of the views.
	Elided []Elision `json:"elided,omitempty"`
}

// UnknownField is a field present on the wire but not in the schema.
type UnknownField struct {
	// Path is the JSON path of the message holding the field ("" for the
	// top level; repeated fields and map entries indexed in wire order).
	Path  string `json:"path"`
	Field *Field `json:"field"`
}

func isJSONSubtype(s string) bool {
	return strings.EqualFold(s, "json") || strings.HasPrefix(strings.ToLower(s), "json")
}

func isProtoSubtype(s string) bool {
	return s == "" || strings.EqualFold(s, "proto")
}

// Decode decodes one message. It never fails: what could not be done is in
// Result.Error, with the schemaless tree in its place.
func (d *Decoder) Decode(ctx context.Context, in Input) Result {
	bud := &budget{lim: in.Limits}
	if isJSONSubtype(in.ContentSubtype) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, in.Raw); err != nil {
			text := in.Raw
			if in.Limits.Bytes > 0 && len(text) > in.Limits.Bytes {
				text = text[:in.Limits.Bytes]
				bud.elide("text", len(text), len(in.Raw), "bytes")
			}
			return Result{Text: string(text), Error: fmt.Sprintf("message sent as application/grpc+%s is not valid JSON: %v", in.ContentSubtype, err), Elided: bud.list()}
		}
		return Result{JSON: bud.pruneJSON(buf.Bytes()), Elided: bud.list()}
	}
	if !isProtoSubtype(in.ContentSubtype) {
		return schemalessResult(in.Raw, fmt.Sprintf("content subtype %q is neither protobuf nor JSON; shown as a schemaless guess", in.ContentSubtype), bud)
	}
	md, src, err := d.messageFor(ctx, in.Method, in.Backend, in.Direction)
	if err != nil {
		return schemalessResult(in.Raw, err.Error(), bud)
	}
	res := d.decodeAs(ctx, md, in.Backend, in.Raw, bud)
	res.Source = src
	return res
}

// DecodeMessage decodes raw as md, resolving Any through the Decoder's
// sources (and backend's reflection, if backend is not empty).
func (d *Decoder) DecodeMessage(ctx context.Context, md protoreflect.MessageDescriptor, backend string, raw []byte) Result {
	return d.decodeAs(ctx, md, backend, raw, &budget{})
}

func (d *Decoder) decodeAs(ctx context.Context, md protoreflect.MessageDescriptor, backend string, raw []byte, bud *budget) Result {
	var c wireChecker
	if _, err := c.check(md, raw, 0, 0, 0, ""); err != nil {
		r := schemalessResult(raw, err.Error(), bud)
		r.MessageType = string(md.FullName())
		return r
	}
	resolver := &typeResolver{ctx: ctx, sources: d.sourcesFor(backend)}
	msg := dynamicpb.NewMessage(md)
	if err := (proto.UnmarshalOptions{Resolver: resolver, AllowPartial: true}).Unmarshal(raw, msg); err != nil {
		r := schemalessResult(raw, fmt.Sprintf("decode as %s: %s", md.FullName(), protoErr(err)), bud)
		r.MessageType = string(md.FullName())
		return r
	}
	if bud.lim != NoLimits {
		bud.prune(msg, "")
	}
	js, err := protojson.MarshalOptions{Resolver: resolver, EmitUnpopulated: d.emitDefaults, AllowPartial: true}.Marshal(msg)
	if err != nil {
		r := schemalessResult(raw, fmt.Sprintf("print %s as JSON: %s", md.FullName(), protoErr(err)), &budget{lim: bud.lim})
		r.MessageType = string(md.FullName())
		return r
	}
	var buf bytes.Buffer
	// protojson varies its whitespace on purpose; compact it so output is stable.
	if err := json.Compact(&buf, js); err != nil {
		r := schemalessResult(raw, fmt.Sprintf("print %s as JSON: %s", md.FullName(), protoErr(err)), &budget{lim: bud.lim})
		r.MessageType = string(md.FullName())
		return r
	}
	// google.protobuf.Any values were expanded by protojson, after prune.
	r := Result{JSON: bud.pruneJSON(buf.Bytes()), MessageType: string(md.FullName())}
	for _, u := range c.unknown {
		n, _, err := parseFields(u.raw, u.offset, 0, 0, false, bud, u.path)
		if err != nil || len(n.Fields) != 1 {
			continue // cannot happen: check already walked these bytes (or the bounds hid it)
		}
		r.Unknown = append(r.Unknown, UnknownField{Path: u.path, Field: n.Fields[0]})
	}
	r.Elided = bud.list()
	return r
}

// protoErr renders an error of the protobuf module with plain spaces: it
// puts a no-break space after "proto:" at random, to stop callers matching
// on text, which would make our messages unstable too.
func protoErr(err error) string {
	return strings.ReplaceAll(err.Error(), "\u00a0", " ")
}

func schemalessResult(raw []byte, why string, bud *budget) Result {
	var lim *budget
	if bud.lim != NoLimits {
		lim = bud
	}
	n, _, err := parseFields(raw, 0, 0, 0, false, lim, "")
	if err != nil {
		why += "; schemaless: " + err.Error()
	}
	return Result{Schemaless: n, Error: why, Elided: bud.list()}
}

// Encode turns JSON (protojson syntax; lowerCamelCase or proto names) into
// the wire bytes of the method's request or response type.
func (d *Decoder) Encode(ctx context.Context, method, backend string, dir Direction, js []byte) ([]byte, error) {
	md, _, err := d.messageFor(ctx, method, backend, dir)
	if err != nil {
		return nil, err
	}
	return d.EncodeMessage(ctx, md, backend, js)
}

// EncodeMessage turns JSON into the wire bytes of md.
func (d *Decoder) EncodeMessage(ctx context.Context, md protoreflect.MessageDescriptor, backend string, js []byte) ([]byte, error) {
	resolver := &typeResolver{ctx: ctx, sources: d.sourcesFor(backend)}
	msg := dynamicpb.NewMessage(md)
	if err := (protojson.UnmarshalOptions{Resolver: resolver}).Unmarshal(js, msg); err != nil {
		return nil, fmt.Errorf("encode JSON as %s: %s", md.FullName(), protoErr(err))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %s", md.FullName(), protoErr(err))
	}
	return b, nil
}

// FindMethod resolves a method through the explicit sources, then the
// built-in services (server reflection v1 and v1alpha, health), then the
// backend's reflection. It returns the name of the source that knew it.
func (d *Decoder) FindMethod(ctx context.Context, method, backend string) (protoreflect.MethodDescriptor, string, error) {
	if _, _, err := SplitMethod(method); err != nil {
		return nil, "", fmt.Errorf("no descriptor for method: %w", err)
	}
	sources := d.sourcesFor(backend)
	var whys []string
	for _, s := range sources[:len(d.sources)] {
		md, err := s.FindMethod(ctx, method)
		if err == nil {
			return md, s.String(), nil
		}
		whys = append(whys, err.Error())
	}
	if md, ok := findBuiltin(ctx, method); ok {
		return md, builtin.String(), nil
	}
	if len(sources) == 0 {
		why := "no descriptor source: no .proto files or protosets, and no reflection allowed"
		if err := d.dialErr(backend); err != nil {
			why = err.Error()
		}
		return nil, "", fmt.Errorf("no descriptor for method %s: %s", method, why)
	}
	for _, s := range sources[len(d.sources):] {
		md, err := s.FindMethod(ctx, method)
		if err == nil {
			return md, s.String(), nil
		}
		whys = append(whys, err.Error())
	}
	if err := d.dialErr(backend); err != nil {
		whys = append(whys, err.Error())
	}
	return nil, "", fmt.Errorf("no descriptor for method %s: %s", method, strings.Join(whys, "; "))
}

func (d *Decoder) messageFor(ctx context.Context, method, backend string, dir Direction) (protoreflect.MessageDescriptor, string, error) {
	md, src, err := d.FindMethod(ctx, method, backend)
	if err != nil {
		return nil, "", err
	}
	if dir == Response {
		return md.Output(), src, nil
	}
	return md.Input(), src, nil
}

// FindMessage resolves a message type by full name, in the order of
// FindMethod.
func (d *Decoder) FindMessage(ctx context.Context, fullName, backend string) (protoreflect.MessageDescriptor, error) {
	var whys []string
	sources := d.sourcesFor(backend)
	for i := 0; i <= len(sources); i++ {
		if i == len(d.sources) && isBuiltinName(fullName) {
			if md, err := builtin.FindMessage(ctx, fullName); err == nil {
				return md, nil
			}
		}
		if i == len(sources) {
			break
		}
		md, err := sources[i].FindMessage(ctx, fullName)
		if err == nil {
			return md, nil
		}
		whys = append(whys, err.Error())
	}
	if len(whys) == 0 {
		return nil, fmt.Errorf("no descriptor for message %s: no descriptor source", fullName)
	}
	return nil, fmt.Errorf("no descriptor for message %s: %s", fullName, strings.Join(whys, "; "))
}

// ListServices lists the services known for backend: the explicit sources'
// and, with reflection on, the backend's. A name in several sources is taken
// from the first. Sorted by full name.
func (d *Decoder) ListServices(ctx context.Context, backend string) ([]protoreflect.ServiceDescriptor, error) {
	seen := map[protoreflect.FullName]bool{}
	var out []protoreflect.ServiceDescriptor
	var errs []error
	for _, s := range d.sourcesFor(backend) {
		sds, err := s.ListServices(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, sd := range sds {
			if !seen[sd.FullName()] {
				seen[sd.FullName()] = true
				out = append(out, sd)
			}
		}
	}
	if err := d.dialErr(backend); err != nil {
		errs = append(errs, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FullName() < out[j].FullName() })
	return out, errors.Join(errs...)
}

// sourcesFor returns the explicit sources then backend's reflection source.
func (d *Decoder) sourcesFor(backend string) []Source {
	out := append([]Source(nil), d.sources...)
	if d.dial == nil || backend == "" {
		return out
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return out
	}
	e, ok := d.refl[backend]
	if !ok {
		e = &reflEntry{}
		conn, err := d.dial(backend)
		if err != nil {
			e.err = fmt.Errorf("reflection from %s: dial: %w", backend, err)
		} else {
			e.conn = conn
			e.src = NewReflection(conn, backend, d.reflOpts...)
		}
		d.refl[backend] = e
	}
	if e.src != nil {
		out = append(out, e.src)
	}
	return out
}

func (d *Decoder) dialErr(backend string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.refl[backend]; ok {
		return e.err
	}
	return nil
}

// Snapshot serializes every file the Decoder has learned so far — from
// explicit sources and from every backend's reflection — with all their
// imports, as a google.protobuf.FileDescriptorSet. Files are in dependency
// order (imports first), roots by path, so equal knowledge gives equal
// bytes. A path known to several sources is taken from the first (explicit
// files, then backends by address); a file whose imports differ from the
// versions already taken is left out, so the set always links.
// NewFileDescriptorSet reads it back.
func (d *Decoder) Snapshot() ([]byte, error) {
	var files []protoreflect.FileDescriptor
	for _, s := range d.sources {
		files = append(files, s.Files()...)
	}
	d.mu.Lock()
	for _, backend := range sortedKeys(d.refl) {
		if src := d.refl[backend].src; src != nil {
			files = append(files, src.Files()...)
		}
	}
	d.mu.Unlock()
	return snapshotFiles(files)
}

// snapshotFiles serializes files and their imports. A path seen twice keeps
// its first version; a file whose imports disagree with versions already
// taken is left out with its imports, so the set always links.
func snapshotFiles(files []protoreflect.FileDescriptor) ([]byte, error) {
	chosen := map[string]*descriptorpb.FileDescriptorProto{}
	chosenFD := map[string]protoreflect.FileDescriptor{}
	for _, root := range files {
		if chosenFD[root.Path()] == root {
			continue
		}
		var closure []protoreflect.FileDescriptor
		seen := map[string]bool{}
		var walk func(fd protoreflect.FileDescriptor)
		walk = func(fd protoreflect.FileDescriptor) {
			if seen[fd.Path()] {
				return
			}
			seen[fd.Path()] = true
			for i := 0; i < fd.Imports().Len(); i++ {
				if imp := fd.Imports().Get(i).FileDescriptor; imp != nil && !imp.IsPlaceholder() {
					walk(imp)
				}
			}
			closure = append(closure, fd)
		}
		walk(root)
		consistent := true
		fresh := map[string]*descriptorpb.FileDescriptorProto{}
		for _, fd := range closure {
			have, ok := chosen[fd.Path()]
			switch {
			case !ok:
				fresh[fd.Path()] = protodesc.ToFileDescriptorProto(fd)
			case chosenFD[fd.Path()] == fd:
			case !proto.Equal(have, protodesc.ToFileDescriptorProto(fd)):
				consistent = false
			}
		}
		if !consistent {
			continue
		}
		for _, fd := range closure {
			if p, ok := fresh[fd.Path()]; ok {
				chosen[fd.Path()] = p
				chosenFD[fd.Path()] = fd
			}
		}
	}
	set := &descriptorpb.FileDescriptorSet{}
	done := map[string]bool{}
	var emit func(path string)
	emit = func(path string) {
		fdp, ok := chosen[path]
		if !ok || done[path] {
			return
		}
		done[path] = true
		for _, dep := range fdp.GetDependency() {
			emit(dep)
		}
		set.File = append(set.File, fdp)
	}
	for _, p := range sortedKeys(chosen) {
		emit(p)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("snapshot descriptors: %w", err)
	}
	return b, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// typeResolver finds the types named inside google.protobuf.Any through the
// same sources as the method, then the built-in well-known types.
type typeResolver struct {
	ctx     context.Context
	sources []Source
}

func (r *typeResolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	for _, s := range r.sources {
		if md, err := s.FindMessage(r.ctx, string(name)); err == nil {
			return dynamicpb.NewMessageType(md), nil
		}
	}
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(name); err == nil && strings.HasPrefix(string(name), "google.protobuf.") {
		return mt, nil
	}
	return nil, protoregistry.NotFound
}

func (r *typeResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	name := url
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		name = url[i+1:]
	}
	return r.FindMessageByName(protoreflect.FullName(name))
}

func (r *typeResolver) FindExtensionByName(protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return nil, protoregistry.NotFound
}

func (r *typeResolver) FindExtensionByNumber(protoreflect.FullName, protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return nil, protoregistry.NotFound
}
