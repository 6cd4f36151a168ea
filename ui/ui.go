package ui

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/internal/hostcheck"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/store"
)

//go:embed static
var staticFS embed.FS

// ReplayFunc replays a recorded call against target ("" for its own
// backend) and returns the verdict and diff as a JSON-encodable value.
type ReplayFunc func(ctx context.Context, call *store.CallWithMessages, target string) (any, error)

// Options configure the inspector. Store is required; the zero value of
// every other field is its default.
type Options struct {
	// Store is the capture shown. Required.
	Store *store.Store
	// Recorder feeds /api/events. Default nil: the capture is polled for
	// changes every PollInterval instead (grpctap ui over a file another
	// process may be writing).
	Recorder *recorder.Recorder
	// Decoder decodes messages and lists services. Default: a decoder with
	// no schema source (every message shown schemaless).
	Decoder *decode.Decoder
	// Proxy is what the composer sends its calls through, with its own
	// forwarding handler (proxy.Open): they are routed and observed as any
	// call, and a call to a target the proxy does not route to is sent
	// there by the proxy's backend pool. Default nil: /api/invoke answers
	// 501.
	Proxy *proxy.Proxy
	// Observer records the inspector's replays (the composer's calls are
	// the proxy's own to observe). Default: Recorder.
	Observer proxy.Observer
	// GRPC is the proxy's gRPC listener, which the grpcurl commands of
	// GET /api/calls/{id}/grpcurl call. Default: unknown, and a command
	// names the address a gRPC call's client dialled (its :authority), with
	// -plaintext, or, for a gRPC-Web call, a shell variable to set.
	GRPC GRPCListener
	// Replay serves POST /api/calls/{id}/replay. Default: the call is sent
	// again with the replay package and compared with its recording.
	Replay ReplayFunc
	// DisableReplay turns POST /api/calls/{id}/replay off (501).
	DisableReplay bool
	// BackendTLS, when set, is used to dial backends the inspector reaches
	// itself (replays, collection runs); composer calls use the proxy's.
	// Default: plaintext.
	BackendTLS *tls.Config
	// Token, when set, is required of every request: an
	// "Authorization: Bearer" header, or a ?token= query parameter (which
	// also sets a cookie for the page). It grants everything the inspector
	// does. Default "": no token, and then only requests whose Host is a
	// loopback name are served (against DNS rebinding).
	Token string
	// ReadOnlyToken, when set, is accepted the same ways as Token but
	// grants reading only: GET and HEAD are served, every other request
	// (composer calls, replays, collection writes) gets 403. With it set,
	// every request needs one of the two tokens, and without Token none
	// may write. It must differ from Token. Default "": none.
	ReadOnlyToken string
	// ReadOnly makes every request read-only, whatever token it carries:
	// the capture, services and live feed are shown, and every request
	// that would send a call or change something gets 403. Default false.
	ReadOnly bool
	// TLS, when set, makes Start serve HTTPS with it (a config with
	// Certificates or GetCertificate). Default nil: plain HTTP.
	TLS *tls.Config
	// Logger gets warnings. Default slog.Default().
	Logger *slog.Logger
	// EventInterval is how often /api/events sends a batch. Default 250ms.
	EventInterval time.Duration
	// PollInterval is how often the capture is polled without a Recorder.
	// Default 1s.
	PollInterval time.Duration
	// InvokeTimeout bounds each composer call. Default 60s.
	InvokeTimeout time.Duration
}

// UI is the inspector's http.Handler. Close it to end live feeds and
// composer calls.
type UI struct {
	opts   Options
	dec    *decode.Decoder
	ownDec bool
	mux    *http.ServeMux
	log    *slog.Logger

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // live feeds

	mu     sync.Mutex
	closed bool // Close was called: no new live feeds, calls or replays

	replays replayers
}

// New returns the inspector for opts.
func New(opts Options) (*UI, error) {
	if opts.Store == nil {
		return nil, errors.New("ui: Options.Store is required")
	}
	if opts.ReadOnlyToken != "" && opts.ReadOnlyToken == opts.Token {
		return nil, errors.New("ui: Options.ReadOnlyToken must differ from Options.Token")
	}
	if t := opts.TLS; t != nil && len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
		return nil, errors.New("ui: Options.TLS has no certificate")
	}
	if opts.EventInterval <= 0 {
		opts.EventInterval = 250 * time.Millisecond
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.InvokeTimeout <= 0 {
		opts.InvokeTimeout = 60 * time.Second
	}
	if opts.Observer == nil && opts.Recorder != nil {
		opts.Observer = opts.Recorder
	}
	u := &UI{opts: opts, dec: opts.Decoder, mux: http.NewServeMux(), log: opts.Logger,
		closing: make(chan struct{}), replays: replayers{byDest: map[string]*replay.Replayer{}}}
	if u.opts.Replay == nil && !opts.DisableReplay {
		u.opts.Replay = u.builtinReplay
	}
	if u.log == nil {
		u.log = slog.Default()
	}
	if u.dec == nil {
		u.dec, u.ownDec = decode.New(), true
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	files := http.FileServerFS(static)
	u.mux.Handle("GET /", files)
	u.mux.HandleFunc("GET /api/calls", u.listCalls)
	u.mux.HandleFunc("GET /api/calls/{id}", u.getCall)
	u.mux.HandleFunc("GET /api/stats", u.stats)
	u.mux.HandleFunc("GET /api/calls/{id}/messages/{seq}", u.getMessage)
	u.mux.HandleFunc("GET /api/calls/{id}/messages/{seq}/raw", u.getRaw)
	u.mux.HandleFunc("POST /api/calls/{id}/replay", u.replay)
	u.mux.HandleFunc("GET /api/calls/{id}/grpcurl", u.grpcurl)
	u.mux.HandleFunc("GET /api/events", u.events)
	u.mux.HandleFunc("GET /api/services", u.services)
	u.mux.HandleFunc("GET /api/info", u.info)
	u.mux.HandleFunc("POST /api/invoke", u.invoke)
	u.mux.HandleFunc("GET /api/invoke/live", u.invokeLive)
	u.mux.HandleFunc("GET /api/collections", u.listCollections)
	u.mux.HandleFunc("POST /api/collections", u.createCollection)
	u.mux.HandleFunc("GET /api/collections/{id}", u.getCollection)
	u.mux.HandleFunc("PUT /api/collections/{id}", u.updateCollection)
	u.mux.HandleFunc("DELETE /api/collections/{id}", u.deleteCollection)
	u.mux.HandleFunc("POST /api/collections/{id}/run", u.runCollection)
	u.mux.HandleFunc("POST /api/calls/{id}/save", u.saveCall)
	return u, nil
}

// Close ends every live feed and live composer call, and waits for
// them. The Store, Recorder, Decoder and Proxy stay open: they
// are the caller's.
func (u *UI) Close(ctx context.Context) error {
	u.closeOnce.Do(func() { close(u.closing) })
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	var errs []error
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	errs = append(errs, u.replays.close())
	if u.ownDec {
		errs = append(errs, u.dec.Close())
	}
	return errors.Join(errs...)
}

// enter registers a long-running request with Close; false once closed.
func (u *UI) enter() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false
	}
	u.wg.Add(1)
	return true
}

// untilClosed returns a context that ends with ctx or when the UI is
// closed, for a request that sends calls.
func (u *UI) untilClosed(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-u.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

const tokenCookie = "grpctap_token"

// access is what a request may do.
type access int

const (
	accessNone access = iota // no valid token
	accessRead               // GET and HEAD only
	accessFull               // everything
)

type accessKey struct{}

// requestAccess is the access ServeHTTP granted r.
func requestAccess(r *http.Request) access {
	a, _ := r.Context().Value(accessKey{}).(access)
	return a
}

// ServeHTTP applies the access rules, then serves the API or the page.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	a := accessFull
	if u.opts.Token != "" || u.opts.ReadOnlyToken != "" {
		if a = u.authorize(w, r); a == accessNone {
			writeErr(w, http.StatusUnauthorized, "a token is required: open the URL grpctap printed (with ?token=), or send 'Authorization: Bearer TOKEN'")
			return
		}
	} else if !hostcheck.Loopback(r.Host) {
		writeErr(w, http.StatusForbidden, "this inspector answers only to a loopback Host (localhost, 127.0.0.1, [::1])")
		return
	}
	if u.opts.ReadOnly {
		a = accessRead
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
			writeErr(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
			writeErr(w, http.StatusForbidden, "cross-site request refused")
			return
		}
		// Only GET and HEAD read; every other request sends a call or
		// changes something, so reading access stops here, whatever the
		// endpoint (those added later too).
		if a != accessFull {
			writeErr(w, http.StatusForbidden, u.readOnlyReason())
			return
		}
	}
	u.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accessKey{}, a)))
}

// readOnlyReason says why a request that writes was refused.
func (u *UI) readOnlyReason() string {
	const what = "it shows the capture but sends no calls (composer, replay) and changes nothing (collections)"
	if u.opts.ReadOnly {
		return "this inspector is read-only: " + what
	}
	return "this token grants read access only: " + what
}

// authorize returns what the request's token allows. A token in the URL
// (?token=, what grpctap prints) comes first and is kept in a cookie for
// the page, replacing the one it had; then an Authorization header; then
// the cookie.
func (u *UI) authorize(w http.ResponseWriter, r *http.Request) access {
	if q := r.URL.Query().Get("token"); q != "" {
		if a := u.tokenAccess(q); a != accessNone {
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: q, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			return a
		}
	}
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if a := u.tokenAccess(b); a != accessNone {
			return a
		}
	}
	if c, err := r.Cookie(tokenCookie); err == nil {
		return u.tokenAccess(c.Value)
	}
	return accessNone
}

// tokenAccess is what token s allows.
func (u *UI) tokenAccess(s string) access {
	eq := func(want string) bool {
		return want != "" && subtle.ConstantTimeCompare([]byte(s), []byte(want)) == 1
	}
	switch {
	case eq(u.opts.Token):
		return accessFull
	case eq(u.opts.ReadOnlyToken):
		return accessRead
	}
	return accessNone
}

func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && strings.EqualFold(u.Host, host)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// ErrorBody is the body of every API error.
type ErrorBody struct {
	Error string `json:"error"`
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorBody{Error: msg})
}

// info tells the page what this inspector can do.
func (u *UI) info(w http.ResponseWriter, r *http.Request) {
	var backends []string
	if u.opts.Proxy != nil {
		backends = u.opts.Proxy.Backends()
	}
	if backends == nil {
		backends = []string{}
	}
	proxies, err := u.opts.Store.Proxies(r.Context())
	if err != nil {
		proxies = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"db":     u.opts.Store.Path(),
		"engine": u.opts.Store.Kind(),
		// proxies: the names the capture's calls were recorded under;
		// more than one is a fleet (the page shows a proxy column and
		// filter).
		"proxies":   proxies,
		"live":      u.opts.Recorder != nil,
		"composer":  u.opts.Proxy != nil,
		"recording": u.opts.Observer != nil,
		"replay":    u.opts.Replay != nil,
		"backends":  backends,
		// read_only: this request may only read (the page disables
		// sending, replaying and saving).
		"read_only": requestAccess(r) != accessFull,
	})
}
