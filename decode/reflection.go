package decode

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Defaults of a Reflection source.
const (
	DefaultRefreshInterval   = 30 * time.Second
	DefaultReflectionTimeout = 5 * time.Second
)

// ReflectionOption configures NewReflection.
type ReflectionOption func(*Reflection)

// RefreshInterval sets how long a failed lookup (a name the server did not
// know, or a server that failed) is remembered before the server is asked
// again. Default DefaultRefreshInterval (30s). This is what keeps a truly
// unknown method from costing one reflection round trip per decoded message.
func RefreshInterval(d time.Duration) ReflectionOption {
	return func(r *Reflection) { r.refresh = d }
}

// ReflectionTimeout bounds one reflection exchange. Default
// DefaultReflectionTimeout (5s).
func ReflectionTimeout(d time.Duration) ReflectionOption {
	return func(r *Reflection) { r.timeout = d }
}

// Reflection is a Source that asks a server over gRPC server reflection
// (v1, falling back to v1alpha). Nothing is fetched until a name is first
// needed; what was fetched is cached. A name missing from the cache (a new
// method, say) triggers a refetch of the file that defines it, at most once
// per RefreshInterval per name.
//
// Each fetch opens its own reflection stream and closes it before returning,
// so a Reflection holds no goroutines and needs no Close; the connection
// belongs to the caller.
type Reflection struct {
	conn    grpc.ClientConnInterface
	target  string
	refresh time.Duration
	timeout time.Duration
	now     func() time.Time

	fetching chan struct{} // holds a token while a fetch runs: one at a time

	mu      sync.Mutex
	fs      *fileSet
	misses  map[string]miss // by symbol
	downErr *miss           // last server-wide failure
}

type miss struct {
	at  time.Time
	err error
}

// NewReflection returns a reflection Source using conn. target names the
// server in errors (the backend address).
func NewReflection(conn grpc.ClientConnInterface, target string, opts ...ReflectionOption) *Reflection {
	r := &Reflection{
		conn:    conn,
		target:  target,
		refresh: DefaultRefreshInterval,
		timeout: DefaultReflectionTimeout,
		now:     time.Now,
		fs:      newFileSet(nil),
		misses:  map[string]miss{},

		fetching: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func (r *Reflection) String() string { return "reflection from " + r.target }

// FindMethod implements Source.
func (r *Reflection) FindMethod(ctx context.Context, fullMethod string) (protoreflect.MethodDescriptor, error) {
	svc, m, err := SplitMethod(fullMethod)
	if err != nil {
		return nil, err
	}
	var md protoreflect.MethodDescriptor
	err = r.lookup(ctx, "method "+fullMethod, string(svc), func(fs *fileSet) error {
		var err error
		md, err = fs.method(svc, m)
		return err
	})
	return md, err
}

// FindMessage implements Source.
func (r *Reflection) FindMessage(ctx context.Context, fullName string) (protoreflect.MessageDescriptor, error) {
	var md protoreflect.MessageDescriptor
	err := r.lookup(ctx, "message "+fullName, fullName, func(fs *fileSet) error {
		var err error
		md, err = fs.message(protoreflect.FullName(fullName))
		return err
	})
	return md, err
}

// ListServices asks the server for its services and fetches each one's
// file. The reflection service itself is left out.
func (r *Reflection) ListServices(ctx context.Context) ([]protoreflect.ServiceDescriptor, error) {
	if err := r.acquire(ctx); err != nil {
		return nil, err
	}
	names, err := withClient(r, ctx, func(c *grpcreflect.Client) ([]string, error) { return c.ListServices() })
	r.release()
	if err != nil {
		return nil, r.explain("services", err)
	}
	var out []protoreflect.ServiceDescriptor
	for _, n := range names {
		if n == "grpc.reflection.v1.ServerReflection" || n == "grpc.reflection.v1alpha.ServerReflection" {
			continue
		}
		var sd protoreflect.ServiceDescriptor
		err := r.lookup(ctx, "service "+n, n, func(fs *fileSet) error {
			d, err := fs.reg.FindDescriptorByName(protoreflect.FullName(n))
			if err != nil {
				return notFoundf("no service %s", n)
			}
			var ok bool
			if sd, ok = d.(protoreflect.ServiceDescriptor); !ok {
				return notFoundf("%s is %s, not a service", n, kindOf(d))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = append(out, sd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FullName() < out[j].FullName() })
	return out, nil
}

// Files implements Source: the files fetched so far.
func (r *Reflection) Files() []protoreflect.FileDescriptor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]protoreflect.FileDescriptor(nil), r.fs.files...)
}

// lookup finds what (e.g. "method /a.B/C") with find in the cache, fetching
// the file that defines symbol when it is not there. Failures are remembered
// per what for the refresh interval, server-wide ones for the whole server.
func (r *Reflection) lookup(ctx context.Context, what, symbol string, find func(*fileSet) error) error {
	r.mu.Lock()
	fs := r.fs
	r.mu.Unlock()
	if err := find(fs); err == nil {
		return nil
	}
	if err := r.recentFailure(what); err != nil {
		return err
	}

	if err := r.acquire(ctx); err != nil {
		return err
	}
	defer r.release()
	// Someone else may have fetched it, or failed to, while we waited.
	r.mu.Lock()
	fs = r.fs
	r.mu.Unlock()
	if err := find(fs); err == nil {
		return nil
	}
	if err := r.recentFailure(what); err != nil {
		return err
	}

	fd, err := withClient(r, ctx, func(c *grpcreflect.Client) (*desc.FileDescriptor, error) {
		return c.FileContainingSymbol(symbol)
	})
	now := r.now()
	if err != nil {
		err = r.explain(what, err)
		r.mu.Lock()
		if errors.Is(err, ErrNotFound) {
			r.misses[what] = miss{at: now, err: err}
		} else if ctx.Err() == nil {
			r.downErr = &miss{at: now, err: err}
		}
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	r.downErr = nil
	r.merge(fd)
	fs = r.fs
	r.mu.Unlock()
	if err := find(fs); err != nil {
		err = notFoundf("%s: %s not found: the server's current %s does not define it: %v", r, what, fd.GetName(), err)
		r.mu.Lock()
		r.misses[what] = miss{at: now, err: err}
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	delete(r.misses, what)
	r.mu.Unlock()
	return nil
}

// acquire waits for the right to fetch, or for ctx to end.
func (r *Reflection) acquire(ctx context.Context) error {
	select {
	case r.fetching <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: waiting for another fetch: %w", r, ctx.Err())
	}
}

func (r *Reflection) release() { <-r.fetching }

func (r *Reflection) recentFailure(what string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.downErr != nil && now.Sub(r.downErr.at) < r.refresh {
		return r.downErr.err
	}
	if m, ok := r.misses[what]; ok && now.Sub(m.at) < r.refresh {
		return m.err
	}
	return nil
}

// merge replaces cached files by the fetched file and its imports. Caller
// holds r.mu.
func (r *Reflection) merge(fd *desc.FileDescriptor) {
	fresh := map[string]bool{}
	var newest []protoreflect.FileDescriptor
	var walk func(f protoreflect.FileDescriptor)
	walk = func(f protoreflect.FileDescriptor) {
		if fresh[f.Path()] {
			return
		}
		fresh[f.Path()] = true
		newest = append(newest, f)
		for i := 0; i < f.Imports().Len(); i++ {
			if imp := f.Imports().Get(i).FileDescriptor; imp != nil && !imp.IsPlaceholder() {
				walk(imp)
			}
		}
	}
	walk(fd.UnwrapFile())
	all := newest
	for _, f := range r.fs.files {
		if !fresh[f.Path()] {
			all = append(all, f)
		}
	}
	r.fs = newFileSet(all)
}

// withClient runs call on a fresh reflection stream bounded by the timeout.
func withClient[T any](r *Reflection, ctx context.Context, call func(*grpcreflect.Client) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := grpcreflect.NewClientAuto(ctx, r.conn)
	defer c.Reset()
	return call(c)
}

// explain turns a reflection failure into an error that says why.
func (r *Reflection) explain(what string, err error) error {
	if grpcreflect.IsElementNotFoundError(err) {
		return notFoundf("%s: %s not found: %v", r, what, err)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", r, err)
	}
	switch st.Code() {
	case codes.NotFound:
		return notFoundf("%s: %s not found: %s", r, what, st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("%s: server does not support reflection (tried v1 and v1alpha): %s", r, st.Message())
	case codes.Unavailable:
		return fmt.Errorf("%s: server unavailable: %s", r, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: no answer within %s: %s", r, r.timeout, st.Message())
	default:
		return fmt.Errorf("%s: %s: %s", r, st.Code(), st.Message())
	}
}
