package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/grpctap/grpctap/decode"
)

// MethodInfo is a method as /api/services shows it.
type MethodInfo struct {
	decode.MethodSchema
	// RequestTemplate is a valid request as it stands (decode.Template);
	// RequestHints are examples of the fields it leaves out or empty.
	RequestTemplate  json.RawMessage       `json:"request_template"`
	RequestHints     []decode.TemplateHint `json:"request_hints"`
	ResponseTemplate json.RawMessage       `json:"response_template"`
}

// ServiceInfo is a service and its methods.
type ServiceInfo struct {
	Name    string       `json:"name"`
	Methods []MethodInfo `json:"methods"`
}

// BackendServices is what one backend offers.
type BackendServices struct {
	// Backend is the address; "" for the schemas of explicit sources
	// (--proto, --protoset) and of the capture, which hold for any backend.
	Backend  string        `json:"backend"`
	Services []ServiceInfo `json:"services"`
	// Error says why some source could not be read (reflection off or
	// failing); the services of the others are still listed.
	Error string `json:"error,omitempty"`
}

// ServicesAnswer is the body of GET /api/services.
type ServicesAnswer struct {
	Backends []BackendServices `json:"backends"`
	// Types describes every message type the methods use, nested ones
	// included, by full name.
	Types map[string]decode.MessageSchema `json:"types"`
}

// backendsToList are the proxy's backends, else those of recorded calls.
func (u *UI) backendsToList(ctx context.Context) []string {
	if u.opts.Proxy != nil {
		if b := u.opts.Proxy.Backends(); len(b) > 0 {
			return b
		}
	}
	b, _ := u.opts.Store.Backends(ctx)
	return b
}

// services serves GET /api/services.
func (u *UI) services(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ans := ServicesAnswer{Backends: []BackendServices{}, Types: map[string]decode.MessageSchema{}}
	backends := u.backendsToList(ctx)
	if len(backends) == 0 {
		backends = []string{""}
	}
	for _, b := range backends {
		sds, err := u.dec.ListServices(ctx, b)
		bs := BackendServices{Backend: b, Services: []ServiceInfo{}}
		if err != nil {
			bs.Error = err.Error()
		}
		for _, sd := range sds {
			si := ServiceInfo{Name: string(sd.FullName()), Methods: []MethodInfo{}}
			for i := 0; i < sd.Methods().Len(); i++ {
				md := sd.Methods().Get(i)
				si.Methods = append(si.Methods, MethodInfo{
					MethodSchema:     decode.DescribeMethod(md),
					RequestTemplate:  decode.Template(md.Input()),
					RequestHints:     decode.TemplateHints(md.Input()),
					ResponseTemplate: decode.Template(md.Output()),
				})
				describeTypes(md.Input(), ans.Types)
				describeTypes(md.Output(), ans.Types)
			}
			bs.Services = append(bs.Services, si)
		}
		sort.Slice(bs.Services, func(i, j int) bool { return bs.Services[i].Name < bs.Services[j].Name })
		ans.Backends = append(ans.Backends, bs)
	}
	writeJSON(w, http.StatusOK, ans)
}

// describeTypes adds md and every message type reachable from its fields.
func describeTypes(md protoreflect.MessageDescriptor, into map[string]decode.MessageSchema) {
	name := string(md.FullName())
	if _, ok := into[name]; ok {
		return
	}
	into[name] = decode.DescribeMessage(md)
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if m := fd.Message(); m != nil {
			describeTypes(m, into)
		}
	}
}
