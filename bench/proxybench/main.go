// Command proxybench measures grpctap's forwarding against a direct call and
// against a bare mwitkow/grpc-proxy, in one run on loopback, and prints
// throughput, p50 and p99 for each and the ratios grpctap/grpc-proxy,
// then grpctap as a forward proxy (grpctap-forward: the client sets
// HTTPS_PROXY and dials a name, forward.go) against grpctap in reverse mode.
//
//	go run ./bench/proxybench [-duration 500ms] [-rounds 40]
//
// Targets are measured round-robin, round after round, each round starting
// at the next target and each measurement on a freshly collected heap, and
// each figure is the median over the rounds, so a noisy neighbour skews all
// targets alike.
// Short measurements and many rounds (the defaults) pair each target with
// the baseline closely in time: with 2s x 5 the same build's ratio swung
// by ±15% from run to run on a shared 2-core machine, and with 20 rounds
// the one-caller p99 ratio still swung between 0.67x and 1.22x; with 40
// it stayed within 0.83x-0.95x over three runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	gproxy "github.com/mwitkow/grpc-proxy/proxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/grpctap/grpctap/internal/benchutil"
	"github.com/grpctap/grpctap/proxy"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

type target struct {
	name string
	cc   *grpc.ClientConn
	// settle, when set, runs after each measurement of the target and
	// returns how long it took: the time to finish work the load left
	// behind (a recorder's queue). It is added to the measurement's
	// elapsed time, so that work is charged to the target, and it does not
	// spill into the next target's measurement.
	settle func() time.Duration
}

type benchCase struct {
	name    string
	workers int
	size    int
	stream  bool
}

// Targets a measurement may add beyond the built-in three; the recorder
// registers itself here.
var extraTargets []func(backend string, log *slog.Logger) (t extraTarget, err error)

type extraTarget struct {
	name    string
	obs     proxy.Observer
	settle  func() time.Duration // see target.settle; may be nil
	closeFn func() error
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("proxybench", flag.ContinueOnError)
	dur := fs.Duration("duration", 500*time.Millisecond, "how long each measurement runs")
	rounds := fs.Int("rounds", 40, "rounds over all targets; figures are medians over rounds")
	maxOps := fs.Int("max-ops", 2_000_000, "upper bound on calls per measurement")
	only := fs.String("cases", "", "comma-separated case names to run (default: all)")
	onlyTargets := fs.String("targets", "", "comma-separated targets to measure (default: all; grpc-proxy is always measured as the baseline)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	if *memProfile != "" {
		defer func() {
			if err := writeHeapProfile(*memProfile); err != nil {
				fmt.Fprintln(os.Stderr, "memprofile:", err)
			}
		}()
	}
	fwdLis, err := reserveForward()
	if err != nil {
		return err
	}
	defer fwdLis.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	benchutil.FirstError = func(err error) { fmt.Fprintln(os.Stderr, "error:", err) }
	stop := []func(){}
	defer func() {
		for i := len(stop) - 1; i >= 0; i-- {
			stop[i]()
		}
	}()
	serve := func(srv *grpc.Server) (string, error) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		go func() { _ = srv.Serve(lis) }()
		stop = append(stop, srv.Stop)
		return lis.Addr().String(), nil
	}
	connect := func(addr string) (*grpc.ClientConn, error) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			stop = append(stop, func() { _ = cc.Close() })
		}
		return cc, err
	}

	backend, err := serve(benchutil.NewEchoServer())
	if err != nil {
		return err
	}

	// Baseline: grpc-proxy as its README sets it up.
	baseConn, err := connect(backend)
	if err != nil {
		return err
	}
	baseAddr, err := serve(gproxy.NewProxy(baseConn))
	if err != nil {
		return err
	}

	addTap := func(name string, obs proxy.Observer) (string, error) {
		p, err := proxy.New(proxy.Options{Backend: backend, Observer: obs, Logger: log})
		if err != nil {
			return "", err
		}
		stop = append(stop, func() { _ = p.Close() })
		return serve(p.NewServer())
	}
	tapAddr, err := addTap("grpctap", &countingObserver{})
	if err != nil {
		return err
	}

	targets := []target{}
	for _, t := range []struct{ name, addr string }{
		{"direct", backend}, {"grpc-proxy", baseAddr}, {"grpctap", tapAddr},
	} {
		cc, err := connect(t.addr)
		if err != nil {
			return err
		}
		targets = append(targets, target{name: t.name, cc: cc})
	}
	for _, mk := range extraTargets {
		et, err := mk(backend, log)
		if err != nil {
			return err
		}
		stop = append(stop, func() { _ = et.closeFn() })
		addr, err := addTap(et.name, et.obs)
		if err != nil {
			return err
		}
		cc, err := connect(addr)
		if err != nil {
			return err
		}
		targets = append(targets, target{name: et.name, cc: cc, settle: et.settle})
	}

	fwdAddr, stopFwd, err := serveForward(fwdLis, backend, log)
	if err != nil {
		return err
	}
	stop = append(stop, stopFwd)
	fwdConn, err := connect(fwdAddr)
	if err != nil {
		return err
	}
	targets = append(targets, target{name: forwardName, cc: fwdConn})

	if *onlyTargets != "" {
		var keep []target
		for _, t := range targets {
			if t.name == "grpc-proxy" || strings.Contains(","+*onlyTargets+",", ","+t.name+",") {
				keep = append(keep, t)
			}
		}
		targets = keep
	}

	cases := []benchCase{
		{"unary c=1 100B", 1, 100, false},
		{"unary c=16 100B", 16, 100, false},
		{"unary c=1 64KiB", 1, 64 << 10, false},
		{"unary c=16 64KiB", 16, 64 << 10, false},
		{"bidi stream 100B", 1, 100, true},
	}
	if *only != "" {
		var keep []benchCase
		for _, c := range cases {
			if strings.Contains(","+*only+",", ","+c.name+",") {
				keep = append(keep, c)
			}
		}
		cases = keep
	}

	fmt.Fprintf(out, "proxybench: %d rounds x %v per measurement, GOMAXPROCS=%d, loopback\n", *rounds, *dur, runtimeProcs())
	results := map[string]map[string][]benchutil.Result{}
	for r := 0; r < *rounds; r++ {
		for _, c := range cases {
			if results[c.name] == nil {
				results[c.name] = map[string][]benchutil.Result{}
			}
			// Each round starts at a different target, and each
			// measurement with a collected heap: garbage one target
			// leaves behind (grpc-proxy allocates per message) is then
			// not always collected during the same next target's turn.
			for i := range targets {
				t := targets[(i+r)%len(targets)]
				runtime.GC()
				res, err := measure(t.cc, c, *dur, *maxOps)
				if err != nil {
					return fmt.Errorf("%s via %s: %w", c.name, t.name, err)
				}
				if t.settle != nil {
					res.Elapsed += t.settle()
				}
				results[c.name][t.name] = append(results[c.name][t.name], res)
			}
		}
	}

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\ttarget\tops/s\tp50\tp99\terrors\tops/s vs grpc-proxy\tp99 vs grpc-proxy\t")
	for _, c := range cases {
		baseTP, _, baseP99, _ := benchutil.Median(results[c.name]["grpc-proxy"])
		for _, t := range targets {
			tp, p50, p99, errs := benchutil.Median(results[c.name][t.name])
			ratio, pr := "", ""
			if t.name != "direct" && t.name != "grpc-proxy" {
				ratio = fmt.Sprintf("%.2fx", tp/baseTP)
				if !c.stream {
					pr = fmt.Sprintf("%.2fx", float64(p99)/float64(baseP99))
				}
			}
			lat50, lat99 := fmtDur(p50), fmtDur(p99)
			if c.stream {
				lat50, lat99 = "-", "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%d\t%s\t%s\t\n", c.name, t.name, tp, lat50, lat99, errs, ratio, pr)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printForwardRatios(out, cases, results)
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

// measure runs one case against one target.
func measure(cc *grpc.ClientConn, c benchCase, d time.Duration, maxOps int) (benchutil.Result, error) {
	payload := protoPayload(c.size)
	ctx := context.Background()
	if !c.stream {
		// Warm the connection so the first call's dial is not measured.
		if err := benchutil.Unary(ctx, cc, payload); err != nil {
			return benchutil.Result{}, err
		}
		return benchutil.Run(ctx, c.workers, d, maxOps, func(ctx context.Context) error { return benchutil.Unary(ctx, cc, payload) }), nil
	}
	return streamRate(ctx, cc, payload, d, maxOps)
}

// protoPayload is a valid protobuf message of about n bytes (field 1,
// bytes): grpc-proxy parses every frame, so random bytes would fail there.
func protoPayload(n int) []byte {
	body := make([]byte, max(n-4, 0))
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), body)
}

// streamRate sends messages down one bidi stream as fast as flow control
// allows and counts the echoes that come back.
func streamRate(ctx context.Context, cc *grpc.ClientConn, payload []byte, d time.Duration, maxOps int) (benchutil.Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := benchutil.OpenStream(ctx, cc)
	if err != nil {
		return benchutil.Result{}, err
	}
	var sent atomic.Int64
	deadline := time.Now().Add(d)
	sendErr := make(chan error, 1)
	go func() {
		for i := 0; i < maxOps && time.Now().Before(deadline); i++ {
			if err := cs.SendMsg(&payload); err != nil {
				sendErr <- err
				return
			}
			sent.Add(1)
		}
		sendErr <- cs.CloseSend()
	}()
	start := time.Now()
	got := 0
	for {
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			if err == io.EOF {
				break
			}
			return benchutil.Result{}, err
		}
		got++
	}
	elapsed := time.Since(start)
	if err := <-sendErr; err != nil {
		return benchutil.Result{}, err
	}
	if int64(got) != sent.Load() {
		return benchutil.Result{}, fmt.Errorf("sent %d messages, %d came back", sent.Load(), got)
	}
	return benchutil.Result{Ops: got, Elapsed: elapsed}, nil
}

// countingObserver is the cheapest observer that keeps what it sees: it
// takes each message's bytes as the recorder does (Retain, without a copy)
// and counts them, so the figures include the proxy's observer path. It
// releases them at once where the recorder would after writing them.
type countingObserver struct{ calls, msgs, bytes atomic.Int64 }

func (o *countingObserver) StartCall(*proxy.CallStart) proxy.CallObserver {
	o.calls.Add(1)
	return o
}
func (o *countingObserver) ResponseHeader(*proxy.Header) {}
func (o *countingObserver) Message(m *proxy.Message) {
	pl := m.Retain()
	o.msgs.Add(1)
	o.bytes.Add(int64(pl.Len()))
	pl.Release()
}
func (o *countingObserver) EndCall(*proxy.CallEnd) {}

// writeHeapProfile writes the allocations made since the start (the
// "allocs" profile), for `go tool pprof -sample_index=alloc_space`.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
