package proxy

import (
	"fmt"
	"sort"
	"strings"
)

// Route sends the calls whose method matches Prefix to Backend.
//
// Prefix is either a service name ("pkg.Service"), which matches every
// method of that service, or a full-method prefix beginning with "/"
// ("/pkg.Service/Method", or any leading part of one).
type Route struct {
	Prefix  string
	Backend string
}

// ParseRoute parses "PREFIX=ADDR" as given to --route.
func ParseRoute(s string) (Route, error) {
	prefix, addr, ok := strings.Cut(s, "=")
	prefix, addr = strings.TrimSpace(prefix), strings.TrimSpace(addr)
	if !ok || prefix == "" || addr == "" {
		return Route{}, fmt.Errorf("route %q: want PREFIX=ADDR, e.g. pkg.Service=127.0.0.1:9000", s)
	}
	if prefix == "/" {
		return Route{}, fmt.Errorf("route %q: prefix / matches everything; use --backend for the default", s)
	}
	return Route{Prefix: prefix, Backend: addr}, nil
}

// router picks a backend for a method: the longest matching prefix wins,
// else the default.
type router struct {
	routes []compiledRoute // longest match first
	def    string
}

type compiledRoute struct {
	match   string // full-method prefix
	backend string
}

func newRouter(def string, routes []Route) (*router, error) {
	r := &router{def: def}
	seen := map[string]string{}
	for _, rt := range routes {
		m := rt.Prefix
		if !strings.HasPrefix(m, "/") {
			// A service name matches its methods only: "/pkg.Service/".
			m = "/" + strings.TrimSuffix(m, "/") + "/"
		}
		if prev, ok := seen[m]; ok && prev != rt.Backend {
			return nil, fmt.Errorf("route %s is given twice, to %s and %s", rt.Prefix, prev, rt.Backend)
		}
		seen[m] = rt.Backend
		r.routes = append(r.routes, compiledRoute{match: m, backend: rt.Backend})
	}
	sort.SliceStable(r.routes, func(i, j int) bool { return len(r.routes[i].match) > len(r.routes[j].match) })
	return r, nil
}

// lookup returns the backend for method, or false when none matches.
func (r *router) lookup(method string) (string, bool) {
	for _, rt := range r.routes {
		if strings.HasPrefix(method, rt.match) {
			return rt.backend, true
		}
	}
	return r.def, r.def != ""
}

// explicit reports whether a route (not the default) matches method.
func (r *router) explicit(method string) bool {
	for _, rt := range r.routes {
		if strings.HasPrefix(method, rt.match) {
			return true
		}
	}
	return false
}

// names reports whether backend is the default or a route's backend.
func (r *router) names(backend string) bool {
	if backend == r.def {
		return backend != ""
	}
	for _, rt := range r.routes {
		if rt.backend == backend {
			return true
		}
	}
	return false
}

// backends lists every backend address the router can choose.
func (r *router) backends() []string {
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	add(r.def)
	for _, rt := range r.routes {
		add(rt.backend)
	}
	return out
}
