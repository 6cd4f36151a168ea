package webbridge_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"nhooyr.io/websocket"

	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/webbridge"
)

// wsCall speaks improbable-eng's grpc-websockets protocol: a first message
// with the request headers, then each gRPC frame behind a 0 byte, then a
// lone 1 byte for the end of the client's stream.
type wsCall struct {
	t    *testing.T
	ctx  context.Context
	conn *websocket.Conn
	buf  bytes.Buffer
}

func dialWS(t *testing.T, ctx context.Context, url, method, origin string) (*wsCall, *http.Response, error) {
	return dialWSType(t, ctx, url, method, origin, "application/grpc-web+proto")
}

// dialWSType opens a grpc-websockets call with this request content type.
func dialWSType(t *testing.T, ctx context.Context, url, method, origin, contentType string) (*wsCall, *http.Response, error) {
	hdr := http.Header{}
	if origin != "" {
		hdr.Set("Origin", origin)
	}
	hc := h1Client(nil)
	hc.Timeout = 0 // the websocket library wants ctx instead
	t.Cleanup(func() { closeClient(hc) })
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+method, &websocket.DialOptions{
		HTTPClient:   hc,
		HTTPHeader:   hdr,
		Subprotocols: []string{"grpc-websockets"},
	})
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { _ = conn.Close(websocket.StatusNormalClosure, "") })
	c := &wsCall{t: t, ctx: ctx, conn: conn}
	if err := conn.Write(ctx, websocket.MessageBinary, []byte("content-type: "+contentType+"\r\nx-grpc-web: 1\r\nx-ws-test: yes\r\n")); err != nil {
		t.Fatal(err)
	}
	return c, resp, nil
}

func (c *wsCall) send(msg []byte) {
	c.t.Helper()
	if err := c.conn.Write(c.ctx, websocket.MessageBinary, append([]byte{0}, dataFrame(msg)...)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsCall) closeSend() {
	c.t.Helper()
	if err := c.conn.Write(c.ctx, websocket.MessageBinary, []byte{1}); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next whole gRPC-Web frame, however the server split it
// into websocket messages.
func (c *wsCall) next() *webFrame {
	c.t.Helper()
	for {
		if c.buf.Len() >= 5 {
			b := c.buf.Bytes()
			n := int(b[1])<<24 | int(b[2])<<16 | int(b[3])<<8 | int(b[4])
			if c.buf.Len() >= 5+n {
				f := &webFrame{trailer: b[0]&0x80 != 0, data: append([]byte(nil), b[5:5+n]...)}
				c.buf.Next(5 + n)
				return f
			}
		}
		_, data, err := c.conn.Read(c.ctx)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		c.buf.Write(data)
	}
}

// TestWebsocketBidi: messages go back and forth one at a time, then the
// client half-closes and the trailers arrive.
func TestWebsocketBidi(t *testing.T) {
	const origin = "http://page.example"
	b := startBridge(t, rawBackend(t, echoHandler), bridgeConfig{opts: webbridge.Options{
		Websockets: true, AllowedOrigins: []string{origin},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := dialWS(t, ctx, b.url, "/test.Chat/Talk", origin)
	if err != nil {
		t.Fatal(err)
	}
	c.send([]byte("one"))
	hdr := c.next()
	if !hdr.trailer || !strings.Contains(strings.ToLower(string(hdr.data)), "x-ws-test: yes") {
		t.Fatalf("header frame %q", hdr.data)
	}
	for i, want := range []string{"one", "two", "three"} {
		if i > 0 {
			c.send([]byte(want))
		}
		if f := c.next(); f.trailer || string(f.data) != want {
			t.Fatalf("echo %d: %+v", i, f)
		}
	}
	c.closeSend()
	tr := c.next()
	if !tr.trailer || parseTrailer(tr.data).Get("grpc-status") != "0" {
		t.Fatalf("trailer frame %q", tr.data)
	}
	calls := b.obs.snapshot()
	if len(calls) != 1 || calls[0].start.Protocol != proxy.ProtocolGRPCWeb || calls[0].start.Method != "/test.Chat/Talk" {
		t.Fatalf("recorded %+v", calls)
	}
}

// TestWebsocketOrigin: a refused origin cannot open a websocket, and
// websockets are off unless enabled.
func TestWebsocketOrigin(t *testing.T) {
	backend := rawBackend(t, echoHandler)
	on := startBridge(t, backend, bridgeConfig{opts: webbridge.Options{Websockets: true, AllowedOrigins: []string{"http://page.example"}}})
	off := startBridge(t, backend, bridgeConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, resp, err := dialWS(t, ctx, on.url, "/test.Chat/Talk", "http://evil.example"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("refused origin: err %v resp %v", err, resp)
	}
	if _, resp, err := dialWS(t, ctx, off.url, "/test.Chat/Talk", ""); err == nil || resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		t.Errorf("websockets off: err %v resp %v", err, resp)
	}
}
