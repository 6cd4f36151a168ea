// Package selfreflect is grpctap's own gRPC server reflection (v1 and
// v1alpha): the proxy answers a client's reflection calls itself, with the
// schemas of every backend it routes to and those given to grpctap, merged,
// so that a client (grpcurl, say) sees every service it can call through
// the proxy, whichever backend serves it.
//
// Each reflection stream is answered from a fresh look: every backend is
// asked by reflection, at once, through the proxy's pooled connections and
// with the client's request headers; a backend that does not answer in time
// is left out of that stream's answers, the others are not. A service is
// listed when the proxy routes it to a backend that has it; a service of
// the given files (--proto, --protoset) when the proxy routes it anywhere.
// The protocol itself is grpc-go's reflection server over the merged
// schemas. It knows nothing of storage.
package selfreflect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jhump/protoreflect/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	v1pb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The methods Handlers answers.
const (
	MethodV1      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	MethodV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// DefaultTimeout bounds asking one backend for its schemas, unless
// Options.Timeout says otherwise.
const DefaultTimeout = 5 * time.Second

// Backends is what the answers need of the proxy; *proxy.Proxy has it.
type Backends interface {
	// Backends lists every backend address calls may go to.
	Backends() []string
	// Route returns the backend a full method is routed to.
	Route(method string) (backend string, ok bool)
	// Conn returns the proxy's connection to a backend.
	Conn(backend string) (*grpc.ClientConn, error)
}

// Options configure Handlers. The zero value of each field is its default.
type Options struct {
	// Files are the schemas given to grpctap (--proto, --protoset). Their
	// services are listed when the proxy routes them to any backend, and
	// they win over a backend's file of the same path or a backend's
	// symbol of the same name, as they do in decoding. Default: none.
	Files []protoreflect.FileDescriptor
	// Timeout bounds asking one backend. Default: DefaultTimeout.
	Timeout time.Duration
	// Logger gets one line for each backend left out of an answer.
	// Default: slog.Default().
	Logger *slog.Logger
}

// Handlers returns the handlers of MethodV1 and MethodV1Alpha, for
// proxy.Options.Own, answering from what b's backends and o.Files know.
// Their streams carry protobuf messages and their contexts the headers to
// send backends (as the proxy's Own handlers get them).
func Handlers(b Backends, o Options) map[string]grpc.StreamHandler {
	a := &answerer{b: b, given: newLayer(o.Files), timeout: o.Timeout, log: o.Logger}
	if a.timeout <= 0 {
		a.timeout = DefaultTimeout
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	return map[string]grpc.StreamHandler{MethodV1: a.serveV1, MethodV1Alpha: a.serveV1Alpha}
}

type answerer struct {
	b       Backends
	given   *layer
	timeout time.Duration
	log     *slog.Logger
}

func (a *answerer) serveV1(_ any, ss grpc.ServerStream) error {
	srv := reflection.NewServerV1(a.look(ss.Context()).options())
	return srv.ServerReflectionInfo(&grpc.GenericServerStream[v1pb.ServerReflectionRequest, v1pb.ServerReflectionResponse]{ServerStream: ss})
}

func (a *answerer) serveV1Alpha(_ any, ss grpc.ServerStream) error {
	srv := reflection.NewServer(a.look(ss.Context()).options())
	return srv.ServerReflectionInfo(&grpc.GenericServerStream[v1alphapb.ServerReflectionRequest, v1alphapb.ServerReflectionResponse]{ServerStream: ss})
}

// own is what grpctap itself serves: both versions of reflection.
var own = newLayer([]protoreflect.FileDescriptor{
	v1pb.File_grpc_reflection_v1_reflection_proto,
	v1alphapb.File_grpc_reflection_v1alpha_reflection_proto,
})

// look asks every backend for its schemas, at once, and merges them with
// the given files: grpctap's own services first, then the given files,
// then the backends in the proxy's order.
func (a *answerer) look(ctx context.Context) *merged {
	backends := a.b.Backends()
	found := make([][]protoreflect.ServiceDescriptor, len(backends))
	errs := make([]error, len(backends))
	var wg sync.WaitGroup
	for i, be := range backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			found[i], errs[i] = a.ask(ctx, be)
		}()
	}
	wg.Wait()

	m := &merged{layers: []*layer{own, a.given}, services: map[string]grpc.ServiceInfo{}}
	for _, sd := range own.services {
		m.services[string(sd.FullName())] = grpc.ServiceInfo{}
	}
	for _, sd := range a.given.services {
		if a.routed(sd, func(string) bool { return true }) {
			m.services[string(sd.FullName())] = grpc.ServiceInfo{}
		}
	}
	for i, be := range backends {
		if errs[i] != nil {
			a.log.Info("server reflection: a backend's services are left out of grpctap's answer", "backend", be, "err", errs[i])
		}
		var files []protoreflect.FileDescriptor
		for _, sd := range found[i] {
			if a.routed(sd, func(to string) bool { return to == be }) {
				files = append(files, sd.ParentFile())
				m.services[string(sd.FullName())] = grpc.ServiceInfo{}
			}
		}
		m.layers = append(m.layers, newLayer(files))
	}
	return m
}

// routed reports whether a method of sd (or, without methods, the service
// itself) is routed to a backend that to accepts.
func (a *answerer) routed(sd protoreflect.ServiceDescriptor, to func(string) bool) bool {
	prefix := "/" + string(sd.FullName()) + "/"
	ms := sd.Methods()
	if ms.Len() == 0 {
		be, ok := a.b.Route(prefix)
		return ok && to(be)
	}
	for i := 0; i < ms.Len(); i++ {
		if be, ok := a.b.Route(prefix + string(ms.Get(i).Name())); ok && to(be) {
			return true
		}
	}
	return false
}

// ask returns the services backend lists, each with its file, except the
// reflection services. A service whose file the backend cannot give is
// left out; the error says which, with the services found.
func (a *answerer) ask(ctx context.Context, backend string) ([]protoreflect.ServiceDescriptor, error) {
	cc, err := a.b.Conn(backend)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	c := grpcreflect.NewClientAuto(ctx, cc)
	defer c.Reset()
	names, err := c.ListServices()
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	var out []protoreflect.ServiceDescriptor
	var errs []error
	for _, n := range names {
		if own.services[protoreflect.FullName(n)] != nil {
			continue
		}
		fd, err := c.FileContainingSymbol(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", n, err))
			continue
		}
		sd := fd.UnwrapFile().Services().ByName(protoreflect.FullName(n).Name())
		if sd == nil || sd.FullName() != protoreflect.FullName(n) {
			errs = append(errs, fmt.Errorf("service %s: not in %s, the file the backend gave for it", n, fd.GetName()))
			continue
		}
		out = append(out, sd)
	}
	return out, errors.Join(errs...)
}

// merged is what one reflection stream is answered from: layers of files
// asked in order, the first that knows a name or path answering.
type merged struct {
	layers   []*layer
	services map[string]grpc.ServiceInfo // the names listed
}

func (m *merged) options() reflection.ServerOptions {
	return reflection.ServerOptions{Services: m, DescriptorResolver: m, ExtensionResolver: m}
}

// GetServiceInfo lists the services; only the names are used.
func (m *merged) GetServiceInfo() map[string]grpc.ServiceInfo { return m.services }

// FindFileByPath implements protodesc.Resolver.
func (m *merged) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	for _, l := range m.layers {
		if fd, err := l.files.FindFileByPath(path); err == nil {
			return fd, nil
		}
	}
	return nil, fmt.Errorf("no file %q in the schemas of grpctap's routed backends or of the .proto files and protosets given to it: %w", path, protoregistry.NotFound)
}

// FindDescriptorByName implements protodesc.Resolver.
func (m *merged) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, l := range m.layers {
		if d, err := l.files.FindDescriptorByName(name); err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("no symbol %s in the schemas of grpctap's routed backends or of the .proto files and protosets given to it: %w", name, protoregistry.NotFound)
}

// FindExtensionByName implements protoregistry.ExtensionTypeResolver.
func (m *merged) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	for _, l := range m.layers {
		if xt, err := l.types.FindExtensionByName(name); err == nil {
			return xt, nil
		}
	}
	return nil, fmt.Errorf("no extension %s in the schemas of grpctap's routed backends or of the .proto files and protosets given to it: %w", name, protoregistry.NotFound)
}

// FindExtensionByNumber implements protoregistry.ExtensionTypeResolver.
func (m *merged) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	for _, l := range m.layers {
		if xt, err := l.types.FindExtensionByNumber(message, field); err == nil {
			return xt, nil
		}
	}
	return nil, fmt.Errorf("no extension %d of %s in the schemas of grpctap's routed backends or of the .proto files and protosets given to it: %w", field, message, protoregistry.NotFound)
}

// RangeExtensionsByMessage calls f for each extension of message, once per
// field number, from the first layer that has it.
func (m *merged) RangeExtensionsByMessage(message protoreflect.FullName, f func(protoreflect.ExtensionType) bool) {
	seen := map[protoreflect.FieldNumber]bool{}
	var all []protoreflect.ExtensionType
	for _, l := range m.layers {
		l.types.RangeExtensionsByMessage(message, func(xt protoreflect.ExtensionType) bool {
			if n := xt.TypeDescriptor().Number(); !seen[n] {
				seen[n] = true
				all = append(all, xt)
			}
			return true
		})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].TypeDescriptor().Number() < all[j].TypeDescriptor().Number() })
	for _, xt := range all {
		if !f(xt) {
			return
		}
	}
}

// layer is the files of one source (the given files, or one backend's),
// with their imports, indexed; a source's files link with each other, so
// one registry holds them. Where two files of a source share a path or a
// name, the first keeps it.
type layer struct {
	files    *protoregistry.Files
	types    *protoregistry.Types
	services map[protoreflect.FullName]protoreflect.ServiceDescriptor
}

func newLayer(files []protoreflect.FileDescriptor) *layer {
	l := &layer{files: new(protoregistry.Files), types: new(protoregistry.Types), services: map[protoreflect.FullName]protoreflect.ServiceDescriptor{}}
	for _, fd := range files {
		l.add(fd)
	}
	return l
}

func (l *layer) add(fd protoreflect.FileDescriptor) {
	if fd == nil || fd.IsPlaceholder() {
		return
	}
	if _, err := l.files.FindFileByPath(fd.Path()); err == nil {
		return
	}
	imps := fd.Imports()
	for i := 0; i < imps.Len(); i++ {
		l.add(imps.Get(i).FileDescriptor)
	}
	if err := l.files.RegisterFile(fd); err != nil {
		return // a name an earlier file of this source has: that file keeps it
	}
	for i := 0; i < fd.Services().Len(); i++ {
		sd := fd.Services().Get(i)
		l.services[sd.FullName()] = sd
	}
	rangeExtensions(fd.Extensions(), fd.Messages(), func(xd protoreflect.ExtensionDescriptor) {
		// An extension number an earlier file took stays with that file.
		_ = l.types.RegisterExtension(dynamicpb.NewExtensionType(xd))
	})
}

// rangeExtensions calls f for each extension declared in xs and in the
// messages ms, nested ones included.
func rangeExtensions(xs protoreflect.ExtensionDescriptors, ms protoreflect.MessageDescriptors, f func(protoreflect.ExtensionDescriptor)) {
	for i := 0; i < xs.Len(); i++ {
		f(xs.Get(i))
	}
	for i := 0; i < ms.Len(); i++ {
		rangeExtensions(ms.Get(i).Extensions(), ms.Get(i).Messages(), f)
	}
}
