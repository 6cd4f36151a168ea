package decode

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jhump/protoreflect/desc/protoparse"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/grpctap/grpctap/internal/stubserver"
)

func TestReflectionV1AlphaOnly(t *testing.T) {
	addr, _ := startBackend(t, false, true)
	d := newDecoder(t, WithDialer(dialInsecure))
	raw := goldenCases[0].input(t)
	r := d.Decode(bg(), Input{Method: placeOrder, Backend: addr, Raw: raw})
	if r.JSON == nil {
		t.Fatalf("no JSON through v1alpha: %s", r.Error)
	}
	if want := "reflection from " + addr; r.Source != want {
		t.Errorf("source = %q, want %q", r.Source, want)
	}
}

func TestReflectionAbsent(t *testing.T) {
	addr, _ := startBackend(t, false, false)
	d := newDecoder(t, WithDialer(dialInsecure))
	r := d.Decode(bg(), Input{Method: placeOrder, Backend: addr, Raw: appendVarintField(nil, 3, 1)})
	if r.JSON != nil || r.Schemaless == nil {
		t.Fatalf("want schemaless only, got %+v", r)
	}
	want := "reflection from " + addr + ": server does not support reflection (tried v1 and v1alpha)"
	if !strings.Contains(r.Error, want) {
		t.Errorf("error %q\ndoes not contain %q", r.Error, want)
	}
}

func TestReflectionBackendDown(t *testing.T) {
	addr, stop := startBackend(t, true, true)
	stop()
	src := NewReflection(mustDial(t, addr), addr, ReflectionTimeout(2*time.Second))
	_, err := src.FindMethod(bg(), placeOrder)
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "reflection from "+addr) {
		t.Fatalf("want a server failure naming %s, got %v", addr, err)
	}
}

func mustDial(t *testing.T, addr string) grpc.ClientConnInterface {
	t.Helper()
	conn, err := dialInsecure(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.(io.Closer).Close() })
	return conn
}

// Record with reflection, stop the backend, decode from the snapshot alone.
func TestSnapshotOutlivesBackend(t *testing.T) {
	addr, stop := startBackend(t, true, true)
	live := newDecoder(t, WithDialer(dialInsecure))
	var cases []goldenCase
	for _, c := range goldenCases {
		if !c.perSource && c.subtype == "" {
			cases = append(cases, c)
		}
	}
	want := map[string]Result{}
	for _, c := range cases {
		r := live.Decode(bg(), Input{Method: c.method, Backend: addr, Direction: c.dir, Raw: c.input(t)})
		r.Source = ""
		want[c.name] = r
	}
	snap, err := live.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap2, err := live.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if string(snap) != string(snap2) {
		t.Error("Snapshot is not deterministic")
	}
	stop()

	src, err := NewFileDescriptorSet(snap)
	if err != nil {
		t.Fatal(err)
	}
	later := newDecoder(t, WithSources(src))
	for _, c := range cases {
		r := later.Decode(bg(), Input{Method: c.method, Backend: addr, Direction: c.dir, Raw: c.input(t)})
		if r.Source != "the capture's saved descriptors" {
			t.Errorf("%s: source %q", c.name, r.Source)
		}
		r.Source = ""
		if got, w := mustJSON(t, r), mustJSON(t, want[c.name]); got != w {
			t.Errorf("%s: after the backend stopped\n got %s\nwant %s", c.name, got, w)
		}
	}
	// The snapshot holds the well-known imports, and no more than was learned.
	var paths []string
	for _, fd := range src.Files() {
		paths = append(paths, fd.Path())
	}
	if got := strings.Join(paths, " "); !strings.Contains(got, "google/protobuf/timestamp.proto") || !strings.Contains(got, "kitchen/v1/common.proto") {
		t.Errorf("snapshot files: %s", got)
	}
}

func TestSnapshotEmptyAndFromFiles(t *testing.T) {
	d := newDecoder(t)
	snap, err := d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewFileDescriptorSet(snap)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(src.Files()); n != 0 {
		t.Errorf("empty decoder snapshot has %d files", n)
	}
	d = newDecoder(t, WithSources(protoFilesSource(t)))
	snap, err = d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(protosetPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(snap) != string(want) {
		t.Error("snapshot of the .proto source differs from the protoset generated from it")
	}
}

// swappable serves descriptors that a test can replace while the server
// runs, to play a backend deployed with a new method.
type swappable struct {
	files atomic.Pointer[protoregistry.Files]
}

func (s *swappable) FindFileByPath(p string) (protoreflect.FileDescriptor, error) {
	return s.files.Load().FindFileByPath(p)
}

func (s *swappable) FindDescriptorByName(n protoreflect.FullName) (protoreflect.Descriptor, error) {
	return s.files.Load().FindDescriptorByName(n)
}

func parseKitchen(t *testing.T, edit func(string) string) *protoregistry.Files {
	t.Helper()
	p := protoparse.Parser{
		ImportPaths: []string{protoDir},
		Accessor: func(name string) (io.ReadCloser, error) {
			b, err := os.ReadFile(name)
			if err != nil {
				return nil, err
			}
			if filepath.ToSlash(name) == filepath.ToSlash(filepath.Join(protoDir, kitchenProto)) {
				b = []byte(edit(string(b)))
			}
			return io.NopCloser(strings.NewReader(string(b))), nil
		},
	}
	fds, err := p.ParseFiles(kitchenProto)
	if err != nil {
		t.Fatal(err)
	}
	return newFileSet(fromDesc(fds)).reg
}

func TestReflectionRefreshIsRateLimited(t *testing.T) {
	res := &swappable{}
	res.files.Store(parseKitchen(t, func(s string) string { return s }))
	var streams atomic.Int32
	srv := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		streams.Add(1)
		return h(srv, ss)
	}))
	reflectionv1.RegisterServerReflectionServer(srv, reflection.NewServerV1(reflection.ServerOptions{
		Services: serviceList{"kitchen.v1.KitchenService"}, DescriptorResolver: res,
	}))
	addr := stubserver.Serve(t, srv)
	src := NewReflection(mustDial(t, addr), addr, RefreshInterval(time.Hour))
	now := time.Unix(1_800_000_000, 0)
	src.now = func() time.Time { return now }
	const cancel = "/kitchen.v1.KitchenService/Cancel"

	step := func(name, method string, wantFound bool, wantStreams int32) {
		t.Helper()
		_, err := src.FindMethod(bg(), method)
		if found := err == nil; found != wantFound {
			t.Fatalf("%s: found=%v (err %v), want %v", name, found, err, wantFound)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: %v does not match ErrNotFound", name, err)
		}
		if got := streams.Load(); got != wantStreams {
			t.Fatalf("%s: %d reflection streams, want %d", name, got, wantStreams)
		}
	}
	step("first use fetches", placeOrder, true, 1)
	step("cached", placeOrder, true, 1)
	step("missing method refetches", cancel, false, 2)
	step("missing again within the interval", cancel, false, 2)
	res.files.Store(parseKitchen(t, func(s string) string {
		return strings.Replace(s, "rpc Watch(", "rpc Cancel(WatchRequest) returns (Receipt);\n  rpc Watch(", 1)
	}))
	step("deployed, but still within the interval", cancel, false, 2)
	now = now.Add(2 * time.Hour)
	step("after the interval the new method is found", cancel, true, 3)
	step("old methods still cached", placeOrder, true, 3)
	step("messages from the fetched files are cached", "/kitchen.v1.KitchenService/Watch", true, 3)

	if _, err := src.FindMessage(bg(), "kitchen.v1.Money"); err != nil {
		t.Fatal(err)
	}
	if got := streams.Load(); got != 3 {
		t.Errorf("FindMessage of a cached type opened a stream (%d)", got)
	}
	sds, err := src.ListServices(bg())
	if err != nil {
		t.Fatal(err)
	}
	if len(sds) != 1 || sds[0].FullName() != "kitchen.v1.KitchenService" || sds[0].Methods().Len() != 3 {
		t.Errorf("ListServices = %v", sds)
	}
}

func TestDecoderDialFailure(t *testing.T) {
	d := newDecoder(t, WithDialer(func(backend string) (grpc.ClientConnInterface, error) {
		return nil, errors.New("no route")
	}))
	r := d.Decode(bg(), Input{Method: placeOrder, Backend: "10.0.0.1:1", Raw: []byte{0x18, 1}})
	if want := "reflection from 10.0.0.1:1: dial: no route"; !strings.Contains(r.Error, want) {
		t.Errorf("error %q lacks %q", r.Error, want)
	}
}

func TestDecoderExplicitFilesWin(t *testing.T) {
	addr, _ := startBackend(t, true, true)
	d := newDecoder(t, WithSources(protosetSource(t)), WithDialer(dialInsecure))
	r := d.Decode(bg(), Input{Method: placeOrder, Backend: addr, Raw: []byte{0x18, 1}})
	if !strings.HasPrefix(r.Source, "--protoset") {
		t.Errorf("source = %q, want the protoset", r.Source)
	}
	sds, err := d.ListServices(bg(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(sds) != 1 {
		t.Errorf("services listed twice or not at all: %v", sds)
	}
}

func TestDecoderHonoursContext(t *testing.T) {
	addr, _ := startBackend(t, true, true)
	d := newDecoder(t, WithDialer(dialInsecure))
	ctx, cancel := context.WithCancel(bg())
	cancel()
	r := d.Decode(ctx, Input{Method: placeOrder, Backend: addr, Raw: []byte{0x18, 1}})
	if r.JSON != nil {
		t.Fatalf("decoded with a cancelled context")
	}
	// A cancelled caller must not poison the cache for the next one.
	r = d.Decode(bg(), Input{Method: placeOrder, Backend: addr, Raw: []byte{0x18, 1}})
	if r.JSON == nil {
		t.Fatalf("after a cancelled attempt: %s", r.Error)
	}
}

// Many goroutines decoding at once through one lazily-filled reflection
// cache: run under -race.
func TestDecoderConcurrent(t *testing.T) {
	addr, _ := startBackend(t, true, true)
	d := newDecoder(t, WithDialer(dialInsecure))
	var inputs []Input
	for _, c := range goldenCases {
		if c.subtype == "" && !c.perSource {
			inputs = append(inputs, Input{Method: c.method, Backend: addr, Direction: c.dir, Raw: c.input(t)})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8*len(inputs))
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, in := range inputs {
				r := d.Decode(bg(), in)
				if r.Schemaless == nil && r.JSON == nil {
					errs <- in.Method + ": " + r.Error
				}
				if _, err := d.Snapshot(); err != nil {
					errs <- err.Error()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
