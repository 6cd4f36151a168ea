package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// HeaderForward labels the calls that came through the forward proxy
// (HTTP CONNECT): observers see it among the request headers, with the
// value "tls" (intercepted TLS) or "h2c" (cleartext HTTP/2). The backend
// never sees it.
const HeaderForward = InternalHeaderPrefix + "forward"

// Upstream is where the calls of one forward-proxy connection go: the
// server a client asked for with CONNECT. A listener that takes CONNECT
// (package forward) hands it to grpc-go as the connection's AuthInfo (its
// credentials' ServerHandshake returns it), so every call on that
// connection carries it in its context (peer.FromContext) and the proxy
// forwards the call there instead of routing it: routes and the default
// backend apply to direct calls only, and the proxy answers no method of
// such a call itself (server reflection goes to the server too).
type Upstream struct {
	// Target is the host:port the client asked for; calls are recorded
	// with it as their backend, and it is the :authority sent.
	Target string
	// Addr is the host:port dialled (after --resolve); "" dials Target.
	Addr string
	// TLS dials the server over TLS (the client spoke TLS to grpctap),
	// verified as Options.ForwardTLS says, with ServerName as the name to
	// verify ("": Target's host).
	TLS        bool
	ServerName string
	credentials.CommonAuthInfo
}

// AuthType names grpctap's forward-proxy connections.
func (*Upstream) AuthType() string { return "grpctap-forward" }

// mode is the HeaderForward value for the upstream's calls.
func (u *Upstream) mode() string {
	if u.TLS {
		return "tls"
	}
	return "h2c"
}

// key tells upstreams apart in the pool: the same target reached another
// way (another address, TLS or not, another name) is another connection.
func (u *Upstream) key() string {
	var b strings.Builder
	b.WriteString(u.mode())
	b.WriteString("://")
	b.WriteString(u.Target)
	if u.Addr != "" && u.Addr != u.Target {
		b.WriteString(" via ")
		b.WriteString(u.Addr)
	}
	if u.ServerName != "" {
		b.WriteString(" name ")
		b.WriteString(u.ServerName)
	}
	return b.String()
}

// upstreamFrom returns the Upstream of the call's connection, if it came
// through the forward proxy.
func upstreamFrom(ctx context.Context) (*Upstream, bool) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	u, ok := pr.AuthInfo.(*Upstream)
	return u, ok && u != nil
}

// upstreams keeps the connections to forward-proxy targets and remembers
// how each target was last reached, so that the parts of grpctap that
// reach a recorded backend by name (Conn: schema learning by reflection)
// reach it as its calls did.
type upstreams struct {
	pool *pool
	tls  *tls.Config

	mu       sync.Mutex
	byTarget map[string]*Upstream
}

func newUpstreams(tlsCfg *tls.Config, maxMsg int, extra []grpc.DialOption) *upstreams {
	if tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &upstreams{pool: newPool(nil, maxMsg, extra), tls: tlsCfg, byTarget: map[string]*Upstream{}}
}

// conn returns the pooled connection to u.
func (us *upstreams) conn(u *Upstream) (*grpc.ClientConn, error) {
	us.mu.Lock()
	us.byTarget[u.Target] = u
	us.mu.Unlock()
	addr := u.Addr
	if addr == "" {
		addr = u.Target
	}
	// passthrough: the address is dialled as it is, resolved by the
	// dialler as a CONNECT proxy would, and the :authority is the target
	// the client named, whose host is the name verified.
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(u.Target)}
	if u.TLS {
		cfg := us.tls.Clone()
		cfg.ServerName = ""
		if host, _, _ := net.SplitHostPort(u.Target); u.ServerName != "" && !strings.EqualFold(u.ServerName, host) {
			// The client's TLS named another server than its CONNECT
			// (SNI): verify that name, which grpc-go then sends as the
			// :authority too (it refuses two different names).
			cfg.ServerName = u.ServerName
			opts = opts[:0]
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	return us.pool.getWith(u.key(), "passthrough:///"+addr, u.Target, opts...)
}

// known returns how target was last reached through the forward proxy.
func (us *upstreams) known(target string) (*Upstream, bool) {
	us.mu.Lock()
	defer us.mu.Unlock()
	u, ok := us.byTarget[target]
	return u, ok
}

// withForwardLabel returns md with HeaderForward set, as a copy when it
// changes.
func withForwardLabel(md metadata.MD, u *Upstream) metadata.MD {
	out := md.Copy()
	out.Set(HeaderForward, u.mode())
	return out
}
