// Package benchutil holds what grpctap's benchmark commands share: latency
// samples with percentiles, medians over rounds, and a bounded load loop.
package benchutil

import (
	"context"
	"slices"
	"sync"
	"time"
)

// FirstError, when set, is told each worker's first failed call.
var FirstError func(error)

// Result is one measurement of a load.
type Result struct {
	Ops      int
	Errors   int
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// PerSecond is the throughput of r.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Percentile returns the q-th quantile (0..1) of sorted samples.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}

// Run calls op from workers goroutines until d has passed or maxOps calls
// were made, and measures each call. It stops by itself.
func Run(ctx context.Context, workers int, d time.Duration, maxOps int, op func(context.Context) error) Result {
	end := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var (
		mu      sync.Mutex
		samples []time.Duration
		errs    int
		wg      sync.WaitGroup
	)
	budget := make(chan struct{}, maxOps)
	for i := 0; i < maxOps; i++ {
		budget <- struct{}{}
	}
	close(budget)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			lerr := 0
			for range budget {
				if ctx.Err() != nil || !time.Now().Before(end) {
					break
				}
				t0 := time.Now()
				if err := op(ctx); err != nil {
					// A call cut by the measurement's own deadline is not
					// an error (ctx.Err may lag the deadline on a busy CPU).
					if ctx.Err() != nil || !time.Now().Before(end) {
						break
					}
					lerr++
					if lerr == 1 && FirstError != nil {
						FirstError(err)
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			samples = append(samples, local...)
			errs += lerr
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(samples)
	return Result{Ops: len(samples), Errors: errs, Elapsed: elapsed, P50: Percentile(samples, 0.50), P99: Percentile(samples, 0.99)}
}

// Median returns the median of the results' throughputs and latencies,
// each taken on its own.
func Median(rs []Result) (perSec float64, p50, p99 time.Duration, errs int) {
	if len(rs) == 0 {
		return 0, 0, 0, 0
	}
	tp := make([]float64, len(rs))
	a := make([]time.Duration, len(rs))
	b := make([]time.Duration, len(rs))
	for i, r := range rs {
		tp[i], a[i], b[i] = r.PerSecond(), r.P50, r.P99
		errs += r.Errors
	}
	slices.Sort(tp)
	slices.Sort(a)
	slices.Sort(b)
	m := len(rs) / 2
	if len(rs)%2 == 0 {
		return (tp[m-1] + tp[m]) / 2, (a[m-1] + a[m]) / 2, (b[m-1] + b[m]) / 2, errs
	}
	return tp[m], a[m], b[m], errs
}
