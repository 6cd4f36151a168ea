package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/grpctap/grpctap/store"
)

func newStatsCmd() *cobra.Command {
	var (
		db, method, protocol, proxyName string
		since                           time.Duration
		asJSON                          bool
		buckets                         int
	)
	cmd := &cobra.Command{
		Use:   "stats [flags]",
		Short: "Traffic per method: calls, errors, latency percentiles, bytes",
		Long: `stats sums up the calls of a capture (those started within --since, all
by default): per method the calls, the errors (closed calls whose status is
not OK) and their rate, the calls still open, p50/p95/p99 latency of closed
calls and the bytes each way, most calls first. With --json it prints the
same and a series over time (--buckets equal slices of the window), the
numbers the inspector's overview shows.`,
		Example: `  grpctap stats --since 15m
  grpctap stats --method '/billing.v1.*' --json | jq '.methods[] | select(.error_rate > 0.01)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkGlob("--method", method); err != nil {
				return err
			}
			if protocol != "" && !slices.Contains(protocols, protocol) {
				return fmt.Errorf("--protocol %q: want one of %s", protocol, strings.Join(protocols, ", "))
			}
			if since < 0 {
				return fmt.Errorf("--since must be positive")
			}
			q := store.StatsQuery{Method: method, Protocol: protocol, Proxy: proxyName, Buckets: buckets}
			if since > 0 {
				q.Since = time.Now().Add(-since)
			}
			ctx := cmd.Context()
			st, err := openCapture(ctx, db)
			if err != nil {
				return err
			}
			defer st.Close()
			stats, err := st.Stats(ctx, q)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(stats)
			}
			printStats(cmd.OutOrStdout(), stats)
			return nil
		},
	}
	fs := cmd.Flags()
	dbFlag(fs, &db, "capture to read")
	fs.StringVar(&method, "method", "", "only methods matching this glob (e.g. '/pkg.Svc/*')")
	fs.StringVar(&protocol, "protocol", "", "only calls that came in with this protocol: "+strings.Join(protocols, ", "))
	proxyFlag(fs, &proxyName)
	fs.DurationVar(&since, "since", 0, "only calls started within this long (e.g. 15m; default: all)")
	fs.BoolVar(&asJSON, "json", false, "print JSON, with the series over time")
	fs.IntVar(&buckets, "buckets", store.DefaultStatsBuckets, "time buckets of the series in --json")
	return cmd
}

func printStats(w io.Writer, st *store.Stats) {
	fmt.Fprintf(w, "%d calls from %s to %s", st.Calls, st.From.Local().Format("2006-01-02 15:04:05"), st.To.Local().Format("15:04:05"))
	if st.Calls > 0 {
		fmt.Fprintf(w, ", %d errors (%.1f%%), %d open", st.Errors, 100*float64(st.Errors)/float64(max(st.Calls-st.Open, 1)), st.Open)
	}
	fmt.Fprintln(w)
	if len(st.Methods) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METHOD\tCALLS\tERRORS\tERR%\tOPEN\tP50\tP95\tP99\tREQ BYTES\tRESP BYTES")
	for _, m := range st.Methods {
		p50, p95, p99 := "-", "-", "-" // no closed call
		if m.Calls > m.Open {
			p50, p95, p99 = fmtMS(m.P50MS), fmtMS(m.P95MS), fmtMS(m.P99MS)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Method, m.Calls, m.Errors, 100*m.ErrorRate, m.Open,
			p50, p95, p99, formatBytes(m.RequestBytes), formatBytes(m.ResponseBytes))
	}
	tw.Flush()
}

// fmtMS prints a latency in milliseconds with sensible precision.
func fmtMS(ms float64) string {
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}
