package webbridge_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/webbridge"
)

// jsonPost sends frames as application/grpc-web+json, as curl would, and
// returns the response, its messages and its trailers.
func jsonPost(t *testing.T, c *http.Client, url string, hdr http.Header, frames ...[]byte) (*http.Response, [][]byte, http.Header) {
	t.Helper()
	resp := post(t, c, url, "application/grpc-web+json", bytes.NewReader(bytes.Join(frames, nil)), hdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %s", resp.Status)
	}
	msgs, tr, err := newFrameReader(resp.Body, false).all()
	if err != nil {
		t.Fatal(err)
	}
	return resp, msgs, tr
}

// grpcMessage returns the call's grpc-message, from the trailer frame or
// the headers of a trailers-only response.
func grpcMessage(resp *http.Response, trailer http.Header) string {
	if m := trailer.Get("grpc-message"); m != "" {
		return m
	}
	return resp.Header.Get("Grpc-Message")
}

// gzipFrame builds a compressed gRPC-Web frame.
func gzipFrame(t *testing.T, msg []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f := dataFrame(b.Bytes())
	f[0] = 1
	return f
}

// TestJSONTranscoded: JSON calls reach the demo backend, which speaks only
// protobuf, through a bridge that learned its schema by reflection: every
// RPC kind, over HTTP/1.1 and h2c, with the answer in JSON, gzipped request
// messages, the backend's errors unchanged and a clear error for a message
// that does not fit the schema. The calls are recorded as protobuf.
func TestJSONTranscoded(t *testing.T) {
	b := startDemoBridge(t, bridgeConfig{})
	svc := b.url + "/grpctap.demo.v1.DemoService/"
	for _, client := range []struct {
		name string
		new  func(*tls.Config) *http.Client
	}{{"h1", h1Client}, {"h2", h2Client}} {
		t.Run(client.name, func(t *testing.T) {
			c := client.new(nil)
			defer closeClient(c)

			t.Run("unary", func(t *testing.T) {
				req := `{"message":"hi","author":{"name":"ann","mood":"MOOD_HAPPY"},"tags":["a"],"labels":{"k":"v"}}`
				resp, msgs, tr := jsonPost(t, c, svc+"Echo", http.Header{"X-Hello": {"world"}}, dataFrame([]byte(req)))
				if ct := resp.Header.Get("Content-Type"); ct != "application/grpc-web+json" {
					t.Errorf("content-type %q, want application/grpc-web+json", ct)
				}
				if resp.Header.Get("X-Hello") != "world" {
					t.Errorf("response header x-hello %q", resp.Header.Get("X-Hello"))
				}
				if tr.Get("grpc-status") != "0" || tr.Get("x-echo-handled-at") == "" {
					t.Fatalf("trailer %v", tr)
				}
				if len(msgs) != 1 {
					t.Fatalf("%d messages", len(msgs))
				}
				var got demopb.EchoResponse
				if err := protojson.Unmarshal(msgs[0], &got); err != nil {
					t.Fatalf("answer %q is not JSON of an EchoResponse: %v", msgs[0], err)
				}
				want := &demopb.EchoResponse{Message: "hi", Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_HAPPY}, Tags: []string{"a"}, Labels: map[string]string{"k": "v"}}
				if diff := cmp.Diff(want, &got, protocmp.Transform(), protocmp.IgnoreFields(&demopb.EchoResponse{}, "received_at")); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
			})

			t.Run("server-streaming", func(t *testing.T) {
				_, msgs, tr := jsonPost(t, c, svc+"Countdown", nil, dataFrame([]byte(`{"count":3,"interval":"0.001s"}`)))
				var remaining []int32
				for _, m := range msgs {
					var tick demopb.Tick
					if err := protojson.Unmarshal(m, &tick); err != nil {
						t.Fatalf("tick %q: %v", m, err)
					}
					remaining = append(remaining, tick.GetRemaining())
				}
				if diff := cmp.Diff([]int32{2, 1, 0}, remaining); diff != "" || tr.Get("grpc-status") != "0" {
					t.Errorf("remaining (-want +got):\n%s\ntrailer %v", diff, tr)
				}
			})

			t.Run("client-streaming-gzip", func(t *testing.T) {
				_, msgs, tr := jsonPost(t, c, svc+"Sum", http.Header{"Grpc-Encoding": {"gzip"}},
					gzipFrame(t, []byte(`{"integer":"2"}`)), dataFrame([]byte(`{"real":0.5}`)))
				if tr.Get("grpc-status") != "0" || len(msgs) != 1 {
					t.Fatalf("trailer %v, %d messages", tr, len(msgs))
				}
				var got demopb.SumResponse
				if err := protojson.Unmarshal(msgs[0], &got); err != nil {
					t.Fatal(err)
				}
				if got.GetTotal() != 2.5 || got.GetCount() != 2 {
					t.Errorf("sum %v", &got)
				}
			})

			t.Run("backend-error", func(t *testing.T) {
				resp, msgs, tr := jsonPost(t, c, svc+"Echo", http.Header{"X-Err": {"kept"}},
					dataFrame([]byte(`{"fail":{"code":5,"message":"nothing here"}}`)))
				if len(msgs) != 0 || grpcStatus(resp, tr) != "5" || grpcMessage(resp, tr) != "nothing here" {
					t.Errorf("status %q %q, %d messages", grpcStatus(resp, tr), grpcMessage(resp, tr), len(msgs))
				}
				if resp.Header.Get("X-Err") != "kept" || resp.Header.Get("Grpc-Status-Details-Bin") == "" && tr.Get("grpc-status-details-bin") == "" {
					t.Errorf("header x-err %q; details lost (headers %v, trailer %v)", resp.Header.Get("X-Err"), resp.Header, tr)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/grpc-web+json" {
					t.Errorf("content-type %q", ct)
				}
			})

			t.Run("not-the-schema", func(t *testing.T) {
				resp, _, tr := jsonPost(t, c, svc+"Echo", nil, dataFrame([]byte(`{"message":7}`)))
				msg := grpcMessage(resp, tr)
				if grpcStatus(resp, tr) != "3" || !strings.Contains(msg, "grpctap.demo.v1.EchoRequest") {
					t.Errorf("status %q %q, want 3 naming grpctap.demo.v1.EchoRequest", grpcStatus(resp, tr), msg)
				}
			})
		})
	}

	// What was recorded is protobuf: the backend's own bytes.
	recorded := 0
	for _, call := range b.obs.snapshot() {
		if call.start.Method != "/grpctap.demo.v1.DemoService/Echo" {
			continue
		}
		call.mu.Lock()
		msgs := call.msgs
		call.mu.Unlock()
		for _, m := range msgs {
			if m.Direction != proxy.Request {
				continue
			}
			recorded++
			var req demopb.EchoRequest
			if err := proto.Unmarshal(m.Bytes(), &req); err != nil {
				t.Errorf("recorded request %q is not protobuf: %v", m.Bytes(), err)
			}
		}
	}
	if recorded == 0 {
		t.Error("no Echo request recorded")
	}
}

// TestJSONWithoutSchema: a bridge that knows no schema forwards JSON as is.
// A backend that speaks JSON answers; one that speaks only protobuf fails,
// and the error says that grpctap had no schema.
func TestJSONWithoutSchema(t *testing.T) {
	t.Run("protobuf-backend", func(t *testing.T) {
		b := startDemoBridge(t, bridgeConfig{noSchemas: true})
		c := h1Client(nil)
		defer closeClient(c)
		resp, _, tr := jsonPost(t, c, b.url+"/grpctap.demo.v1.DemoService/Echo", nil, dataFrame([]byte(`{"message":"hi"}`)))
		msg := grpcMessage(resp, tr)
		if grpcStatus(resp, tr) != "13" || !strings.Contains(msg, "no schema for /grpctap.demo.v1.DemoService/Echo") {
			t.Errorf("status %q %q, want 13 saying grpctap has no schema", grpcStatus(resp, tr), msg)
		}
	})
	t.Run("json-backend", func(t *testing.T) {
		srv := grpc.NewServer(grpc.ForceServerCodec(jsonCodec{}))
		demo.Register(srv)
		b := startBridge(t, stubserver.Serve(t, srv), bridgeConfig{})
		c := h1Client(nil)
		defer closeClient(c)
		resp, msgs, tr := jsonPost(t, c, b.url+"/grpctap.demo.v1.DemoService/Echo", nil, dataFrame([]byte(`{"message":"hi"}`)))
		if grpcStatus(resp, tr) != "0" || len(msgs) != 1 || !bytes.Contains(msgs[0], []byte(`"message":"hi"`)) {
			t.Errorf("status %q %q, messages %q", grpcStatus(resp, tr), grpcMessage(resp, tr), msgs)
		}
	})
}

// TestJSONWebsocket: over the grpc-websockets transport too, JSON messages
// reach the protobuf-only demo backend and come back as JSON, in a bidi
// call answered message by message.
func TestJSONWebsocket(t *testing.T) {
	b := startDemoBridge(t, bridgeConfig{opts: webbridge.Options{Websockets: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := dialWSType(t, ctx, b.url, "/grpctap.demo.v1.DemoService/Chat", "", "application/grpc-web+json")
	if err != nil {
		t.Fatal(err)
	}
	c.send([]byte(`{"author":{"name":"ws"},"text":"one"}`))
	hdr := c.next()
	if !hdr.trailer || !strings.Contains(strings.ToLower(string(hdr.data)), "content-type: application/grpc-web+json") {
		t.Fatalf("header frame %q", hdr.data)
	}
	for i, text := range []string{"one", "two"} {
		if i > 0 {
			c.send([]byte(`{"author":{"name":"ws"},"text":"` + text + `"}`))
		}
		f := c.next()
		var got demopb.ChatMessage
		if f.trailer {
			t.Fatalf("trailer %q instead of answer %d", f.data, i)
		}
		if err := protojson.Unmarshal(f.data, &got); err != nil || got.GetText() != "ws said: "+text {
			t.Fatalf("answer %d %q: %v", i, f.data, err)
		}
	}
	c.closeSend()
	if tr := c.next(); !tr.trailer || parseTrailer(tr.data).Get("grpc-status") != "0" {
		t.Fatalf("trailer frame %q", tr.data)
	}
}
