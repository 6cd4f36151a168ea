package decode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/desc/protoparse"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// The well-known types are built in: a protoset or a saved capture that
	// leaves them out still links against these.
	_ "google.golang.org/protobuf/types/known/anypb"
	_ "google.golang.org/protobuf/types/known/apipb"
	_ "google.golang.org/protobuf/types/known/durationpb"
	_ "google.golang.org/protobuf/types/known/emptypb"
	_ "google.golang.org/protobuf/types/known/fieldmaskpb"
	_ "google.golang.org/protobuf/types/known/sourcecontextpb"
	_ "google.golang.org/protobuf/types/known/structpb"
	_ "google.golang.org/protobuf/types/known/timestamppb"
	_ "google.golang.org/protobuf/types/known/typepb"
	_ "google.golang.org/protobuf/types/known/wrapperspb"
)

// ErrNotFound is wrapped by every Source error that means "this source does
// not know that name" (as opposed to "this source is broken"). The Decoder
// moves on to the next source only for such errors.
var ErrNotFound = errors.New("not found")

// notFoundError is an error that says why in its own words and matches
// ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

func notFoundf(format string, a ...any) error {
	return &notFoundError{msg: fmt.Sprintf(format, a...)}
}

// Source resolves gRPC methods and message types to descriptors.
// Implementations are safe for concurrent use.
type Source interface {
	// FindMethod resolves a full method name, "/pkg.Service/Method".
	FindMethod(ctx context.Context, fullMethod string) (protoreflect.MethodDescriptor, error)
	// FindMessage resolves a fully-qualified message name, "pkg.Message".
	FindMessage(ctx context.Context, fullName string) (protoreflect.MessageDescriptor, error)
	// ListServices lists every service the source can describe, sorted by name.
	// A reflection source asks the server, so this may do network I/O.
	ListServices(ctx context.Context) ([]protoreflect.ServiceDescriptor, error)
	// Files returns the files the source has learned so far (never doing I/O),
	// for Snapshot. Dependencies may or may not be included; Snapshot adds them.
	Files() []protoreflect.FileDescriptor
	// String names the source the way a user would recognise it in an
	// error, e.g. "--proto kitchen.proto" or "reflection from 127.0.0.1:5000".
	String() string
}

// SplitMethod splits "/pkg.Service/Method" (the leading slash is optional,
// and "pkg.Service.Method" is accepted too) into service and method names.
func SplitMethod(fullMethod string) (service protoreflect.FullName, method protoreflect.Name, err error) {
	m := strings.TrimPrefix(fullMethod, "/")
	i := strings.LastIndexByte(m, '/')
	if i < 0 {
		i = strings.LastIndexByte(m, '.')
	}
	if i <= 0 || i == len(m)-1 {
		return "", "", fmt.Errorf("malformed method name %q: want /package.Service/Method", fullMethod)
	}
	service, method = protoreflect.FullName(m[:i]), protoreflect.Name(m[i+1:])
	if !service.IsValid() || !method.IsValid() {
		return "", "", fmt.Errorf("malformed method name %q: want /package.Service/Method", fullMethod)
	}
	return service, method, nil
}

// fileSet is an immutable set of linked files with a symbol index.
type fileSet struct {
	files []protoreflect.FileDescriptor // sorted by path
	reg   *protoregistry.Files
}

// newFileSet indexes files and, transitively, their imports. On a path or
// symbol conflict the first file given wins.
func newFileSet(files []protoreflect.FileDescriptor) *fileSet {
	fs := &fileSet{reg: new(protoregistry.Files)}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imps := fd.Imports()
		for i := 0; i < imps.Len(); i++ {
			if imp := imps.Get(i).FileDescriptor; imp != nil && !imp.IsPlaceholder() {
				add(imp)
			}
		}
		// A symbol conflict leaves the earlier file in charge of that
		// symbol; the file still counts for Snapshot.
		_ = fs.reg.RegisterFile(fd)
		fs.files = append(fs.files, fd)
	}
	for _, fd := range files {
		add(fd)
	}
	sort.Slice(fs.files, func(i, j int) bool { return fs.files[i].Path() < fs.files[j].Path() })
	return fs
}

func (fs *fileSet) method(service protoreflect.FullName, method protoreflect.Name) (protoreflect.MethodDescriptor, error) {
	d, err := fs.reg.FindDescriptorByName(service)
	if err != nil {
		return nil, notFoundf("no service %s", service)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, notFoundf("%s is %s, not a service", service, kindOf(d))
	}
	md := sd.Methods().ByName(method)
	if md == nil {
		var names []string
		for i := 0; i < sd.Methods().Len(); i++ {
			names = append(names, string(sd.Methods().Get(i).Name()))
		}
		return nil, notFoundf("service %s has no method %s (it has %s)", service, method, strings.Join(names, ", "))
	}
	return md, nil
}

func (fs *fileSet) message(name protoreflect.FullName) (protoreflect.MessageDescriptor, error) {
	d, err := fs.reg.FindDescriptorByName(name)
	if err != nil {
		return nil, notFoundf("no message %s", name)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, notFoundf("%s is %s, not a message", name, kindOf(d))
	}
	return md, nil
}

func (fs *fileSet) services() []protoreflect.ServiceDescriptor {
	var out []protoreflect.ServiceDescriptor
	for _, fd := range fs.files {
		for i := 0; i < fd.Services().Len(); i++ {
			out = append(out, fd.Services().Get(i))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FullName() < out[j].FullName() })
	return out
}

func kindOf(d protoreflect.Descriptor) string {
	switch d.(type) {
	case protoreflect.MessageDescriptor:
		return "a message"
	case protoreflect.EnumDescriptor:
		return "an enum"
	case protoreflect.EnumValueDescriptor:
		return "an enum value"
	case protoreflect.FieldDescriptor:
		return "a field"
	case protoreflect.OneofDescriptor:
		return "a oneof"
	case protoreflect.ServiceDescriptor:
		return "a service"
	case protoreflect.MethodDescriptor:
		return "a method"
	default:
		return "a descriptor"
	}
}

// staticSource serves a fixed set of files: .proto, protoset or a snapshot.
type staticSource struct {
	name string
	fs   *fileSet
}

func (s *staticSource) String() string { return s.name }

func (s *staticSource) FindMethod(_ context.Context, fullMethod string) (protoreflect.MethodDescriptor, error) {
	svc, m, err := SplitMethod(fullMethod)
	if err != nil {
		return nil, err
	}
	md, err := s.fs.method(svc, m)
	if err != nil {
		return nil, fmt.Errorf("method %s not found in %d files from %s: %w", fullMethod, len(s.fs.files), s.name, err)
	}
	return md, nil
}

func (s *staticSource) FindMessage(_ context.Context, fullName string) (protoreflect.MessageDescriptor, error) {
	md, err := s.fs.message(protoreflect.FullName(fullName))
	if err != nil {
		return nil, fmt.Errorf("message %s not found in %d files from %s: %w", fullName, len(s.fs.files), s.name, err)
	}
	return md, nil
}

func (s *staticSource) ListServices(context.Context) ([]protoreflect.ServiceDescriptor, error) {
	return s.fs.services(), nil
}

func (s *staticSource) Files() []protoreflect.FileDescriptor {
	return append([]protoreflect.FileDescriptor(nil), s.fs.files...)
}

// NewProtoFiles parses .proto files found through importPaths. The
// source is named after grpctap's flags ("--proto a.proto, b.proto"), as
// inspectors show where a schema came from. The well-known types (google/protobuf/*.proto) are built
// in. As a convenience a file named with an import path in front
// ("protos/a/b.proto" with import path "protos") is found too. With no import
// paths, file names are relative to the working directory.
func NewProtoFiles(importPaths, files []string) (Source, error) {
	name := "--proto " + strings.Join(files, ", ")
	if len(files) == 0 {
		return nil, errors.New("no .proto files given")
	}
	rel := make([]string, len(files))
	for i, f := range files {
		rel[i] = relativeToImportPath(importPaths, f)
	}
	p := protoparse.Parser{ImportPaths: importPaths}
	fds, err := p.ParseFiles(rel...)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	return &staticSource{name: name, fs: newFileSet(fromDesc(fds))}, nil
}

func relativeToImportPath(importPaths []string, file string) string {
	absFile, err := filepath.Abs(file)
	if err != nil {
		return file
	}
	for _, ip := range importPaths {
		if _, err := os.Stat(filepath.Join(ip, file)); err == nil {
			return file
		}
		absIP, err := filepath.Abs(ip)
		if err != nil {
			continue
		}
		r, err := filepath.Rel(absIP, absFile)
		if err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			if _, err := os.Stat(filepath.Join(ip, r)); err == nil {
				return filepath.ToSlash(r)
			}
		}
	}
	return file
}

// NewProtoset reads protoset files (--protoset): serialized
// google.protobuf.FileDescriptorSet, as written by
// `protoc --include_imports --descriptor_set_out`. A file present in several
// sets is taken from the first. Missing well-known imports are built in.
func NewProtoset(paths ...string) (Source, error) {
	if len(paths) == 0 {
		return nil, errors.New("no protoset files given")
	}
	name := "--protoset " + strings.Join(paths, ", ")
	merged := &descriptorpb.FileDescriptorSet{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read protoset: %w", err)
		}
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(raw, &set); err != nil {
			return nil, fmt.Errorf("protoset %s is not a serialized FileDescriptorSet: %w", p, err)
		}
		merged.File = append(merged.File, set.File...)
	}
	fs, err := linkSet(merged)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	return &staticSource{name: name, fs: fs}, nil
}

// NewFileDescriptorSet builds a Source from a serialized FileDescriptorSet,
// typically the bytes Decoder.Snapshot produced and a capture stored.
func NewFileDescriptorSet(raw []byte) (Source, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("saved descriptors are not a serialized FileDescriptorSet: %w", err)
	}
	fs, err := linkSet(&set)
	if err != nil {
		return nil, fmt.Errorf("link saved descriptors: %w", err)
	}
	return &staticSource{name: "the capture's saved descriptors", fs: fs}, nil
}

// linkSet links the files of a set in dependency order. Imports missing
// from the set are looked up among the built-in well-known types.
func linkSet(set *descriptorpb.FileDescriptorSet) (*fileSet, error) {
	protos := map[string]*descriptorpb.FileDescriptorProto{}
	var order []string
	for _, f := range set.GetFile() {
		if _, dup := protos[f.GetName()]; dup {
			continue
		}
		protos[f.GetName()] = f
		order = append(order, f.GetName())
	}
	reg := new(protoregistry.Files)
	linked := map[string]protoreflect.FileDescriptor{}
	visiting := map[string]bool{}
	var link func(name string) (protoreflect.FileDescriptor, error)
	link = func(name string) (protoreflect.FileDescriptor, error) {
		if fd, ok := linked[name]; ok {
			return fd, nil
		}
		fdp, ok := protos[name]
		if !ok {
			if fd, err := protoregistry.GlobalFiles.FindFileByPath(name); err == nil && strings.HasPrefix(name, "google/protobuf/") {
				linked[name] = fd
				_ = reg.RegisterFile(fd)
				return fd, nil
			}
			return nil, fmt.Errorf("file %s is imported but not in the set (protoc needs --include_imports)", name)
		}
		if visiting[name] {
			return nil, fmt.Errorf("import cycle through %s", name)
		}
		visiting[name] = true
		for _, dep := range fdp.GetDependency() {
			if _, err := link(dep); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		fd, err := protodesc.NewFile(fdp, reg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := reg.RegisterFile(fd); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		linked[name] = fd
		return fd, nil
	}
	var files []protoreflect.FileDescriptor
	for _, name := range order {
		fd, err := link(name)
		if err != nil {
			return nil, err
		}
		files = append(files, fd)
	}
	return newFileSet(files), nil
}

// fromDesc unwraps jhump/protoreflect descriptors.
func fromDesc(fds []*desc.FileDescriptor) []protoreflect.FileDescriptor {
	out := make([]protoreflect.FileDescriptor, len(fds))
	for i, fd := range fds {
		out[i] = fd.UnwrapFile()
	}
	return out
}
