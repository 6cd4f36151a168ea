// Command fleetbench measures recording into a shared capture: 1 and 4
// `grpctap proxy` processes recording into one PostgreSQL database, and
// the same proxies recording into one SQLite file, under the same load.
//
//	go run ./bench/fleetbench [-rounds 3] [-calls 20000] [-callers 8] [-proxies 1,4]
//
// Each measurement starts the proxies on a new capture (a new SQLite file;
// a new database on a throwaway PostgreSQL cluster the bench starts, as
// the tests do), sends -calls unary calls split evenly over the proxies
// from -callers concurrent callers per proxy, and waits until every proxy
// is idle (its recorder has written its backlog). It reports, as medians
// over the rounds (the order of the setups rotating from round to round):
//
//   - calls/s recorded: calls in the capture over the time from the first
//     call to the last proxy idle, with the drops the capture counted
//     (the figure holds only with zero drops);
//   - proxy CPU per recorded call: user + system time of all the proxy
//     processes (/proc/PID/stat) over the calls recorded;
//   - database CPU per call, for PostgreSQL: the server's processes (the
//     postmaster, its live backends and those that ended);
//
// and the ratios PostgreSQL / SQLite for each number of proxies. CPU time,
// not wall time, is the cost figure: the machine may be shared.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/grpctap/grpctap/internal/benchutil"
	"github.com/grpctap/grpctap/internal/pgtest"
	"github.com/grpctap/grpctap/store"
)

type config struct {
	rounds, calls, callers, size int
	proxies                      []int
	binary                       string
	timeout                      time.Duration
}

func main() {
	var cfg config
	var proxies string
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds; each measures every setup, and figures are medians over rounds")
	flag.IntVar(&cfg.calls, "calls", 20000, "unary calls per measurement, split evenly over the proxies")
	flag.IntVar(&cfg.callers, "callers", 8, "concurrent callers per proxy")
	flag.IntVar(&cfg.size, "size", 100, "message size in bytes, each way")
	flag.StringVar(&proxies, "proxies", "1,4", "numbers of proxies to measure, comma-separated")
	flag.StringVar(&cfg.binary, "binary", "", "grpctap binary (default: go build ./cmd/grpctap into a temporary directory)")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Minute, "bound on the whole run")
	flag.Parse()
	for _, f := range strings.Split(proxies, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 16 {
			fmt.Fprintf(os.Stderr, "fleetbench: -proxies %q: want numbers from 1 to 16\n", proxies)
			os.Exit(2)
		}
		cfg.proxies = append(cfg.proxies, n)
	}
	benchutil.Main("fleetbench", cfg.timeout, func(ctx context.Context) error { return run(ctx, cfg, os.Stdout) })
}

// setup is one engine and number of proxies.
type setup struct {
	engine  string // "sqlite" or "postgres"
	proxies int
}

func (s setup) String() string { return fmt.Sprintf("%s ×%d", s.engine, s.proxies) }

// sample is one measurement.
type sample struct {
	recorded, dropped int64
	wall              time.Duration
	proxyCPU, dbCPU   time.Duration
}

func (s sample) perSec() float64 { return float64(s.recorded) / s.wall.Seconds() }
func (s sample) proxyUS() float64 {
	return float64(s.proxyCPU.Microseconds()) / float64(max(s.recorded, 1))
}
func (s sample) dbUS() float64   { return float64(s.dbCPU.Microseconds()) / float64(max(s.recorded, 1)) }
func median(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
func each(s []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(s))
	for i := range s {
		out[i] = f(s[i])
	}
	return out
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	tick, err := benchutil.ClockTick(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fleetbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := cfg.binary
	if bin == "" {
		bin = filepath.Join(dir, "grpctap")
		if b, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/grpctap").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, b)
		}
	}
	backend, err := serveEcho()
	if err != nil {
		return err
	}
	pg, err := pgtest.Start()
	if err != nil {
		return err
	}
	defer pg.Close()
	fmt.Fprintf(out, "fleetbench: %d rounds, %d unary calls of %d B per measurement, %d callers per proxy, GOMAXPROCS of this machine's %d cores\n",
		cfg.rounds, cfg.calls, cfg.size, cfg.callers, numCPU())

	var setups []setup
	for _, n := range cfg.proxies {
		setups = append(setups, setup{"sqlite", n}, setup{"postgres", n})
	}
	results := map[setup][]sample{}
	dbs := 0
	for r := 0; r < cfg.rounds; r++ {
		for i := range setups {
			su := setups[(i+r)%len(setups)]
			dbs++
			var db string
			if su.engine == "sqlite" {
				db = filepath.Join(dir, fmt.Sprintf("cap-%d.db", dbs))
			} else if db, err = pg.CreateDB(fmt.Sprintf("bench_%d", dbs)); err != nil {
				return err
			}
			s, err := measure(ctx, cfg, bin, backend, db, su, pg, tick)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", su, r+1, err)
			}
			fmt.Fprintf(out, "round %d %-12s %8.0f calls/s recorded  %6.1f µs proxy CPU/call  %6.1f µs db CPU/call  %d recorded, %d events dropped\n",
				r+1, su, s.perSec(), s.proxyUS(), s.dbUS(), s.recorded, s.dropped)
			results[su] = append(results[su], s)
		}
	}

	fmt.Fprintln(out, "\nmedians:")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "setup\tcalls/s recorded\tproxy CPU µs/call\tdb server CPU µs/call\tdropped (max)\t")
	for _, su := range setups {
		rs := results[su]
		var drops int64
		for _, s := range rs {
			drops = max(drops, s.dropped)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.1f\t%d\t\n", su, median(each(rs, sample.perSec)), median(each(rs, sample.proxyUS)), median(each(rs, sample.dbUS)), drops)
	}
	tw.Flush()
	fmt.Fprintln(out, "\nPostgreSQL / SQLite (median of the per-round ratios):")
	for _, n := range cfg.proxies {
		lite, pgs := results[setup{"sqlite", n}], results[setup{"postgres", n}]
		var rate, cpu []float64
		for i := range lite {
			rate = append(rate, pgs[i].perSec()/lite[i].perSec())
			cpu = append(cpu, pgs[i].proxyUS()/lite[i].proxyUS())
		}
		fmt.Fprintf(out, "  %d prox%s: calls/s recorded %.2f×, proxy CPU per call %.2f×\n", n, map[bool]string{true: "y", false: "ies"}[n == 1], median(rate), median(cpu))
	}
	return nil
}

// measure runs one setup on a new capture db.
func measure(ctx context.Context, cfg config, bin, backend, db string, su setup, pg *pgtest.Server, tick time.Duration) (sample, error) {
	var procs []*benchutil.Proxy
	defer func() {
		for _, p := range procs {
			p.Stop()
		}
	}()
	for i := 0; i < su.proxies; i++ {
		p, err := benchutil.StartProxy(ctx, fmt.Sprint("proxy p", i), bin, "proxy", "--listen", "127.0.0.1:0", "--backend", backend, "--ui", "", "--db", db, "--name", fmt.Sprint("p", i))
		if p != nil {
			procs = append(procs, p) // stopped by the deferred loop, also after an error
		}
		if err != nil {
			return sample{}, err
		}
	}
	pids := func() []int {
		var out []int
		for _, p := range procs {
			out = append(out, p.Cmd.Process.Pid)
		}
		return out
	}
	cpuOf := func() (time.Duration, time.Duration, error) {
		var proxy time.Duration
		for _, pid := range pids() {
			c, err := benchutil.ProcCPU(pid, tick)
			if err != nil {
				return 0, 0, err
			}
			proxy += c
		}
		var dbc time.Duration
		if su.engine == "postgres" {
			dbc = serverCPU(pg.Pid(), tick)
		}
		return proxy, dbc, nil
	}
	p0, d0, err := cpuOf()
	if err != nil {
		return sample{}, err
	}
	start := time.Now()
	payload := make([]byte, cfg.size)
	var sent atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(procs)*cfg.callers)
	per := cfg.calls / len(procs)
	for _, p := range procs {
		var next atomic.Int64
		for w := 0; w < cfg.callers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(per) && ctx.Err() == nil {
					cctx, cancel := context.WithTimeout(ctx, time.Minute)
					err := benchutil.Unary(cctx, p.CC, payload)
					cancel()
					if err != nil {
						errs <- err
						return
					}
					sent.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return sample{}, fmt.Errorf("call: %w", err)
	}
	// Idle: no proxy used CPU for 150 ms (recorders have written their
	// backlog); at most 30 s.
	prev, _, _ := cpuOf()
	for i := 0; i < 200; i++ {
		time.Sleep(150 * time.Millisecond)
		cur, _, err := cpuOf()
		if err != nil {
			return sample{}, err
		}
		if cur == prev {
			break
		}
		prev = cur
	}
	wall := time.Since(start)
	p1, d1, err := cpuOf()
	if err != nil {
		return sample{}, err
	}
	for _, p := range procs {
		p.Stop()
	}
	procs = nil
	st, err := store.Open(ctx, db, store.Options{ReadOnly: true})
	if err != nil {
		return sample{}, err
	}
	defer st.Close()
	wm, err := st.CurrentWatermark(ctx)
	if err != nil {
		return sample{}, err
	}
	dropped, err := st.DroppedEvents(ctx)
	if err != nil {
		return sample{}, err
	}
	if wm.MaxID > sent.Load() {
		return sample{}, fmt.Errorf("%d calls in the capture, %d sent", wm.MaxID, sent.Load())
	}
	return sample{recorded: wm.MaxID, dropped: dropped, wall: wall, proxyCPU: p1 - p0, dbCPU: d1 - d0}, nil
}

// serverCPU is the CPU time of a PostgreSQL server: the postmaster's own,
// that of its children that ended (cutime, cstime) and that of the live
// ones.
func serverCPU(postmaster int, tick time.Duration) time.Duration {
	total := time.Duration(0)
	if f := statFields(postmaster); len(f) > 14 {
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			n, _ := strconv.ParseInt(f[i], 10, 64)
			total += time.Duration(n) * tick
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 12 && f[1] == strconv.Itoa(postmaster) {
			for _, i := range []int{11, 12} {
				n, _ := strconv.ParseInt(f[i], 10, 64)
				total += time.Duration(n) * tick
			}
		}
	}
	return total
}

// statFields are /proc/PID/stat's fields after the command name: [0] is
// the state, [1] the parent's pid, [11] and [12] user and system time.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func numCPU() int {
	b, _ := exec.Command("nproc").Output()
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// serveEcho serves the raw echo backend on a loopback port of this
// process.
func serveEcho() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := benchutil.NewEchoServer()
	go srv.Serve(lis)
	return lis.Addr().String(), nil
}
