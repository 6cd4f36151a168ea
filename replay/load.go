package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/grpctap/grpctap/store"
)

// LoadOptions shape a load run.
type LoadOptions struct {
	// Rate is the calls started per second across all workers; 0 starts
	// them as fast as the workers allow.
	Rate float64
	// Duration bounds the time calls are started in; calls in flight then
	// finish. It must be positive.
	Duration time.Duration
	// Concurrency is the number of calls in flight at most. Default 1.
	Concurrency int
}

// LoadReport sums up a load run.
type LoadReport struct {
	Calls      int            `json:"calls"`
	Elapsed    time.Duration  `json:"-"`
	ElapsedS   float64        `json:"elapsed_s"`
	Throughput float64        `json:"calls_per_s"`
	P50MS      float64        `json:"p50_ms"`
	P90MS      float64        `json:"p90_ms"`
	P99MS      float64        `json:"p99_ms"`
	MaxMS      float64        `json:"max_ms"`
	ByStatus   map[string]int `json:"by_status"`
	// Failed counts calls that could not be attempted at all.
	Failed int `json:"failed"`
	// Behind counts starts that came late because every worker was busy
	// (the rate asked for more than the target served).
	Behind int `json:"behind"`
}

// Load replays calls in a loop, in order, at opts.Rate for opts.Duration,
// with up to opts.Concurrency calls in flight, and measures them. Responses
// are not compared. timeouts[i] is the deadline of calls[i].
func (r *Replayer) Load(ctx context.Context, calls []*store.CallWithMessages, timeouts []time.Duration, opts LoadOptions) (LoadReport, error) {
	if len(calls) == 0 {
		return LoadReport{}, errors.New("load: no calls selected")
	}
	if opts.Duration <= 0 {
		return LoadReport{}, fmt.Errorf("load: duration %v: must be positive", opts.Duration)
	}
	if opts.Rate < 0 {
		return LoadReport{}, fmt.Errorf("load: rate %v calls/s: must not be negative", opts.Rate)
	}
	conc := max(opts.Concurrency, 1)
	// Starts stop when the run's time is up; calls in flight then finish
	// (each bounded by its own deadline) and are counted.
	runCtx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()

	type sample struct {
		d    time.Duration
		code string
		err  bool
	}
	jobs := make(chan int)
	results := make([][]sample, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				out, err := r.Send(ctx, calls[i], timeouts[i])
				if err != nil {
					results[w] = append(results[w], sample{err: true})
					continue
				}
				if ctx.Err() != nil {
					// Interrupted: not the target's doing.
					continue
				}
				results[w] = append(results[w], sample{d: out.Duration, code: store.CodeName(int(out.Status.Code()))})
			}
		}()
	}

	start := time.Now()
	behind := 0
	var interval time.Duration
	if opts.Rate > 0 {
		interval = time.Duration(float64(time.Second) / opts.Rate)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
dispatch:
	for n := 0; ; n++ {
		if runCtx.Err() != nil {
			break
		}
		if interval > 0 {
			due := start.Add(time.Duration(n) * interval)
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-runCtx.Done():
					break dispatch
				}
			}
		}
		select {
		case jobs <- n % len(calls):
			continue
		default:
		}
		if interval > 0 {
			behind++
		}
		select {
		case jobs <- n % len(calls):
		case <-runCtx.Done():
			break dispatch
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)

	rep := LoadReport{ByStatus: map[string]int{}, Elapsed: elapsed, ElapsedS: elapsed.Seconds(), Behind: behind}
	var lat []time.Duration
	for _, rs := range results {
		for _, s := range rs {
			if s.err {
				rep.Failed++
				continue
			}
			rep.Calls++
			rep.ByStatus[s.code]++
			lat = append(lat, s.d)
		}
	}
	if elapsed > 0 {
		rep.Throughput = float64(rep.Calls) / elapsed.Seconds()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p*float64(len(lat))+0.5) - 1
		i = min(max(i, 0), len(lat)-1)
		return ms(lat[i])
	}
	rep.P50MS, rep.P90MS, rep.P99MS = pct(0.50), pct(0.90), pct(0.99)
	if len(lat) > 0 {
		rep.MaxMS = ms(lat[len(lat)-1])
	}
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// WriteLoadReport prints a load run's figures.
func WriteLoadReport(w io.Writer, rep LoadReport) {
	fmt.Fprintf(w, "calls: %d in %.2fs (%.1f calls/s)\n", rep.Calls, rep.ElapsedS, rep.Throughput)
	fmt.Fprintf(w, "latency: p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n", rep.P50MS, rep.P90MS, rep.P99MS, rep.MaxMS)
	codes := make([]string, 0, len(rep.ByStatus))
	for c := range rep.ByStatus {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	fmt.Fprint(w, "status:")
	for _, c := range codes {
		fmt.Fprintf(w, " %s %d", c, rep.ByStatus[c])
	}
	fmt.Fprintln(w)
	if rep.Failed > 0 {
		fmt.Fprintf(w, "not attempted: %d\n", rep.Failed)
	}
	if rep.Behind > 0 {
		fmt.Fprintf(w, "behind schedule: %d starts waited for a free worker (raise --concurrency)\n", rep.Behind)
	}
}
