package webbridge

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"
)

func TestPaddedBase64Decoder(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{base64.StdEncoding.EncodeToString([]byte("hello")), "hello"},
		{base64.StdEncoding.EncodeToString([]byte("a")) + base64.StdEncoding.EncodeToString([]byte("bc")) + base64.StdEncoding.EncodeToString([]byte("def")), "abcdef"},
		{"aGVs\r\nbG8=\n", "hello"},
	} {
		got, err := io.ReadAll(newPaddedBase64Decoder(strings.NewReader(tt.in)))
		if err != nil || string(got) != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"abc", "ab!d", "===="} {
		if _, err := io.ReadAll(newPaddedBase64Decoder(strings.NewReader(bad))); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzBase64RoundTrip: any bytes, cut into flushed pieces by the encoder,
// come back whole through the decoder.
func FuzzBase64RoundTrip(f *testing.F) {
	f.Add([]byte("hello world"), uint8(3))
	f.Add([]byte{0, 0, 0, 0, 1, 2}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		var enc bytes.Buffer
		c := &base64Chunker{w: &enc}
		step := int(cut)%7 + 1
		for i := 0; i < len(data); i += step {
			if _, err := c.Write(data[i:min(i+step, len(data))]); err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				if err := c.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(newPaddedBase64Decoder(&enc))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip: %q, %v; want %q", got, err, data)
		}
	})
}

// FuzzPaddedBase64Decoder: arbitrary input never panics.
func FuzzPaddedBase64Decoder(f *testing.F) {
	f.Add("aGVsbG8=")
	f.Add("YQ==YmM=")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = io.ReadAll(newPaddedBase64Decoder(strings.NewReader(s)))
	})
}

// FuzzParseHeaderBlock: the websocket transport's first message, from the
// client, never panics the parser, and what parses comes back out in a
// header frame that names every key.
func FuzzParseHeaderBlock(f *testing.F) {
	f.Add([]byte("content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n"))
	f.Add([]byte("a: b"))
	f.Add([]byte(":\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeaderBlock(b)
		if err != nil {
			return
		}
		frame := appendHeaderFrame(nil, h, map[string]bool{}, true)
		if len(frame) < 5 || frame[0] != 0x80 {
			t.Fatalf("frame %q", frame)
		}
		for k := range h {
			if !bytes.Contains(bytes.ToLower(frame), []byte(strings.ToLower(k)+":")) {
				t.Fatalf("key %q missing from %q", k, frame)
			}
		}
	})
}
