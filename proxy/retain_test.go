package proxy_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/grpctap/grpctap/proxy"
)

// retainer keeps every message's payload (Message.Retain) until the test
// is done with them, as the recorder keeps them until they are written.
type retainer struct {
	mu   sync.Mutex
	kept []*proxy.Payload
}

func (r *retainer) StartCall(*proxy.CallStart) proxy.CallObserver { return r }
func (r *retainer) ResponseHeader(*proxy.Header)                  {}
func (r *retainer) EndCall(*proxy.CallEnd)                        {}
func (r *retainer) Message(m *proxy.Message) {
	pl := m.Retain()
	r.mu.Lock()
	r.kept = append(r.kept, pl)
	r.mu.Unlock()
}

// body is message i's content: its number, then a byte pattern of its own,
// so two different messages never have the same bytes.
func body(i, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < size; j++ {
		b[j] = byte(i*31 + j*7)
	}
	return b
}

// TestRetainedPayloadsSurviveBufferReuse: payloads an observer retains
// keep their bytes after the proxy has forwarded them and grpc-go has
// reused its pooled buffers for hundreds of later messages (some spanning
// several HTTP/2 frames), and release cleanly.
func TestRetainedPayloadsSurviveBufferReuse(t *testing.T) {
	obs := &retainer{}
	backend := rawBackend(t, echoHandler)
	addr, _ := startProxy(t, proxy.Options{Backend: backend, Observer: obs})
	cc := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	sizes := []int{100, 4 << 10, 20 << 10, 70 << 10}
	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perWorker; k++ {
				i := w*perWorker + k
				req := body(i, sizes[i%len(sizes)])
				resp, err := unaryRaw(ctx, cc, "/test.Echo/Unary", req)
				if err != nil {
					errs <- fmt.Errorf("call %d: %w", i, err)
					return
				}
				if !bytes.Equal(resp, req) {
					errs <- fmt.Errorf("call %d: echo differs", i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	obs.mu.Lock()
	kept := obs.kept
	obs.mu.Unlock()
	if want := 2 * workers * perWorker; len(kept) != want {
		t.Fatalf("observer kept %d messages, want %d", len(kept), want)
	}
	seen := map[int]int{}
	for n, pl := range kept {
		got := pl.Bytes()
		if len(got) < 4 || pl.Len() != len(got) {
			t.Fatalf("payload %d: %d bytes, Len %d", n, len(got), pl.Len())
		}
		i := int(binary.BigEndian.Uint32(got))
		if want := body(i, sizes[i%len(sizes)]); !bytes.Equal(got, want) {
			t.Fatalf("payload %d (message %d, %d bytes) was overwritten after forwarding", n, i, len(got))
		}
		seen[i]++
		pl.Release()
	}
	for i := 0; i < workers*perWorker; i++ {
		if seen[i] != 2 {
			t.Fatalf("message %d seen %d times, want 2 (request and response)", i, seen[i])
		}
	}
}

// TestMessageFromBytes: a message built with NewMessage gives its own
// bytes from Bytes, Prefix and Retain.
func TestMessageFromBytes(t *testing.T) {
	m := proxy.NewMessage(3, proxy.Response, time.Now(), []byte("hello"))
	if m.Size != 5 || string(m.Bytes()) != "hello" || string(m.Prefix(2)) != "he" || string(m.Prefix(9)) != "hello" {
		t.Fatalf("size %d bytes %q prefix %q", m.Size, m.Bytes(), m.Prefix(2))
	}
	pl := m.Retain()
	if pl.Len() != 5 || string(pl.Bytes()) != "hello" {
		t.Fatalf("payload %d %q", pl.Len(), pl.Bytes())
	}
	pl.Release()
}
