// Command recordcost measures what recording costs the grpctap proxy
// process: the CPU time (user + system, from /proc/PID/stat) a real
// `grpctap proxy` child spends per unary call and per bidi stream message,
// recording to SQLite and with --no-record, and the ratios between them.
//
//	go run ./bench/recordcost [-rounds 7] [-calls 20000] [-messages 20000]
//	    [-baseline-binary PATH] [-profile DIR]
//
// It builds grpctap from this module into a temporary directory (or takes
// -binary), serves an echo backend in its own process on 127.0.0.1:0 and
// starts one child per mode in front of it. Each round sends the same
// fixed load through each child in turn, the order rotating from round to
// round: unary calls from -callers concurrent callers, then -streams bidi
// streams echoing -messages messages in all, -size bytes each way. A
// measurement is the child's CPU time from before the load until the
// child is idle again, so the recorder's backlog is charged to recording.
// Figures are medians over the rounds. CPU time, not wall time: the
// machine may be shared.
//
// -baseline-binary adds the same two modes of another grpctap build (an
// older commit, say), for A/B comparisons of a change. -profile DIR, after
// the rounds, takes a CPU profile and the allocations of every child under
// each load through its --pprof endpoint, for `go tool pprof`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/grpctap/grpctap/internal/benchutil"
	"github.com/grpctap/grpctap/internal/syncbuf"
)

type config struct {
	rounds, calls, callers    int
	streams, messages, size   int
	binary, baseline, profile string
	profileFor                time.Duration
	timeout                   time.Duration
}

func main() {
	var cfg config
	flag.IntVar(&cfg.rounds, "rounds", 7, "rounds; each measures every mode under both loads, and figures are medians over rounds")
	flag.IntVar(&cfg.calls, "calls", 20000, "unary calls per measurement")
	flag.IntVar(&cfg.callers, "callers", 16, "concurrent unary callers")
	flag.IntVar(&cfg.streams, "streams", 16, "concurrent bidi streams")
	flag.IntVar(&cfg.messages, "messages", 100000, "stream messages sent per measurement, spread over the streams (each is echoed back)")
	flag.IntVar(&cfg.size, "size", 100, "message size in bytes, each way")
	flag.StringVar(&cfg.binary, "binary", "", "grpctap binary to measure (default: go build ./cmd/grpctap into a temporary directory)")
	flag.StringVar(&cfg.baseline, "baseline-binary", "", "also measure this grpctap binary, in both modes, alternated with the other")
	flag.StringVar(&cfg.profile, "profile", "", "after the rounds, write CPU and allocation profiles of every child under each load into this directory (children get --pprof)")
	flag.DurationVar(&cfg.profileFor, "profile-seconds", 10*time.Second, "length of each CPU profile with -profile")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Minute, "bound on the whole run")
	flag.Parse()
	benchutil.Main("recordcost", cfg.timeout, func(ctx context.Context) error { return run(ctx, cfg, os.Stdout) })
}

// child is one `grpctap proxy` process under test.
type child struct {
	*benchutil.Proxy
	name   string
	record bool
	db     string // its capture; "" with --no-record
	bin    string
	calls  atomic.Int64 // calls sent through it, for the check at the end
}

// load is one kind of fixed load; it returns how many operations (calls,
// stream messages) it made.
type load struct {
	name, unit string
	run        func(ctx context.Context, c *child) (int, error)
}

// sample is one measurement.
type sample struct {
	ops       int
	cpu, wall time.Duration
}

func (s sample) perOp() float64 { return float64(s.cpu.Microseconds()) / float64(s.ops) }

func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.rounds < 1 || cfg.calls < 1 || cfg.callers < 1 || cfg.streams < 1 || cfg.messages < cfg.streams || cfg.size < 0 {
		return errors.New("-rounds, -calls, -callers and -streams must be at least 1, -messages at least -streams")
	}
	tick, err := benchutil.ClockTick(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "recordcost-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	bin := cfg.binary
	if bin == "" {
		bin = filepath.Join(tmp, "grpctap")
		fmt.Fprintln(out, "building grpctap ...")
		if b, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/grpctap").CombinedOutput(); err != nil {
			return fmt.Errorf("build grpctap (run from the module root): %w\n%s", err, b)
		}
	}

	backend := benchutil.NewEchoServer()
	defer backend.Stop()
	backendAddr, err := serve(backend)
	if err != nil {
		return err
	}

	var children []*child
	defer func() {
		for _, c := range children {
			c.stop()
		}
	}()
	type build struct{ label, bin string }
	builds := []build{{"", bin}}
	if cfg.baseline != "" {
		builds = append(builds, build{"baseline ", cfg.baseline})
	}
	for _, b := range builds {
		for _, record := range []bool{true, false} {
			name := b.label + "record"
			if !record {
				name = b.label + "no-record"
			}
			c, err := startChild(ctx, name, b.bin, backendAddr, record, cfg.profile != "", filepath.Join(tmp, strconv.Itoa(len(children))+".db"))
			if c != nil {
				children = append(children, c)
			}
			if err != nil {
				return err
			}
		}
	}

	payload := make([]byte, cfg.size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	loads := []load{
		{fmt.Sprintf("unary (%d callers, %d B)", cfg.callers, cfg.size), "call", func(ctx context.Context, c *child) (int, error) {
			return unaryLoad(ctx, c, cfg.calls, cfg.callers, payload)
		}},
		{fmt.Sprintf("bidi (%d streams, %d B)", cfg.streams, cfg.size), "stream msg", func(ctx context.Context, c *child) (int, error) {
			return streamLoad(ctx, c, cfg.streams, cfg.messages/cfg.streams, payload)
		}},
	}

	// Warm up: connections, the schema learner's first look-up, grown
	// stacks and pools. Not measured.
	for _, c := range children {
		for _, l := range loads {
			if _, err := l.run(ctx, c); err != nil {
				return fmt.Errorf("warm-up of %s, %s: %w", c.name, l.name, err)
			}
		}
		if _, err := idleCPU(ctx, c, tick); err != nil {
			return err
		}
	}

	fmt.Fprintf(out, "recordcost: %d rounds; per measurement %d unary calls from %d callers, or %d streams x %d messages; %d B each way; CPU of the proxy process (tick %v)\n",
		cfg.rounds, cfg.calls, cfg.callers, cfg.streams, cfg.messages/cfg.streams, cfg.size, tick)
	results := make([][][]sample, len(loads)) // [load][child][round]
	for li := range loads {
		results[li] = make([][]sample, len(children))
	}
	for r := 0; r < cfg.rounds; r++ {
		for li, l := range loads {
			for i := range children {
				ci := (i + r) % len(children) // each round starts with the next mode
				c := children[ci]
				s, err := measure(ctx, c, l, tick)
				if err != nil {
					return fmt.Errorf("round %d, %s via %s: %w", r+1, l.name, c.name, err)
				}
				results[li][ci] = append(results[li][ci], s)
				fmt.Fprintf(out, "  round %d  %-26s %-28s %8.1f µs CPU/%s  (%d %ss, CPU %v, wall %v)\n",
					r+1, l.name, c.name, s.perOp(), l.unit, s.ops, l.unit, s.cpu.Round(time.Millisecond), s.wall.Round(time.Millisecond))
			}
		}
	}

	fmt.Fprintf(out, "\nmedians over %d rounds, µs of proxy CPU per operation\n", cfg.rounds)
	for li, l := range loads {
		fmt.Fprintf(out, "%s, per %s:\n", l.name, l.unit)
		med := make([]float64, len(children))
		for ci, c := range children {
			med[ci] = median(results[li][ci])
			fmt.Fprintf(out, "  %-28s %8.1f\n", c.name, med[ci])
		}
		// Each ratio twice: of the medians, and the median of each
		// round's ratio (the two measured close together in time).
		ratio := func(name string, a, b int) {
			fmt.Fprintf(out, "  %-28s %8.2fx  (per round: %.2fx)\n", name, med[a]/med[b], pairedRatio(results[li][a], results[li][b]))
		}
		for b := 0; b < len(children); b += 2 { // children come in pairs: record, no-record
			ratio(children[b].name+"/no-record", b, b+1)
		}
		if len(children) == 4 {
			ratio("record/baseline record", 0, 2)
			ratio("no-record/baseline no-rec.", 1, 3)
		}
	}

	if cfg.profile != "" {
		if err := profileAll(ctx, cfg, children, loads, tick, out); err != nil {
			return err
		}
	}
	for _, c := range children {
		c.stop()
	}
	for _, c := range children {
		if c.record {
			fmt.Fprintf(out, "%s: %s\n", c.name, c.checkCapture(ctx))
		}
	}
	return nil
}

// serve serves srv on a free loopback port until it is stopped.
func serve(srv *grpc.Server) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("backend listen: %w", err)
	}
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), nil
}

// startChild starts a grpctap proxy in front of backend and waits until it
// listens. The child it returns, even with an error, must be stopped; it is
// nil only when the process did not start.
func startChild(ctx context.Context, name, bin, backend string, record, pprof bool, db string) (*child, error) {
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--backend", backend, "--ui", ""}
	if record {
		args = append(args, "--db", db)
	} else {
		args = append(args, "--no-record")
		db = ""
	}
	if pprof {
		args = append(args, "--pprof", "127.0.0.1:0")
	}
	p, err := benchutil.StartProxy(ctx, name, bin, args...)
	if p == nil {
		return nil, err
	}
	return &child{Proxy: p, name: name, record: record, db: db, bin: bin}, err
}

func (c *child) stop() { c.Stop() }

// checkCapture says how much the stopped child recorded: the newest call's
// id (calls are numbered from 1 in a new capture) against the calls sent,
// and the drops the capture counted.
func (c *child) checkCapture(ctx context.Context) string {
	cmd := exec.CommandContext(ctx, c.bin, "calls", "--db", c.db, "--json", "--limit", "1")
	errBuf := &syncbuf.Buffer{}
	cmd.Stderr = errBuf
	b, err := cmd.Output()
	if err != nil {
		return fmt.Sprintf("cannot read the capture: %v %s", err, errBuf)
	}
	id := regexp.MustCompile(`"id":(\d+)`).FindSubmatch(b)
	if id == nil {
		return fmt.Sprintf("no call in the capture, %d sent", c.calls.Load())
	}
	msg := fmt.Sprintf("newest call id %s, %d calls sent", id[1], c.calls.Load())
	if drops := strings.TrimSpace(errBuf.String()); drops != "" {
		msg += "; " + drops
	} else {
		msg += "; no events dropped"
	}
	return msg
}

// measure runs l through c and returns the child's CPU time from before
// the load until it is idle after it.
func measure(ctx context.Context, c *child, l load, tick time.Duration) (sample, error) {
	before, err := benchutil.ProcCPU(c.Cmd.Process.Pid, tick)
	if err != nil {
		return sample{}, err
	}
	t0 := time.Now()
	ops, err := l.run(ctx, c)
	if err != nil {
		return sample{}, err
	}
	wall := time.Since(t0)
	after, err := idleCPU(ctx, c, tick)
	if err != nil {
		return sample{}, err
	}
	return sample{ops: ops, cpu: after - before, wall: wall}, nil
}

// idleCPU waits until the child has used no CPU for 150ms (a recorder
// writing its backlog is busy), at most 15s, and returns its CPU time.
func idleCPU(ctx context.Context, c *child, tick time.Duration) (time.Duration, error) {
	prev, err := benchutil.ProcCPU(c.Cmd.Process.Pid, tick)
	if err != nil {
		return 0, err
	}
	for i := 0; i < 100; i++ {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-c.Exited:
			return 0, fmt.Errorf("%s exited:\n%s", c.name, c.Stderr)
		case <-time.After(150 * time.Millisecond):
		}
		cur, err := benchutil.ProcCPU(c.Cmd.Process.Pid, tick)
		if err != nil {
			return 0, err
		}
		if cur == prev {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

// callTimeout bounds each call and each stream of a load.
const callTimeout = time.Minute

// unaryLoad makes n unary calls through c from callers goroutines.
func unaryLoad(ctx context.Context, c *child, n, callers int, payload []byte) (int, error) {
	var next atomic.Int64
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for w := 0; w < callers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				c.calls.Add(1)
				err := benchutil.Unary(cctx, c.CC, payload)
				cancel()
				if err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return 0, fmt.Errorf("unary calls: %w", err)
	}
	return n, nil
}

// streamLoad opens streams bidi streams through c; each sends perStream
// messages, half-closes and reads every echo back. It returns the messages
// sent.
func streamLoad(ctx context.Context, c *child, streams, perStream int, payload []byte) (int, error) {
	errs := make([]error, streams)
	var wg sync.WaitGroup
	for s := 0; s < streams; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[s] = echoStream(ctx, c, perStream, payload)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("streams: %w", err)
	}
	return streams * perStream, nil
}

func echoStream(ctx context.Context, c *child, n int, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	c.calls.Add(1)
	cs, err := benchutil.OpenStream(ctx, c.CC)
	if err != nil {
		return err
	}
	sent := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := cs.SendMsg(&payload); err != nil {
				sent <- err
				return
			}
		}
		sent <- cs.CloseSend()
	}()
	got := 0
	for {
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			cancel() // ends the sender too
			<-sent
			return err
		}
		got++
	}
	if err := <-sent; err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("sent %d messages, %d came back", n, got)
	}
	return nil
}

// profileAll takes, for each child and load, a CPU profile of the child
// while the load runs over and over, and its allocations over the same
// time (the difference of two "allocs" profiles, via pprof's -base).
func profileAll(ctx context.Context, cfg config, children []*child, loads []load, tick time.Duration, out io.Writer) error {
	if err := os.MkdirAll(cfg.profile, 0o755); err != nil {
		return fmt.Errorf("profile directory: %w", err)
	}
	fmt.Fprintf(out, "\nprofiles (%v each) in %s:\n", cfg.profileFor, cfg.profile)
	for li, l := range loads {
		short := []string{"unary", "bidi"}[li]
		for _, c := range children {
			base := filepath.Join(cfg.profile, strings.ReplaceAll(c.name, " ", "-")+"-"+short)
			if err := profileOne(ctx, c, l, cfg.profileFor, tick, base); err != nil {
				return fmt.Errorf("profile %s under %s: %w", c.name, l.name, err)
			}
			fmt.Fprintf(out, "  go tool pprof -top %s.cpu.pprof\n  go tool pprof -sample_index=alloc_space -top -base %s.allocs-before.pprof %s.allocs.pprof\n", base, base, base)
		}
	}
	return nil
}

func profileOne(ctx context.Context, c *child, l load, d, tick time.Duration, base string) error {
	if err := fetch(ctx, c.Pprof, "/debug/pprof/allocs", base+".allocs-before.pprof"); err != nil {
		return err
	}
	cpuDone := make(chan error, 1)
	go func() {
		cpuDone <- fetch(ctx, c.Pprof, fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(d.Seconds()))), base+".cpu.pprof")
	}()
	// Keep the load on until the profile is written (at most 1000 runs).
	var loadErr error
	for i := 0; i < 1000 && loadErr == nil; i++ {
		select {
		case err := <-cpuDone:
			if err != nil {
				return err
			}
			return fetch(ctx, c.Pprof, "/debug/pprof/allocs", base+".allocs.pprof")
		default:
		}
		if _, loadErr = l.run(ctx, c); loadErr == nil {
			// As in a measurement, the recorder catches up before the
			// next run (it would drop events otherwise).
			_, loadErr = idleCPU(ctx, c, tick)
		}
	}
	err := <-cpuDone
	return errors.Join(loadErr, err, errors.New("the load ended before the profile"))
}

// fetch saves what GET http://addr+path answers into file.
func fetch(ctx context.Context, addr, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return f.Close()
}

func median(s []sample) float64 {
	v := make([]float64, len(s))
	for i := range s {
		v[i] = s[i].perOp()
	}
	return medianOf(v)
}

// pairedRatio is the median over rounds of a's figure over b's.
func pairedRatio(a, b []sample) float64 {
	v := make([]float64, len(a))
	for i := range a {
		v[i] = a[i].perOp() / b[i].perOp()
	}
	return medianOf(v)
}

func medianOf(v []float64) float64 {
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 0 {
		return (v[m-1] + v[m]) / 2
	}
	return v[m]
}
