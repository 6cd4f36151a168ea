package webbridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"nhooyr.io/websocket"

	"github.com/grpctap/grpctap/proxy"
)

// The grpc-websockets transport (improbable-eng's, for client and bidi
// streaming from browsers over HTTP/1.1). The client's first websocket
// message holds its request headers as "name: value\r\n" lines; each
// following message is a control byte, 0 then a piece of the gRPC-Web
// request body, or a lone 1 for the end of the client's stream. The server
// answers with the gRPC-Web response body, the response headers first in a
// frame flagged like a trailer frame.

const (
	wsSubprotocol   = "grpc-websockets"
	wsData          = 0
	wsEndOfStream   = 1
	wsCloseTimeout  = 5 * time.Second
	wsMaxHeaderSize = 1 << 20
)

func (b *Bridge) serveWebsocket(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// ServeHTTP has applied the bridge's origin policy already.
		InsecureSkipVerify: true,
		Subprotocols:       []string{wsSubprotocol},
	})
	if err != nil {
		return // Accept has answered the client
	}
	defer conn.Close(websocket.StatusInternalError, "grpctap: bridge stopped")
	if conn.Subprotocol() != wsSubprotocol {
		conn.Close(websocket.StatusPolicyViolation, "grpctap: subprotocol grpc-websockets required")
		return
	}
	conn.SetReadLimit(b.wsReadLimit)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	_, first, err := conn.Read(ctx)
	if err != nil {
		return
	}
	hdr, err := parseHeaderBlock(first)
	if err != nil {
		conn.Close(websocket.StatusProtocolError, "grpctap: "+err.Error())
		return
	}
	stripHopByHop(hdr)
	ct := strings.ToLower(hdr.Get("Content-Type"))
	if !strings.HasPrefix(ct, ctGRPCWeb) || strings.HasPrefix(ct, ctGRPCWebText) {
		conn.Close(websocket.StatusPolicyViolation, "grpctap: websocket calls need content-type application/grpc-web[+proto|+json]")
		return
	}
	if ua := r.Header.Get("User-Agent"); ua != "" && hdr.Get("User-Agent") == "" {
		hdr.Set("User-Agent", ua)
	}

	body, bodyW := io.Pipe()
	req := r.Clone(proxy.WithClientContentType(proxy.WithProtocol(ctx, proxy.ProtocolGRPCWeb), hdr.Get("Content-Type")))
	req.Method = http.MethodPost
	req.Header = hdr
	req.Body = body
	req = grpcRequest(req, false, nil)

	// The reader feeds the request body and notices the client going away.
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		err := readWebsocketBody(ctx, conn, bodyW)
		_ = bodyW.CloseWithError(err)
		if err != nil {
			cancel() // the client is gone or broke the protocol: end the call
		}
	}()

	resp := &wsResponse{conn: conn, ctx: ctx, hdr: make(http.Header)}
	if isJSONCall(req) {
		g, out, end := b.prepareJSON(req, resp)
		b.srv.ServeHTTP(out, g)
		end(resp.hdr)
	} else {
		b.srv.ServeHTTP(resp, req)
	}
	resp.finish()
	// Unblock a reader stuck handing a message to the finished call.
	_ = body.CloseWithError(io.ErrClosedPipe)
	if resp.err == nil {
		// The close handshake reads the client's close frame through the
		// reader goroutine, which then ends.
		_ = conn.Close(websocket.StatusNormalClosure, "")
	}
	cancel()
	<-readerDone
}

// readWebsocketBody copies request body pieces from the websocket into w
// until the client ends its stream, then keeps reading (discarding) until
// the connection closes. It returns nil for an orderly end.
func readWebsocketBody(ctx context.Context, conn *websocket.Conn, w *io.PipeWriter) error {
	ended := false
	for {
		typ, msg, err := conn.Read(ctx)
		if err != nil {
			if ended || websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				return nil
			}
			return err
		}
		if ended {
			continue
		}
		if typ != websocket.MessageBinary || len(msg) == 0 {
			return errors.New("grpc-websockets: expected a binary message with a control byte")
		}
		switch msg[0] {
		case wsData:
			if _, err := w.Write(msg[1:]); err != nil {
				return err
			}
		case wsEndOfStream:
			ended = true
			_ = w.Close()
		default:
			return fmt.Errorf("grpc-websockets: unknown control byte %d", msg[0])
		}
	}
}

// parseHeaderBlock parses "name: value\r\n" lines.
func parseHeaderBlock(b []byte) (http.Header, error) {
	if len(b) > wsMaxHeaderSize {
		return nil, errors.New("request headers too large")
	}
	b = bytes.TrimRight(b, "\r\n")
	tp := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("\r\n\r\n"))))
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("request headers: %w", err)
	}
	return http.Header(h), nil
}

// wsResponse is the http.ResponseWriter grpc-go writes a gRPC response to;
// it sends gRPC-Web over the websocket, one websocket message per Flush.
type wsResponse struct {
	conn    *websocket.Conn
	ctx     context.Context
	hdr     http.Header
	sent    map[string]bool
	started bool
	buf     []byte
	err     error
}

func (r *wsResponse) Header() http.Header { return r.hdr }

func (r *wsResponse) WriteHeader(int) {
	if r.started {
		return
	}
	r.started = true
	r.sent = map[string]bool{}
	r.buf = appendHeaderFrame(r.buf, r.hdr, r.sent, false)
}

func (r *wsResponse) Write(b []byte) (int, error) {
	if !r.started {
		r.WriteHeader(http.StatusOK)
	}
	if r.err != nil {
		return 0, r.err
	}
	r.buf = append(r.buf, b...)
	return len(b), nil
}

func (r *wsResponse) Flush() {
	if !r.started || r.err != nil || len(r.buf) == 0 {
		return
	}
	r.err = r.conn.Write(r.ctx, websocket.MessageBinary, r.buf)
	r.buf = r.buf[:0]
}

// finish sends the trailers; a call that sent no headers sends one frame
// with headers and trailers together.
func (r *wsResponse) finish() {
	if !r.started {
		r.started = true
		r.buf = appendHeaderFrame(r.buf, r.hdr, map[string]bool{}, true)
	} else {
		r.buf = appendTrailerFrame(r.buf, r.hdr, r.sent)
	}
	r.Flush()
}

// appendHeaderFrame appends the response headers as a gRPC-Web frame
// flagged 0x80, recording the keys it sent; with all, trailers too.
func appendHeaderFrame(dst []byte, h http.Header, sent map[string]bool, all bool) []byte {
	var sb strings.Builder
	for k, vv := range h {
		name, isTrailer := strings.CutPrefix(k, http.TrailerPrefix)
		if k == "Trailer" || (isTrailer && !all) {
			continue
		}
		if !isTrailer {
			sent[k] = true
		}
		name = strings.ToLower(name)
		for _, v := range vv {
			if name == "content-type" {
				v = ctGRPCWeb + strings.TrimPrefix(v, ctGRPC)
			}
			sb.WriteString(name + ": " + v + "\r\n")
		}
	}
	return appendFrame(dst, 0x80, sb.String())
}

// appendTrailerFrame appends the trailers (keys not sent as headers).
func appendTrailerFrame(dst []byte, h http.Header, sent map[string]bool) []byte {
	var sb strings.Builder
	for k, vv := range h {
		name, isTrailer := strings.CutPrefix(k, http.TrailerPrefix)
		if k == "Trailer" || (!isTrailer && sent[k]) {
			continue
		}
		name = strings.ToLower(name)
		for _, v := range vv {
			sb.WriteString(name + ": " + v + "\r\n")
		}
	}
	return appendFrame(dst, 0x80, sb.String())
}

func appendFrame(dst []byte, flag byte, payload string) []byte {
	dst = append(dst, flag, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(payload)))
	return append(dst, payload...)
}
