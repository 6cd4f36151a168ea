package webbridge

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Content types (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md).
const (
	ctGRPC        = "application/grpc"
	ctGRPCWeb     = "application/grpc-web"
	ctGRPCWebText = "application/grpc-web-text"
)

// grpcRequest turns a gRPC-Web request into the gRPC request grpc-go's
// ServeHTTP expects: HTTP/2, content-type application/grpc[+sub], the body
// decoded from base64 for the text protocol, no content-length.
// The request is the bridge's own: its Header is changed in place. A text
// body that is not base64 reads as an error, and badText is called first
// (nil: not told).
func grpcRequest(r *http.Request, text bool, badText func()) *http.Request {
	g := r.WithContext(r.Context()) // shallow: only fields set below differ
	g.ProtoMajor, g.ProtoMinor, g.Proto = 2, 0, "HTTP/2.0"
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	web := ctGRPCWeb
	if text {
		web = ctGRPCWebText
		dec := newPaddedBase64Decoder(r.Body)
		dec.onBad = badText
		g.Body = &readCloser{Reader: dec, Closer: r.Body}
	}
	g.Header.Set("Content-Type", ctGRPC+strings.TrimPrefix(ct, web))
	g.Header.Del("Content-Length")
	g.ContentLength = -1
	return g
}

type readCloser struct {
	io.Reader
	io.Closer
}

// paddedBase64Decoder decodes standard base64 that may consist of several
// padded pieces laid end to end (the gRPC-Web spec allows a client to
// flush with padding), skipping whitespace. encoding/base64's stream
// decoder stops at the first padding.
type paddedBase64Decoder struct {
	r    *bufio.Reader
	quad [4]byte
	out  [3]byte
	pend []byte // decoded, not yet returned
	// onBad, when set, is called once the body turns out not to be base64.
	onBad func()
}

func newPaddedBase64Decoder(r io.Reader) *paddedBase64Decoder {
	return &paddedBase64Decoder{r: bufio.NewReaderSize(r, 32<<10)}
}

// NewTextReader returns a reader of the gRPC-Web frames in r, a
// grpc-web-text body (request or response): standard base64, possibly in
// several padded pieces laid end to end, whitespace ignored. A malformed
// body reads as an error.
func NewTextReader(r io.Reader) io.Reader { return newPaddedBase64Decoder(r) }

var errBase64 = errors.New("grpc-web-text: malformed base64 body")

func (d *paddedBase64Decoder) Read(p []byte) (int, error) {
	n, err := d.read(p)
	if err == errBase64 && d.onBad != nil {
		d.onBad()
		d.onBad = nil
	}
	return n, err
}

func (d *paddedBase64Decoder) read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(d.pend) > 0 {
			c := copy(p[n:], d.pend)
			d.pend = d.pend[c:]
			n += c
			continue
		}
		if n > 0 && d.r.Buffered() == 0 {
			// Return what is decoded rather than wait: a streaming
			// client's next piece may be far away.
			return n, nil
		}
		for i := 0; i < 4; {
			c, err := d.r.ReadByte()
			if err != nil {
				if err == io.EOF {
					if i != 0 {
						return n, errBase64
					}
					if n > 0 {
						return n, nil
					}
				}
				return n, err
			}
			switch c {
			case ' ', '\t', '\r', '\n':
				continue
			}
			d.quad[i] = c
			i++
		}
		m, err := base64.StdEncoding.Decode(d.out[:], d.quad[:])
		if err != nil {
			return n, errBase64
		}
		d.pend = d.out[:m]
	}
	return n, nil
}

// flushDelay is how long a flush may wait for more output: a unary call's
// headers, message and trailers then leave in one write instead of three,
// while a stream's messages still reach the client within this delay.
const flushDelay = 500 * time.Microsecond

// webResponse is the http.ResponseWriter grpc-go writes a gRPC response to;
// it writes gRPC-Web to the client. Headers reach the client when grpc-go
// sends them (WriteHeader, or the first message); grpc-status and every
// trailer become a trailer frame at the end of the body; a call that ends
// before any header was sent becomes a trailers-only response, every
// header and trailer in the HTTP headers and no body. Each Flush from
// grpc-go (one per message) reaches the client within flushDelay.
//
// grpc-go calls every method from the handler's goroutine; the flush timer
// is the only other one, and mu keeps it apart.
type webResponse struct {
	hdr  http.Header // grpc-go's view; never touched by the timer
	text bool

	mu      sync.Mutex
	w       http.ResponseWriter
	sent    map[string]bool // header keys sent as HTTP headers
	started bool
	enc     *base64Chunker // text only
	dirty   bool           // output not yet flushed
	armed   bool           // a flush timer is pending
	timer   *time.Timer
	done    bool  // finish ran: the handler is over, w is off limits
	err     error // first write error
	badText bool  // the request body was not base64
}

func newWebResponse(w http.ResponseWriter, text bool) *webResponse {
	wr := &webResponse{w: w, hdr: make(http.Header), text: text}
	if text {
		wr.enc = &base64Chunker{w: w}
	}
	return wr
}

func (r *webResponse) Header() http.Header { return r.hdr }

// malformedText notes that the client's grpc-web-text body is not base64.
// grpc-go reports a failed body read as UNAVAILABLE, as if the backend
// were gone; finish answers INVALID_ARGUMENT instead, which is the
// client's to fix. It may be called from grpc-go's body reader.
func (r *webResponse) malformedText() {
	r.mu.Lock()
	r.badText = true
	r.mu.Unlock()
}

// badTextMessage is the grpc-message of the answer to a malformed text body.
var badTextMessage = "grpctap: " + errBase64.Error() + " (grpc-web-text bodies are standard base64, padded pieces allowed)"

// requestFailure is the status the client is answered with when its text
// body was not base64, nil otherwise. The proxy asks it (through
// proxy.WithRequestFailure) once reading the body failed, so that the
// capture records the call as the client saw it end.
func (r *webResponse) requestFailure() error {
	r.mu.Lock()
	bad := r.badText
	r.mu.Unlock()
	if !bad {
		return nil
	}
	return status.Error(codes.InvalidArgument, badTextMessage)
}

// blameBody replaces the status grpc-go wrote with INVALID_ARGUMENT for a
// malformed text body.
func (r *webResponse) blameBody() {
	for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
		r.hdr.Del(k)
		r.hdr.Del(http.TrailerPrefix + k)
	}
	r.hdr.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(int(codes.InvalidArgument)))
	r.hdr.Set(http.TrailerPrefix+"Grpc-Message", badTextMessage)
}

func (r *webResponse) WriteHeader(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writeHeaderLocked(code)
}

func (r *webResponse) writeHeaderLocked(code int) {
	if r.started {
		return
	}
	r.started = true
	r.dirty = true
	r.sent = make(map[string]bool, len(r.hdr))
	r.copyHeaders(false)
	r.w.WriteHeader(code)
}

// copyHeaders copies the gRPC response headers to the client's, rewriting
// the content type, and lists them all in Access-Control-Expose-Headers.
// With trailersOnly, trailers (grpc-go marks them with http.TrailerPrefix)
// join the headers.
func (r *webResponse) copyHeaders(trailersOnly bool) {
	out := r.w.Header()
	expose := []string{"grpc-status", "grpc-message", "grpc-status-details-bin"}
	for k, v := range r.hdr {
		if k == "Trailer" {
			continue
		}
		name, isTrailer := strings.CutPrefix(k, http.TrailerPrefix)
		if isTrailer && !trailersOnly {
			continue
		}
		if !isTrailer {
			r.sent[k] = true
		}
		if strings.EqualFold(name, "Content-Type") {
			v = []string{r.contentType(v)}
		}
		out[http.CanonicalHeaderKey(name)] = v
		if lk := strings.ToLower(name); len(v) > 0 && !slices.Contains(expose, lk) {
			expose = append(expose, lk)
		}
	}
	out.Set("Access-Control-Expose-Headers", strings.Join(expose, ", "))
}

// contentType maps grpc-go's application/grpc[+sub] to the gRPC-Web one.
func (r *webResponse) contentType(v []string) string {
	ct := ""
	if len(v) > 0 {
		ct = v[0]
	}
	web := ctGRPCWeb
	if r.text {
		web = ctGRPCWebText
	}
	return web + strings.TrimPrefix(ct, ctGRPC)
}

func (r *webResponse) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writeLocked(b)
}

func (r *webResponse) writeLocked(b []byte) (int, error) {
	r.writeHeaderLocked(http.StatusOK)
	if r.err != nil {
		return 0, r.err
	}
	r.dirty = true
	var n int
	if r.text {
		n, r.err = r.enc.Write(b)
	} else {
		n, r.err = r.w.Write(b)
	}
	return n, r.err
}

// Flush sends what grpc-go wrote so far, within flushDelay. Before any
// header is sent it does nothing, so a call that fails at once stays
// trailers-only.
func (r *webResponse) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started || r.err != nil || !r.dirty || r.armed {
		return
	}
	r.armed = true
	if r.timer == nil {
		r.timer = time.AfterFunc(flushDelay, r.timedFlush)
	} else {
		r.timer.Reset(flushDelay)
	}
}

func (r *webResponse) timedFlush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armed = false
	if !r.done {
		r.flushLocked()
	}
}

func (r *webResponse) flushLocked() {
	if r.err != nil || !r.dirty {
		return
	}
	r.dirty = false
	if r.text {
		if r.err = r.enc.Flush(); r.err != nil {
			return
		}
	}
	r.err = http.NewResponseController(r.w).Flush()
}

// finish ends the response after grpc-go's handler has returned.
func (r *webResponse) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = true
	if r.badText {
		r.blameBody()
	}
	if r.timer != nil {
		r.timer.Stop() // a callback already running sees done and leaves
	}
	if !r.started {
		r.started = true
		r.sent = map[string]bool{}
		r.copyHeaders(true)
		r.w.Header().Del("Content-Length")
		r.w.WriteHeader(http.StatusOK)
		return
	}
	_, _ = r.writeLocked(appendTrailerFrame(nil, r.hdr, r.sent))
	r.flushLocked()
}

// base64Chunker encodes to base64, padding at each Flush so every flushed
// piece decodes on its own.
type base64Chunker struct {
	w    io.Writer
	rest []byte // < 3 bytes not yet encoded
	buf  []byte
}

func (c *base64Chunker) Write(b []byte) (int, error) {
	n := len(b)
	if len(c.rest) > 0 {
		need := 3 - len(c.rest)
		if len(b) < need {
			c.rest = append(c.rest, b...)
			return n, nil
		}
		c.rest = append(c.rest, b[:need]...)
		b = b[need:]
		if err := c.emit(c.rest); err != nil {
			return 0, err
		}
		c.rest = c.rest[:0]
	}
	whole := len(b) / 3 * 3
	if whole > 0 {
		if err := c.emit(b[:whole]); err != nil {
			return 0, err
		}
	}
	c.rest = append(c.rest, b[whole:]...)
	return n, nil
}

func (c *base64Chunker) emit(b []byte) error {
	c.buf = base64.StdEncoding.AppendEncode(c.buf[:0], b)
	_, err := c.w.Write(c.buf)
	return err
}

// Flush encodes the bytes held back, with padding.
func (c *base64Chunker) Flush() error {
	if len(c.rest) == 0 {
		return nil
	}
	err := c.emit(c.rest)
	c.rest = c.rest[:0]
	return err
}
