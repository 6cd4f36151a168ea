package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/store"
)

// buildBinary builds grpctap once per test into a temporary folder.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "grpctap")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is a grpctap process whose standard error is scanned for lines.
type proc struct {
	cmd    *exec.Cmd
	exited chan error
	mu     sync.Mutex
	log    bytes.Buffer
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, "", bin, args...)
}

// startProcIn starts bin in the working directory dir ("": this one).
func startProcIn(t *testing.T, dir, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), exited: make(chan error, 1)}
	p.cmd.Dir = dir
	pr, pw := io.Pipe()
	p.cmd.Stderr, p.cmd.Stdout = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() { err := p.cmd.Wait(); pw.Close(); p.exited <- err }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		select {
		case err := <-p.exited:
			p.exited <- err
		case <-time.After(10 * time.Second):
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitFor waits up to 30 s for a line matching re and returns group 1.
func (p *proc) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.output()); m != nil {
			return m[1]
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("process exited: %v\n%s", err, p.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %v in:\n%s", re, p.output())
	return ""
}

// stop sends SIGINT and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Errorf("%s exited with %v:\n%s", p.cmd.Args[1], err, p.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop:\n%s", p.cmd.Args[1], p.output())
	}
}

// countdown makes one Countdown call of n responses and reads them all.
func countdown(ctx context.Context, client demopb.DemoServiceClient, n int32) error {
	st, err := client.Countdown(ctx, &demopb.CountdownRequest{Count: n})
	if err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("countdown: %w", err)
		}
	}
}

// demoBackend serves the demo backend on a loopback port for the test's
// life and returns its address.
func demoBackend(t *testing.T) string {
	t.Helper()
	backend, err := demo.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close(context.Background()) })
	return backend.Addr()
}

// readCapture opens a capture read-only for the rest of the test and
// returns it with all its calls.
func readCapture(t *testing.T, path string) (*store.Store, []store.Call) {
	t.Helper()
	st, err := store.Open(context.Background(), path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	calls, err := st.ListCalls(context.Background(), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return st, calls
}

// TestSharedCaptureUnderLoad: two proxy processes, repeated imports and
// composer calls record into one capture at the same time. Every call a
// client completed is in it, once, under a unique id, and nothing was
// dropped.
func TestSharedCaptureUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	backend := demoBackend(t)
	db := filepath.Join(t.TempDir(), "shared.db")

	var proxies []*proc
	var addrs []string
	for _, ui := range []string{"127.0.0.1:0", ""} {
		p := startProc(t, bin, "proxy", "--listen", "127.0.0.1:0", "--backend", backend, "--db", db, "--ui", ui)
		addrs = append(addrs, p.waitFor(t, listeningLine))
		proxies = append(proxies, p)
	}
	inspector := strings.TrimSuffix(proxies[0].waitFor(t, inspectorLine), "/")

	var completed, imported, composed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	// Clients: each proxy gets 4 callers of 150 unary calls and 2 streams.
	for _, addr := range addrs {
		client := demoClient(t, addr)
		for c := 0; c < 4; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 150; i++ {
					if _, err := client.Echo(ctx, &demopb.EchoRequest{Message: fmt.Sprint("load ", i)}); err != nil {
						errs <- fmt.Errorf("echo: %w", err)
						return
					}
					completed.Add(1)
				}
			}()
		}
		for c := 0; c < 2; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := countdown(ctx, client, 20); err != nil {
					errs <- err
					return
				}
				completed.Add(1)
			}()
		}
	}
	// Imports, as separate processes, while the proxies record.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 4; i++ {
			out, err := exec.Command(bin, "import", "../../testdata/grpcdump/dump.json", "--db", db).CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("import: %v: %s", err, out)
				return
			}
			var n, first, last int64
			if _, err := fmt.Sscanf(string(out), "imported %d calls (ids %d–%d)", &n, &first, &last); err != nil || last-first+1 != n {
				errs <- fmt.Errorf("import said %q", out)
				return
			}
			imported.Add(n)
		}
	}()
	// Composer calls through the first proxy's inspector.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			body, _ := json.Marshal(map[string]any{"method": "/grpctap.demo.v1.DemoService/Echo",
				"messages": []any{map[string]any{"message": fmt.Sprint("composer ", i)}}})
			resp, err := http.Post(inspector+"/api/invoke", "application/json", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			var c store.CallWithMessages
			err = json.NewDecoder(resp.Body).Decode(&c)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || c.ID == 0 || c.Status == nil || c.Status.Code != 0 {
				errs <- fmt.Errorf("invoke %d: %d %v %+v", i, resp.StatusCode, err, c.Call)
				return
			}
			if len(c.Messages) != 2 || !strings.Contains(string(c.Messages[0].JSON), fmt.Sprint("composer ", i)) {
				errs <- fmt.Errorf("invoke %d answered with another call: %s", i, c.Messages[0].JSON)
				return
			}
			composed.Add(1)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, p := range proxies {
		p.stop(t)
	}

	st, calls := readCapture(t, db)
	want := completed.Load() + imported.Load() + composed.Load()
	t.Logf("%d client calls, %d imported, %d composer calls; %d recorded", completed.Load(), imported.Load(), composed.Load(), len(calls))
	if int64(len(calls)) != want {
		t.Errorf("%d calls recorded, want %d", len(calls), want)
	}
	seen := map[int64]bool{}
	for _, c := range calls {
		if seen[c.ID] {
			t.Fatalf("id %d twice", c.ID)
		}
		seen[c.ID] = true
		if c.State != "closed" || c.DroppedEvents != 0 {
			t.Errorf("call %d: %s, %d events dropped", c.ID, c.State, c.DroppedEvents)
		}
	}
	if n, err := st.DroppedEvents(context.Background()); err != nil || n != 0 {
		t.Errorf("dropped events %d, %v", n, err)
	}
	var streams int
	for _, c := range calls {
		if strings.HasSuffix(c.Method, "/Countdown") {
			streams++
			if c.ResponseCount != 20 {
				t.Errorf("stream %d has %d responses, want 20", c.ID, c.ResponseCount)
			}
		}
	}
	if streams != 2*len(addrs) {
		t.Errorf("%d streams recorded, want %d", streams, 2*len(addrs))
	}
	if os.Getenv("GRPCTAP_VERBOSE") != "" {
		t.Log(proxies[0].output())
	}
}
