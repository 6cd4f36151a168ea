// Package refdiff_test runs the same gRPC-Web requests through grpctap's
// bridge and through improbable-eng/grpc-web's grpcweb.WrapServer, the
// reference implementation, over one backend, and compares what a client
// gets: frames, status, trailers and the headers the protocol fixes. It is
// a package of its own because importing grpcweb starts a process-wide
// goroutine, which only this package's leak check ignores.
package refdiff_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/improbable-eng/grpc-web/go/grpcweb"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/webbridge"
)

func TestMain(m *testing.M) {
	// grpcweb imports github.com/desertbit/timer, whose init starts a
	// goroutine that runs for the life of the process.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/desertbit/timer.timerRoutine"))
}

// backend answers by method name; messages are raw bytes.
func backend(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	var in []byte
	if err := ss.RecvMsg(&in); err != nil {
		return err
	}
	switch method {
	case "/ref.Test/Unary":
		if err := ss.SendHeader(metadata.Pairs("x-header", "h")); err != nil {
			return err
		}
		ss.SetTrailer(metadata.Pairs("x-trailer", "t"))
		return ss.SendMsg(&in)
	case "/ref.Test/Stream":
		if err := ss.SendHeader(metadata.Pairs("x-header", "h")); err != nil {
			return err
		}
		for i := range 3 {
			out := append([]byte(fmt.Sprintf("%d:", i)), in...)
			if err := ss.SendMsg(&out); err != nil {
				return err
			}
		}
		ss.SetTrailer(metadata.Pairs("x-trailer", "t"))
		return nil
	case "/ref.Test/Empty": // OK, no message, no header sent: trailers-only
		ss.SetTrailer(metadata.Pairs("x-trailer", "t"))
		return nil
	case "/ref.Test/FailNoHeaders": // trailers-only error
		ss.SetTrailer(metadata.Pairs("x-trailer", "t"))
		return detailed(codes.NotFound, "nothing here: 100% gone")
	case "/ref.Test/FailBeforeHeaders": // headers set, not sent; no message
		_ = ss.SetHeader(metadata.Pairs("x-header", "h"))
		ss.SetTrailer(metadata.Pairs("x-trailer", "t"))
		return detailed(codes.NotFound, "nothing here: 100% gone")
	case "/ref.Test/FailAfterHeaders":
		if err := ss.SendHeader(metadata.Pairs("x-header", "h")); err != nil {
			return err
		}
		if err := ss.SendMsg(&in); err != nil {
			return err
		}
		ss.SetTrailer(metadata.Pairs("x-trailer", "t"))
		return detailed(codes.FailedPrecondition, "stopped after one message")
	}
	return status.Errorf(codes.Unimplemented, "no %s", method)
}

func detailed(c codes.Code, msg string) error {
	st, err := status.New(c, msg).WithDetails(&errdetails.ErrorInfo{Reason: "REF", Domain: "ref.test"})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// servers starts the backend, then grpctap's bridge (proxy in front of the
// backend's listener) and improbable's wrapper (around the backend's
// grpc.Server itself), each on its own loopback port.
func servers(t *testing.T) (ours, ref string) {
	t.Helper()
	srv := grpc.NewServer(grpc.UnknownServiceHandler(backend), grpc.ForceServerCodecV2(rawcodec.Codec{}))
	backendAddr := stubserver.Serve(t, srv)

	p, err := proxy.New(proxy.Options{Backend: backendAddr, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	psrv := p.NewServer()
	b, err := webbridge.New(psrv, webbridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	oursHTTP := httptest.NewServer(b)
	refHTTP := httptest.NewServer(grpcweb.WrapServer(srv,
		grpcweb.WithOriginFunc(func(string) bool { return true }),
		grpcweb.WithCorsForRegisteredEndpointsOnly(false)))
	t.Cleanup(func() {
		oursHTTP.Close()
		refHTTP.Close()
		psrv.Stop()
		_ = p.Close()
	})
	return oursHTTP.URL, refHTTP.URL
}

// outcome is what a gRPC-Web client learns from a response, plus the wire
// shape that the protocol leaves to the server.
type outcome struct {
	HTTPStatus  int
	ContentType string
	Header      map[string]string // x-header, as an HTTP header
	Messages    []string
	// Status and trailers, from the trailer frame or, in a trailers-only
	// response, from the HTTP headers.
	Trailers map[string]string
	// Wire shape.
	TrailersOnly bool
}

func call(t *testing.T, c *http.Client, base, method, contentType string, msg []byte) outcome {
	t.Helper()
	body := frame(0, msg)
	text := strings.HasPrefix(contentType, "application/grpc-web-text")
	if text {
		body = []byte(base64.StdEncoding.EncodeToString(body))
	}
	req, err := http.NewRequest(http.MethodPost, base+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if text {
		if raw, err = decodePadded(raw); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
	}
	o := outcome{HTTPStatus: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"),
		Header: map[string]string{}, Trailers: map[string]string{}}
	if v := resp.Header.Get("X-Header"); v != "" {
		o.Header["x-header"] = v
	}
	var sawTrailer bool
	r := bufio.NewReader(bytes.NewReader(raw))
	for {
		flag, data, err := readFrame(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if flag&0x80 == 0 {
			o.Messages = append(o.Messages, string(data))
			continue
		}
		sawTrailer = true
		for _, line := range strings.Split(string(data), "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				o.Trailers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
	}
	if !sawTrailer {
		o.TrailersOnly = true
		for _, k := range []string{"grpc-status", "grpc-message", "grpc-status-details-bin", "x-trailer"} {
			if v := resp.Header.Get(k); v != "" {
				o.Trailers[k] = v
			}
		}
	}
	return o
}

func frame(flag byte, msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	out[0] = flag
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("truncated frame header: %w", err)
		}
		return 0, nil, err
	}
	data := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, fmt.Errorf("frame body: %w", err)
	}
	return hdr[0], data, nil
}

// decodePadded decodes base64 made of padded pieces laid end to end.
func decodePadded(b []byte) ([]byte, error) {
	return io.ReadAll(webbridge.NewTextReader(bytes.NewReader(b)))
}

// TestReference compares grpctap's bridge with improbable's wrapper, request
// by request. Where they differ, the difference is named and explained
// below; anything else fails the test.
func TestReference(t *testing.T) {
	ours, ref := servers(t)
	c := &http.Client{Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	methods := []string{"/ref.Test/Unary", "/ref.Test/Stream", "/ref.Test/Empty", "/ref.Test/FailNoHeaders", "/ref.Test/FailBeforeHeaders", "/ref.Test/FailAfterHeaders"}
	for _, ct := range []string{"application/grpc-web", "application/grpc-web+proto", "application/grpc-web-text", "application/grpc-web-text+proto"} {
		for _, m := range methods {
			t.Run(ct+m, func(t *testing.T) {
				got := call(t, c, ours, m, ct, []byte("hello"))
				want := call(t, c, ref, m, ct, []byte("hello"))
				explain(t, &got, &want)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("grpctap differs from the reference (-reference +grpctap):\n%s", diff)
				}
			})
		}
	}
}

// explain removes the known differences from the two outcomes, after
// checking that each is what its comment says: each is a defect of the
// reference. Whatever is left must be equal.
func explain(t *testing.T, ours, ref *outcome) {
	t.Helper()
	// A backend that set headers and then failed before any message. Over
	// HTTP/2, grpc-go sends those headers in a HEADERS frame of their own
	// and the status in the trailers: not a trailers-only response, and a
	// native client sees x-header as a header and x-trailer as a trailer.
	// grpctap, forwarding the backend's HTTP/2 response, keeps that shape:
	// headers, then a trailer frame. The reference wraps grpc-go's
	// ServeHTTP transport, which writes the headers without sending them;
	// it then answers trailers-only, every trailer (x-trailer too) among
	// the HTTP headers, so its clients cannot tell headers from trailers.
	// The status, message, details and metadata a client reads are the
	// same (compared after this), only the reference's shape is excused.
	if ref.TrailersOnly && !ours.TrailersOnly && ours.Header["x-header"] != "" && len(ours.Messages) == 0 {
		ref.TrailersOnly = false
	}
}
