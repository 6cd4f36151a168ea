package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// filterFlags select calls; shared by 'calls' and 'export'. They are the
// inspector's filters (store.PageQuery), with the same meaning.
type filterFlags struct {
	db string
	callFilter
	protocol string
	text     string
	limit    int
}

// protocols are the values of --protocol, as recorded.
var protocols = []string{proxy.ProtocolGRPC, proxy.ProtocolGRPCWeb, proxy.ProtocolGRPCWebText}

func (f *filterFlags) register(fs *pflag.FlagSet, defaultLimit int) {
	dbFlag(fs, &f.db, "capture to read")
	f.callFilter.register(fs)
	fs.StringVar(&f.protocol, "protocol", "", "only calls that came in with this protocol: "+strings.Join(protocols, ", "))
	fs.StringVar(&f.text, "text", "", "only calls with this text in their method, backend, peer, headers, trailers or status message (any case), or in a message body as sent (as the inspector's search); at most 1000 characters")
	fs.IntVar(&f.limit, "limit", defaultLimit, "at most the newest N calls (0: all)")
}

// checkGlob reports a pattern SQLite's GLOB would take without complaint
// and match nothing with: a '[' that opens a set never closed; and one
// longer than store.MaxPatternLen, which SQLite may refuse.
func checkGlob(flag, pattern string) error {
	if err := store.CheckPatternLen(flag, pattern); err != nil {
		return err
	}
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '[' {
			continue
		}
		j := i + 1
		if j < len(pattern) && pattern[j] == '^' {
			j++
		}
		if j < len(pattern) && pattern[j] == ']' {
			j++ // a ']' first in a set is itself
		}
		end := strings.IndexByte(pattern[j:], ']')
		if end < 0 {
			return fmt.Errorf("%s %q: invalid glob: the '[' at %d opens a set of characters that is never closed (a literal '[' is written [[])", flag, pattern, i+1)
		}
		i = j + end
	}
	return nil
}

func (f *filterFlags) filter() (store.Filter, error) {
	if f.limit < 0 {
		return store.Filter{}, fmt.Errorf("--limit must not be negative")
	}
	flt, err := f.callFilter.filter()
	if err != nil {
		return flt, err
	}
	flt.Limit = f.limit
	if err := store.CheckPatternLen("--text", f.text); err != nil {
		return flt, err
	}
	if f.protocol != "" && !slices.Contains(protocols, f.protocol) {
		return flt, fmt.Errorf("--protocol %q: want one of %s", f.protocol, strings.Join(protocols, ", "))
	}
	return flt, nil
}

// each calls fn for the calls the flags select, oldest first. The
// protocol and text filters are the inspector's (store.CallsPage, newest
// first, a page at a time); without them the capture is read in one pass.
func (f *filterFlags) each(ctx context.Context, st *store.Store, fn func(c *store.Call) error) error {
	flt, err := f.filter()
	if err != nil {
		return err
	}
	if f.protocol == "" && f.text == "" {
		return st.EachCall(ctx, flt, fn)
	}
	flt.Limit = store.MaxPageSize
	q := store.PageQuery{Filter: flt, Protocol: f.protocol, Text: f.text}
	var newest []store.Call
	for {
		if f.limit > 0 {
			q.Limit = min(store.MaxPageSize, f.limit-len(newest))
		}
		p, err := st.CallsPage(ctx, q)
		if err != nil {
			return err
		}
		newest = append(newest, p.Calls...)
		if p.NextCursor == 0 || (f.limit > 0 && len(newest) >= f.limit) {
			break
		}
		q.Before = p.NextCursor
	}
	for i := len(newest) - 1; i >= 0; i-- {
		if err := fn(&newest[i]); err != nil {
			return err
		}
	}
	return nil
}

// readError is err, from reading st, or when SQLite's check of the file
// finds it damaged, an error that says so.
func readError(ctx context.Context, st *store.Store, err error) error {
	if errors.Is(err, store.ErrNotFound) || ctx.Err() != nil {
		return err
	}
	if cerr := st.Check(ctx); errors.Is(cerr, store.ErrCorrupt) {
		return damaged(ctx, st, "reading it failed", err)
	}
	return err
}

// damaged is the error for a capture that opened but has a part that
// cannot be read (what, failing with err): it says the file is damaged,
// with what SQLite's check of the file finds.
func damaged(ctx context.Context, st *store.Store, what string, err error) error {
	msg := fmt.Sprintf("capture %s is damaged: %s (%v)", st.Path(), what, err)
	if cerr := st.Check(ctx); errors.Is(cerr, store.ErrCorrupt) {
		msg += "; " + cerr.Error()
	}
	return fmt.Errorf("%s; the calls that can still be read copy into a new capture with: grpctap export --db %s | grpctap import - --db NEW.db", msg, st.Path())
}

// openCapture opens a capture for reading.
func openCapture(ctx context.Context, path string) (*store.Store, error) {
	return store.Open(ctx, path, store.Options{ReadOnly: true})
}

func newCallsCmd() *cobra.Command {
	var f filterFlags
	var asJSON bool
	var df decodeFlags
	cmd := &cobra.Command{
		Use:   "calls [flags]",
		Short: "List recorded calls",
		Long: `calls lists the calls in a capture, oldest first: the newest --limit of
those the filters select. Calls still running are listed too (state open).
With --json it prints one JSON object per call (NDJSON), the schema of
docs/capture.md without messages.`,
		Example: `  grpctap calls
  grpctap calls --method '/billing.v1.*' --status not_found --since 10m
  grpctap calls --json | jq 'select(.duration_ms > 100)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := f.filter(); err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := openCapture(ctx, f.db)
			if err != nil {
				return err
			}
			defer st.Close()
			var calls []store.Call
			if err := f.each(ctx, st, func(c *store.Call) error {
				calls = append(calls, *c)
				return nil
			}); err != nil {
				return readError(ctx, st, err)
			}
			// The count is a row of its own: when it cannot be read the
			// calls are still listed, then the damage is reported.
			dropped, droppedErr := st.DroppedEvents(ctx)
			if droppedErr != nil {
				droppedErr = damaged(ctx, st, "its count of dropped events cannot be read", droppedErr)
			}
			skipped, err := st.SkippedCalls(ctx)
			if err != nil && droppedErr == nil {
				droppedErr = damaged(ctx, st, "its count of skipped calls cannot be read", err)
			}
			// A schema tells each call's real RPC kind; without one it is
			// guessed from the message counts.
			dec, err := schemas.OpenDecoder(ctx, st, df.options(nil))
			if err != nil {
				return err
			}
			defer dec.Close()
			for i := range calls {
				schemas.ResolveRPC(ctx, dec, &calls[i])
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				for i := range calls {
					if err := enc.Encode(&calls[i]); err != nil {
						return err
					}
				}
				if dropped > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "grpctap: %d events were dropped while recording this capture; some calls are incomplete\n", dropped)
				}
				if skipped > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "grpctap: %s\n", skippedLine(skipped))
				}
				return droppedErr
			}
			return errors.Join(printCallTable(cmd.OutOrStdout(), calls, dropped, skipped), droppedErr)
		},
	}
	f.register(cmd.Flags(), 50)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print NDJSON, one call per line")
	df.register(cmd.Flags(), false)
	return cmd
}

func printCallTable(w io.Writer, calls []store.Call, dropped, skipped int64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// Calls of a fleet's capture say which proxy recorded them.
	fleet := false
	for i := range calls {
		fleet = fleet || calls[i].Proxy != calls[0].Proxy
	}
	head := "ID\tSTART\tDURATION\tMETHOD\tPROTOCOL\tSTATUS\tREQ\tRESP\tBYTES"
	if fleet {
		head += "\tPROXY"
	}
	fmt.Fprintln(tw, head)
	for i := range calls {
		c := &calls[i]
		dur, status := "open", "-"
		if c.DurationMS != nil {
			dur = formatMS(*c.DurationMS)
		}
		if c.Status != nil {
			status = c.Status.Name
		}
		if c.DroppedEvents > 0 {
			status += " (incomplete)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s", c.ID, c.Start.Local().Format("2006-01-02 15:04:05.000"),
			dur, c.Method, c.Protocol, status, c.RequestCount, c.ResponseCount, formatBytes(c.RequestBytes+c.ResponseBytes))
		if fleet {
			fmt.Fprintf(tw, "\t%s", c.Proxy)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(calls) == 0 {
		fmt.Fprintln(w, "(no calls)")
	}
	if dropped > 0 {
		fmt.Fprintf(w, "%d events were dropped while recording this capture; calls marked (incomplete) miss some\n", dropped)
	}
	if skipped > 0 {
		fmt.Fprintln(w, skippedLine(skipped))
	}
	return nil
}

func skippedLine(n int64) string {
	return fmt.Sprintf("%d calls were not recorded: their client reset them before any message, more often than its rate allows (a flood)", n)
}

func formatMS(ms float64) string {
	switch {
	case ms < 1:
		return strconv.FormatFloat(ms*1000, 'f', 0, 64) + "µs"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
}

func formatBytes(n int64) string {
	switch {
	case n < 10<<10:
		return strconv.FormatInt(n, 10) + " B"
	case n < 10<<20:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n>>20, 10) + " MiB"
}
