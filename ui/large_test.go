package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/rawcodec"
)

// packedMessage returns a message of exactly size bytes that is one field
// (1) holding a packed run of one-byte varints: the worst case for a
// schemaless view, one number per byte.
func packedMessage(size int) []byte {
	body := size - 1 - 4 // tag, 4-byte length
	msg := protowire.AppendTag(nil, 1, protowire.BytesType)
	msg = protowire.AppendVarint(msg, uint64(body))
	for i := 0; len(msg) < size; i++ {
		msg = append(msg, byte(1+i%127))
	}
	return msg
}

// blobCall sends msg through the proxy to test.Blob/Echo (no schema) and
// returns the id of the recorded call.
func (e *env) blobCall(msg []byte) int64 {
	e.t.Helper()
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{}), grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []byte
	if err := cc.Invoke(ctx, "/test.Blob/Echo", &msg, &out); err != nil {
		e.t.Fatal(err)
	}
	if !bytes.Equal(out, msg) {
		e.t.Fatalf("echo changed the message")
	}
	return e.latestCall("/test.Blob/Echo")
}

// latestCall waits for the newest closed call of method and returns its id.
func (e *env) latestCall(method string) int64 {
	e.t.Helper()
	if err := e.rec.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	for _, c := range e.waitCalls(1) {
		if c.Method == method {
			return c.ID
		}
	}
	e.t.Fatalf("no closed call of %s", method)
	return 0
}

// get returns the body of a GET on the inspector.
func (e *env) get(path string) []byte {
	e.t.Helper()
	res, err := http.Get(e.base + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	return b
}

type schemalessField struct {
	Number        int      `json:"number"`
	Wire          string   `json:"wire"`
	Length        int      `json:"length"`
	Bytes         string   `json:"bytes"`
	Cut           bool     `json:"cut"`
	PackedVarints []string `json:"packed_varints"`
	PackedCount   int      `json:"packed_count"`
}

type largeMessage struct {
	Seq         int             `json:"seq"`
	Size        int             `json:"size"`
	Raw         []byte          `json:"raw"`
	RawOmitted  bool            `json:"raw_omitted"`
	JSON        json.RawMessage `json:"json"`
	DecodeError string          `json:"decode_error"`
	Schemaless  *struct {
		Fields []schemalessField `json:"fields"`
	} `json:"schemaless"`
	Elided []decode.Elision `json:"elided"`
}

// TestLargeMessagesStayBounded: a call of two 4 MiB messages, each one
// packed field (4 million numbers without a schema), opens as JSON of a
// small fraction of its size, listing the first numbers and how many there
// are; more, and the raw bytes, come on request. A message with a schema
// (380,000 repeated strings and a 512 KiB string) is bounded the same way.
func TestLargeMessagesStayBounded(t *testing.T) {
	e := newEnv(t, envOpts{blobEcho: true})
	const size = 4 << 20
	msg := packedMessage(size)
	id := e.blobCall(msg)

	body := e.get(fmt.Sprintf("/api/calls/%d", id))
	if len(body) > 2*size+64<<10 {
		t.Errorf("GET /api/calls/%d is %d bytes for two messages of %d bytes: more than twice one message", id, len(body), size)
	}
	t.Logf("two %d-byte schemaless messages: call JSON %d bytes", size, len(body))
	var c struct {
		Messages []largeMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Messages) != 2 {
		t.Fatalf("%d messages", len(c.Messages))
	}
	for _, m := range c.Messages {
		if m.Size != size || m.Raw != nil || !m.RawOmitted {
			t.Errorf("message %d: size %d, %d raw bytes inline, raw_omitted %v", m.Seq, m.Size, len(m.Raw), m.RawOmitted)
		}
		if m.Schemaless == nil || len(m.Schemaless.Fields) != 1 {
			t.Fatalf("message %d: schemaless view %+v", m.Seq, m.Schemaless)
		}
		f := m.Schemaless.Fields[0]
		n := decode.DefaultLimits.Items
		if f.Number != 1 || f.Wire != "len" || f.Length != size-5 || len(f.PackedVarints) != n || f.PackedCount != size-5 ||
			f.PackedVarints[0] != "1" || f.PackedVarints[n-1] != fmt.Sprint(1+(n-1)%127) || !f.Cut {
			t.Errorf("message %d: field %d %s length %d, %d packed varints shown of %d, cut %v", m.Seq, f.Number, f.Wire, f.Length,
				len(f.PackedVarints), f.PackedCount, f.Cut)
		}
		if !strings.Contains(m.DecodeError, "shown shortened") || len(m.Elided) == 0 {
			t.Errorf("message %d does not say it is shortened: %q %v", m.Seq, m.DecodeError, m.Elided)
		}
	}

	// More on request: ten times as much, and the raw bytes whole.
	var more largeMessage
	if err := json.Unmarshal(e.get(fmt.Sprintf("/api/calls/%d/messages/2?scale=10", id)), &more); err != nil {
		t.Fatal(err)
	}
	if more.Schemaless == nil || len(more.Schemaless.Fields[0].PackedVarints) != 10*decode.DefaultLimits.Items || !bytes.Equal(more.Raw, msg) {
		t.Errorf("?scale=10: %+v", more.Elided)
	}
	if raw := e.get(fmt.Sprintf("/api/calls/%d/messages/1/raw", id)); !bytes.Equal(raw, msg) {
		t.Errorf("raw: %d bytes, not the message", len(raw))
	}

	// With a schema: the repeated field and the long string are cut, and
	// ?full=1 has them whole.
	const nTags = 380_000
	req := &demopb.EchoRequest{Message: strings.Repeat("long text ", 52429)}
	for i := range nTags {
		req.Tags = append(req.Tags, fmt.Sprintf("t%06d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.client.Echo(ctx, req, grpc.MaxCallRecvMsgSize(64<<20)); err != nil {
		t.Fatal(err)
	}
	id = e.latestCall("/grpctap.demo.v1.DemoService/Echo")
	body = e.get(fmt.Sprintf("/api/calls/%d", id))
	c.Messages = nil
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	t.Logf("two messages of %d bytes with a schema: call JSON %d bytes", c.Messages[0].Size, len(body))
	if len(c.Messages) != 2 {
		t.Fatalf("%d messages", len(c.Messages))
	}
	if len(body) > 2*c.Messages[0].Size+64<<10 {
		t.Errorf("GET /api/calls/%d is %d bytes for messages of %d bytes", id, len(body), c.Messages[0].Size)
	}
	var decoded struct {
		Message string   `json:"message"`
		Tags    []string `json:"tags"`
	}
	if err := json.Unmarshal(c.Messages[0].JSON, &decoded); err != nil {
		t.Fatalf("decoded request %.200s: %v", c.Messages[0].JSON, err)
	}
	if len(decoded.Tags) != decode.DefaultLimits.Items || decoded.Tags[0] != "t000000" || len(decoded.Message) != decode.DefaultLimits.Bytes {
		t.Errorf("decoded request: %d tags, message of %d bytes", len(decoded.Tags), len(decoded.Message))
	}
	if !strings.Contains(c.Messages[0].DecodeError, fmt.Sprintf("tags %d of %d items", decode.DefaultLimits.Items, nTags)) {
		t.Errorf("note %q", c.Messages[0].DecodeError)
	}
	var full largeMessage
	if err := json.Unmarshal(e.get(fmt.Sprintf("/api/calls/%d/messages/1?full=1", id)), &full); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(full.JSON, &decoded); err != nil {
		t.Fatal(err)
	}
	if len(decoded.Tags) != nTags || decoded.Message != req.Message || len(full.Elided) != 0 {
		t.Errorf("?full=1: %d tags, message of %d bytes, elided %v", len(decoded.Tags), len(decoded.Message), full.Elided)
	}
}
