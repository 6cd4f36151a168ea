package webbridge

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/proxy"
)

// Schemas tells the bridge the message types of the methods it forwards,
// so that gRPC-Web JSON calls (application/grpc-web+json) reach backends as
// protobuf, which every gRPC backend speaks, and their answers go back to
// the client as JSON.
type Schemas interface {
	// FindMethod returns the descriptor of method ("/pkg.Service/Method").
	FindMethod(ctx context.Context, method string) (protoreflect.MethodDescriptor, error)
	// FindMessage returns the message type fullName as the backend of
	// method knows it: the types packed in google.protobuf.Any.
	FindMessage(ctx context.Context, method, fullName string) (protoreflect.MessageDescriptor, error)
}

// DecoderSchemas returns the Schemas dec knows for the backend that route
// picks for each method (proxy.(*Proxy).Route): explicit files first, then
// that backend's server reflection. route may be nil: explicit files only.
func DecoderSchemas(dec *decode.Decoder, route func(method string) (backend string, ok bool)) Schemas {
	return &decoderSchemas{dec: dec, route: route}
}

type decoderSchemas struct {
	dec   *decode.Decoder
	route func(string) (string, bool)
}

func (s *decoderSchemas) backend(method string) string {
	if s.route == nil {
		return ""
	}
	b, _ := s.route(method)
	return b
}

func (s *decoderSchemas) FindMethod(ctx context.Context, method string) (protoreflect.MethodDescriptor, error) {
	md, _, err := s.dec.FindMethod(ctx, method, s.backend(method))
	return md, err
}

func (s *decoderSchemas) FindMessage(ctx context.Context, method, fullName string) (protoreflect.MessageDescriptor, error) {
	return s.dec.FindMessage(ctx, fullName, s.backend(method))
}

// schemaTimeout bounds the look-up of a method's schema before a JSON call
// is forwarded (the first call of a method may wait for server reflection).
const schemaTimeout = 5 * time.Second

// maxJSONMessage bounds one JSON request message and its protobuf
// translation; the proxy's own default limit.
const maxJSONMessage = proxy.DefaultMaxMsgSize

// jsonCall is one gRPC-Web JSON call. With the method's schema (in, out
// set) the request messages become protobuf on their way to grpc-go, the
// response messages JSON on their way back, and the call is forwarded as
// application/grpc. Without it the call is forwarded as
// application/grpc+json unchanged, and a failure says why.
type jsonCall struct {
	method  string
	schemas Schemas
	ctx     context.Context
	cancel  context.CancelFunc
	in, out protoreflect.MessageType // nil: forwarded as is
	why     string                   // why the call was forwarded as is

	mu  sync.Mutex
	err *callError // the first transcoding failure
}

type callError struct {
	code codes.Code
	msg  string
}

func (e *callError) Error() string { return e.msg }

// isJSONCall says whether a gRPC request (as grpcRequest made it) carries
// JSON messages.
func isJSONCall(g *http.Request) bool {
	ct, _, _ := strings.Cut(g.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(ct), ctGRPC+"+json")
}

// prepareJSON readies a JSON call: it returns the request and the response
// writer to hand grpc-go, and end, to call with the final response header
// (grpc-go's view) once grpc-go's handler has returned, before the response
// is finished.
func (b *Bridge) prepareJSON(g *http.Request, w http.ResponseWriter) (_ *http.Request, _ http.ResponseWriter, end func(http.Header)) {
	ctx, cancel := context.WithCancel(g.Context())
	c := &jsonCall{method: g.URL.Path, schemas: b.schemas, ctx: ctx, cancel: cancel}
	g = g.WithContext(ctx)
	if b.schemas == nil {
		c.why = "the bridge was given no schemas"
	} else {
		lctx, lcancel := context.WithTimeout(ctx, schemaTimeout)
		md, err := b.schemas.FindMethod(lctx, c.method)
		lcancel()
		if err != nil {
			c.why = err.Error()
		} else {
			c.in, c.out = dynamicpb.NewMessageType(md.Input()), dynamicpb.NewMessageType(md.Output())
		}
	}
	if c.in == nil {
		return g, w, func(h http.Header) { c.end(h); cancel() }
	}
	enc := g.Header.Get("Grpc-Encoding")
	// The backend gets uncompressed protobuf, and so answers uncompressed.
	g.Header.Del("Grpc-Encoding")
	g.Header.Set("Content-Type", ctGRPC)
	g.Body = &readCloser{Reader: &jsonRequestBody{src: g.Body, c: c, encoding: enc}, Closer: g.Body}
	return g, &jsonResponse{next: w, c: c}, func(h http.Header) { c.end(h); cancel() }
}

// fail records the call's first transcoding failure and ends the call.
func (c *jsonCall) fail(code codes.Code, format string, a ...any) error {
	e := &callError{code: code, msg: "grpctap: " + fmt.Sprintf(format, a...)}
	c.mu.Lock()
	if c.err == nil {
		c.err = e
	}
	c.mu.Unlock()
	c.cancel()
	return e
}

// end sets the call's final status in h: a transcoding failure replaces
// whatever grpc-go answered, and a call forwarded as is that failed says
// that grpctap had no schema for it.
func (c *jsonCall) end(h http.Header) {
	setJSONContentType(h)
	c.mu.Lock()
	e := c.err
	c.mu.Unlock()
	if e != nil {
		h.Set("Grpc-Status", strconv.Itoa(int(e.code)))
		h.Set("Grpc-Message", encodeGrpcMessage(e.msg))
		h.Del("Grpc-Status-Details-Bin")
		return
	}
	if c.in != nil {
		return
	}
	if st := h.Get("Grpc-Status"); st != "" && st != "0" {
		msg := decodeGrpcMessage(h.Get("Grpc-Message"))
		if msg != "" {
			msg += " "
		}
		msg += "(grpctap forwarded this gRPC-Web JSON call unchanged, as application/grpc+json, because it has no schema for " +
			c.method + ": " + c.why + "; most backends accept only protobuf: give grpctap the method's schema, by server reflection or from .proto files)"
		h.Set("Grpc-Message", encodeGrpcMessage(msg))
	}
}

// setJSONContentType makes the response content type application/grpc+json
// when grpc-go answered protobuf, so that the client gets
// application/grpc-web+json.
func setJSONContentType(h http.Header) {
	if ct := h.Get("Content-Type"); ct == ctGRPC || ct == ctGRPC+"+proto" {
		h.Set("Content-Type", ctGRPC+"+json")
	}
}

// resolver finds the types packed in google.protobuf.Any: the backend's
// first, then those compiled into grpctap (well-known and google.rpc types).
type resolver struct{ c *jsonCall }

func (r resolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	md, err := r.c.schemas.FindMessage(r.c.ctx, r.c.method, string(name))
	if err == nil {
		return dynamicpb.NewMessageType(md), nil
	}
	if mt, gerr := protoregistry.GlobalTypes.FindMessageByName(name); gerr == nil {
		return mt, nil
	}
	return nil, fmt.Errorf("%w: %v", protoregistry.NotFound, err)
}

func (r resolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	name := url
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		name = url[i+1:]
	}
	return r.FindMessageByName(protoreflect.FullName(name))
}

func (resolver) FindExtensionByName(protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return nil, protoregistry.NotFound
}

func (resolver) FindExtensionByNumber(protoreflect.FullName, protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return nil, protoregistry.NotFound
}

// jsonRequestBody reads gRPC-Web frames of JSON messages from src and
// returns gRPC frames of the same messages in protobuf, uncompressed.
type jsonRequestBody struct {
	src      io.Reader
	c        *jsonCall
	encoding string // the request's grpc-encoding
	hdr      [5]byte
	out      []byte // translated, not yet read
}

func (b *jsonRequestBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		frame, err := b.next()
		if err != nil {
			return 0, err
		}
		b.out = frame
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// next reads and translates one frame. An error of the client's own (a
// broken connection, a truncated body) is returned as it is; grpc-go
// treats it as it would in a protobuf call.
func (b *jsonRequestBody) next() ([]byte, error) {
	if _, err := io.ReadFull(b.src, b.hdr[:]); err != nil {
		return nil, err
	}
	flag, n := b.hdr[0], binary.BigEndian.Uint32(b.hdr[1:])
	if flag&0x80 != 0 {
		return nil, b.c.fail(codes.InvalidArgument, "a request frame is flagged as trailers (0x%02x)", flag)
	}
	if n > maxJSONMessage {
		return nil, b.c.fail(codes.ResourceExhausted, "request message of %d bytes is over the bridge's limit of %d bytes", n, maxJSONMessage)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(b.src, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if flag&1 != 0 {
		var err error
		if payload, err = decompress(b.encoding, payload); err != nil {
			return nil, b.c.fail(codes.InvalidArgument, "request message: %v", err)
		}
	}
	msg := b.c.in.New()
	opts := protojson.UnmarshalOptions{Resolver: resolver{b.c}, DiscardUnknown: true}
	if err := opts.Unmarshal(payload, msg.Interface()); err != nil {
		return nil, b.c.fail(codes.InvalidArgument, "request message is not a valid JSON %s: %v", b.c.in.Descriptor().FullName(), err)
	}
	out, err := proto.MarshalOptions{}.MarshalAppend(make([]byte, 5, 5+proto.Size(msg.Interface())), msg.Interface())
	if err != nil {
		return nil, b.c.fail(codes.InvalidArgument, "request message as %s: %v", b.c.in.Descriptor().FullName(), err)
	}
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-5))
	return out, nil
}

// decompress undoes a message's compression: gzip is the one encoding
// gRPC-Web clients use.
func decompress(encoding string, b []byte) ([]byte, error) {
	if !strings.EqualFold(encoding, "gzip") {
		return nil, fmt.Errorf("compressed with %q, which the bridge cannot read to translate JSON (it reads gzip)", encoding)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxJSONMessage+1))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if len(out) > maxJSONMessage {
		return nil, fmt.Errorf("over the bridge's limit of %d bytes once uncompressed", maxJSONMessage)
	}
	return out, nil
}

// jsonResponse is the http.ResponseWriter grpc-go writes a protobuf
// response to; it writes each message to next as JSON. next must be an
// http.Flusher (webResponse and wsResponse are).
type jsonResponse struct {
	next  http.ResponseWriter
	c     *jsonCall
	typed bool   // the content type is set to JSON
	buf   []byte // an incomplete frame
	err   error  // the translation failed: nothing more is written
}

func (r *jsonResponse) Header() http.Header { return r.next.Header() }

func (r *jsonResponse) WriteHeader(code int) {
	r.setType()
	r.next.WriteHeader(code)
}

func (r *jsonResponse) setType() {
	if !r.typed {
		r.typed = true
		setJSONContentType(r.next.Header())
	}
}

func (r *jsonResponse) Write(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	r.buf = append(r.buf, p...)
	for len(r.buf) >= 5 {
		n := int(binary.BigEndian.Uint32(r.buf[1:5]))
		if len(r.buf) < 5+n {
			break
		}
		frame, err := r.c.toJSON(r.buf[0], r.buf[5:5+n], r.next.Header().Get("Grpc-Encoding"))
		if err != nil {
			r.err = err
			r.buf = nil
			return 0, err
		}
		r.setType()
		if _, err := r.next.Write(frame); err != nil {
			return 0, err
		}
		r.buf = r.buf[5+n:]
	}
	if len(r.buf) == 0 {
		r.buf = r.buf[:0:0] // let a large message's buffer go
	}
	return len(p), nil
}

func (r *jsonResponse) Flush() { r.next.(http.Flusher).Flush() }

// toJSON translates one response frame of the backend to a JSON frame.
func (c *jsonCall) toJSON(flag byte, payload []byte, encoding string) ([]byte, error) {
	if flag&1 != 0 {
		var err error
		if payload, err = decompress(encoding, payload); err != nil {
			return nil, c.fail(codes.Internal, "response message: %v", err)
		}
	}
	msg := c.out.New()
	if err := proto.Unmarshal(payload, msg.Interface()); err != nil {
		return nil, c.fail(codes.Internal, "the backend's response message is not a valid %s, so it cannot be sent as JSON: %v", c.out.Descriptor().FullName(), err)
	}
	js, err := protojson.MarshalOptions{Resolver: resolver{c}}.Marshal(msg.Interface())
	if err != nil {
		return nil, c.fail(codes.Internal, "response message %s as JSON: %v", c.out.Descriptor().FullName(), err)
	}
	frame := make([]byte, 5, 5+len(js))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(js)))
	return append(frame, js...), nil
}

// encodeGrpcMessage percent-encodes a grpc-message value as the gRPC
// protocol asks: every byte outside printable ASCII, and '%'.
func encodeGrpcMessage(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c <= '~' && c != '%' {
			sb.WriteByte(c)
			continue
		}
		fmt.Fprintf(&sb, "%%%02X", c)
	}
	return sb.String()
}

// decodeGrpcMessage undoes encodeGrpcMessage; a malformed escape stays as
// it is.
func decodeGrpcMessage(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				out = append(out, byte(v))
				i += 2
				continue
			}
		}
		out = append(out, s[i])
	}
	return string(out)
}
