package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/grpctap/grpctap/internal/rawcodec"
	"github.com/grpctap/grpctap/internal/stubserver"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
)

// TestRecordHelperProcess is not a test: TestRecordKill9 runs the test
// binary as a separate process that proxies and records until killed.
func TestRecordHelperProcess(t *testing.T) {
	if os.Getenv("GRPCTAP_RECORD_HELPER") != "1" {
		t.Skip("helper process for TestRecordKill9")
	}
	ctx := context.Background()
	f := recordFlags{db: os.Getenv("GRPCTAP_DB"), keep: keepFlags{maxMessage: recorder.DefaultMaxMessage}}
	cfg, err := f.config(quietLog())
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(3)
	}
	rec, err := openRecording(ctx, cfg, quietLog())
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(3)
	}
	p, err := proxy.New(proxy.Options{Backend: os.Getenv("GRPCTAP_BACKEND"), Observer: rec.recorder, Logger: quietLog()})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(3)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(3)
	}
	fmt.Printf("grpctap proxy listening addr=%s\n", lis.Addr())
	_ = p.NewServer().Serve(lis) // until SIGKILL
	os.Exit(4)
}

// TestRecordKill9 kills a recording proxy (a real process) with SIGKILL in
// the middle of traffic and checks the capture: not corrupt, everything
// acknowledged well before the kill recorded, and calls left open closed
// with a status saying the proxy stopped once a recorder opens it again.
func TestRecordKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	t.Run("helper", func(t *testing.T) {
		backend := stubserver.RawEcho(t)
		db := filepath.Join(t.TempDir(), "cap.db")
		cmd := exec.Command(os.Args[0], "-test.run=^TestRecordHelperProcess$")
		cmd.Env = append(os.Environ(), "GRPCTAP_RECORD_HELPER=1", "GRPCTAP_DB="+db, "GRPCTAP_BACKEND="+backend)
		killScenario(t, cmd, false, db)
	})
	t.Run("binary", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "grpctap")
		build := exec.Command("go", "build", "-o", bin, ".")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		backend := stubserver.RawEcho(t)
		db := filepath.Join(t.TempDir(), "cap.db")
		// The echo backend has no reflection service: do not ask it.
		cmd := exec.Command(bin, "proxy", "--listen", "127.0.0.1:0", "--backend", backend, "--db", db, "--no-reflection", "--ui", "")
		killScenario(t, cmd, true, db)
	})
}

// recordedStreams counts the lines of 'calls --json' output that show a
// stream open with 5 messages each way.
func recordedStreams(out string) int {
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var c store.Call
		if json.Unmarshal([]byte(l), &c) == nil && c.State == "open" && c.RequestCount == 5 && c.ResponseCount == 5 {
			n++
		}
	}
	return n
}

var killListenLine = regexp.MustCompile(`grpctap proxy listening.*addr=(127\.0\.0\.1:\d+)`)

func killScenario(t *testing.T, cmd *exec.Cmd, fromStderr bool, db string) {
	t.Helper()
	pr, pw := io.Pipe()
	if fromStderr {
		cmd.Stderr = pw
	} else {
		cmd.Stdout = pw
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
		}
		<-exited
	})
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := killListenLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case err := <-exited:
		t.Fatalf("proxy exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("proxy did not start")
	}

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// A deadline on every call: a wedged proxy fails the test, not hangs it.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Phase 1: 20 finished unary-shaped calls and 4 long streams with 5
	// messages each way, all acknowledged.
	for i := 0; i < 20; i++ {
		var resp []byte
		req := []byte(fmt.Sprintf("unary %d", i))
		if err := cc.Invoke(ctx, "/kill.K/Unary", &req, &resp); err != nil {
			t.Fatal(err)
		}
	}
	// Bodies large enough for the segment folder.
	big := func(i int) []byte { return bytes.Repeat([]byte{byte(i), 0xb1}, 20<<10) }
	for i := 0; i < 3; i++ {
		req, resp := big(i), []byte(nil)
		if err := cc.Invoke(ctx, "/kill.K/Big", &req, &resp); err != nil {
			t.Fatal(err)
		}
	}
	streams := make([]grpc.ClientStream, 4)
	for i := range streams {
		cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/kill.K/Stream")
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = cs
		for j := 0; j < 5; j++ {
			b := []byte(fmt.Sprintf("stream %d msg %d", i, j))
			if err := cs.SendMsg(&b); err != nil {
				t.Fatal(err)
			}
			if err := cs.RecvMsg(&b); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Phase 2 starts once a reader (another process's view, through the
	// CLI) sees what phase 1 acknowledged: the streams open with every
	// message so far (the recorder batches within ~20 ms; this waits up to
	// 10 s).
	var live string
	stubserver.WaitFor(t, 10*time.Second, func() error {
		live = mustRun(t, "calls", "--db", db, "--method", "/kill.K/Stream", "--json")
		if n := recordedStreams(live); n != 4 {
			return fmt.Errorf("a reader sees %d of the 4 streams phase 1 opened:\n%s", n, live)
		}
		return nil
	})
	for _, l := range strings.Split(strings.TrimSpace(live), "\n") {
		var c store.Call
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatal(err)
		}
		if c.State != "open" || c.RequestCount != 5 || c.ResponseCount != 5 {
			t.Errorf("live stream %d: %s %d/%d", c.ID, c.State, c.RequestCount, c.ResponseCount)
		}
	}
	if n := len(callIDs(t, live)); n != 4 {
		t.Errorf("%d live streams, want 4", n)
	}
	var wg sync.WaitGroup
	var bursts atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; ; j++ {
				var resp []byte
				req := []byte(fmt.Sprintf("burst %d %d", i, j))
				if i == 0 {
					req = big(j) // segment writes cut off by the kill too
				}
				if err := cc.Invoke(ctx, "/kill.K/Burst", &req, &resp); err != nil {
					return
				}
				bursts.Add(1)
			}
		}(i)
	}
	// The kill lands in the middle of traffic: after 200 calls of it (at
	// most 10 s).
	for try := 0; bursts.Load() < 200 && try < 1000; try++ {
		time.Sleep(10 * time.Millisecond)
	}
	killed = true
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-exited
	exited <- nil // for Cleanup
	cancel()
	wg.Wait()

	// The file is a sound capture.
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer st.Close()
	if err := st.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.New(context.Background(), st, recorder.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "calls", "--db", db, "--method", "/kill.K/Unary", "--json")
	if n := len(callIDs(t, out)); n != 20 {
		t.Errorf("%d unary calls recorded, want 20", n)
	}
	calls, err := st.ListCalls(context.Background(), store.Filter{Method: "/kill.K/Stream"})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 4 {
		t.Fatalf("%d streams recorded, want 4", len(calls))
	}
	for _, c := range calls {
		if c.State != "closed" || c.Status == nil || c.Status.Name != "UNAVAILABLE" || c.Status.Message != store.StoppedMessage {
			t.Errorf("stream %d after restart: state %s status %+v", c.ID, c.State, c.Status)
		}
		if c.RequestCount != 5 || c.ResponseCount != 5 {
			t.Errorf("stream %d: %d/%d messages, want 5/5", c.ID, c.RequestCount, c.ResponseCount)
		}
	}
	bigCalls, err := st.ListCalls(context.Background(), store.Filter{Method: "/kill.K/Big"})
	if err != nil || len(bigCalls) != 3 {
		t.Fatalf("%d large-body calls recorded (%v), want 3", len(bigCalls), err)
	}
	for i, c := range bigCalls {
		full, err := st.GetCall(context.Background(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range full.Messages {
			if !bytes.Equal(m.Raw, big(i)) || m.BodyError != "" {
				t.Errorf("call %d message %d: %d bytes back, %q", c.ID, m.Seq, len(m.Raw), m.BodyError)
			}
		}
	}
	// Burst calls with large bodies read back whole or not at all.
	burst, _ := st.ListCalls(context.Background(), store.Filter{Method: "/kill.K/Burst"})
	for _, c := range burst {
		full, err := st.GetCall(context.Background(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range full.Messages {
			if m.BodyError != "" || int64(len(m.Raw)) != m.Size {
				t.Errorf("burst call %d message %d: %d of %d bytes, %q", c.ID, m.Seq, len(m.Raw), m.Size, m.BodyError)
			}
		}
	}
	all, _ := st.ListCalls(context.Background(), store.Filter{})
	for _, c := range all {
		if c.State != "closed" {
			t.Errorf("call %d still open", c.ID)
		}
	}
	t.Logf("%d calls in the capture after the kill (%d burst calls)", len(all), len(all)-27)
}
