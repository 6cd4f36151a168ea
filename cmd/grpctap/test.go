package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/grpctap/grpctap/collection"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

type testFlags struct {
	db string
	compareFlags
	junit    string
	decode   decodeFlags
	logLevel logLevel
}

func newTestCmd() *cobra.Command {
	var f testFlags
	cmd := &cobra.Command{
		Use:   "test COLLECTION [flags]",
		Short: "Run a collection's requests and compare each answer with its saved example",
		Long: `test sends every request of COLLECTION, in order, and judges each answer:
compared field by field with the request's example (the captured call it
was saved from, or the last answer kept with it), as 'grpctap replay'
compares: status code, message and details, response headers and trailers
(less volatile ones; see --ignore-header) and each response message by its
decoded fields (less --ignore-field and the request's ignore_fields). Then
the request's assertions are checked (status code; a field equals, matches
or exists). A request with neither example nor assertions passes when its
status is OK.

COLLECTION is the name (or id) of a collection in --db, or a collection
file ('grpctap collection export', the inspector's export).

Each request goes to --target, else the target saved with it, else the
backend its example was recorded against. Streams keep their shape: in a
bidi call each request is sent after the answers that came before it.

Exit status: 0 when every request passes, 1 when any fails, 2 when any
could not be run (or on other errors). --junit writes JUnit XML for CI.`,
		Example: `  grpctap collection add smoke 12 14 && grpctap test smoke
  grpctap test smoke --target staging.internal:443 --backend-tls --header "authorization: Bearer $TOKEN"
  grpctap test ./smoke.grpctap.json --target 127.0.0.1:50051 --ignore-field receivedAt --junit report.xml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTest(cmd.Context(), cmd, &f, args[0])
		},
	}
	fs := cmd.Flags()
	dbFlag(fs, &f.db, "capture holding the collection (and the schemas saved with it)")
	f.compareFlags.register(fs, "each request's own", "the request's timeout_ms, else 30s")
	fs.StringVar(&f.junit, "junit", "", "write the results as JUnit XML to this file")
	f.decode.register(fs, true)
	f.logLevel.register(fs, "")
	return cmd
}

// loadCollection reads COLLECTION: a file when one is there, else a
// collection of the capture. The capture, when it exists, is returned
// open (for its saved schemas); the caller closes it.
func loadCollection(ctx context.Context, db, arg string) (*collection.Collection, *store.Store, error) {
	var st *store.Store
	if _, err := os.Stat(db); err == nil || store.IsPostgres(db) {
		if st, err = store.Open(ctx, db, store.Options{ReadOnly: true}); err != nil {
			return nil, nil, err
		}
	}
	if fi, err := os.Stat(arg); err == nil && !fi.IsDir() {
		c, err := readCollectionFile(arg)
		if err != nil && st != nil {
			st.Close()
		}
		return c, st, err
	}
	if st == nil {
		return nil, nil, fmt.Errorf("%s is neither a collection file nor a collection of %s (no such capture)", arg, db)
	}
	c, err := collection.Find(ctx, st, arg)
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("no collection %q in %s and no such file (see 'grpctap collection list --db %s')", arg, db, db)
	}
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return c, st, nil
}

func runTest(ctx context.Context, cmd *cobra.Command, f *testFlags, arg string) error {
	log := newLogger(cmd.ErrOrStderr(), f.logLevel.Level)
	sf, err := readSendFlags(f.target, f.headers, f.ignoreField, &f.backendTLS, log)
	if err != nil {
		return err
	}
	col, st, err := loadCollection(ctx, f.db, arg)
	if err != nil {
		return err
	}
	if st != nil {
		defer st.Close()
	}
	if len(col.Requests) == 0 {
		return fmt.Errorf("collection %q has no requests", col.Name)
	}
	dec, err := schemas.OpenDecoder(ctx, st, f.decode.options(reflectionDial(sf.tls)))
	if err != nil {
		return err
	}
	defer dec.Close()
	rp := replay.New(replay.Options{Target: f.target, TLS: sf.tls, Header: sf.header, Timeout: f.timeout})
	defer rp.Close()
	runner := &collection.Runner{Replayer: rp, Comparator: newComparator(dec, sf.ignore, f.ignoreHdr)}

	start := time.Now()
	results, sum := runner.Run(ctx, col)
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.junit != "" {
		if err := writeJUnitFile(f.junit, col.Name, start, results); err != nil {
			return err
		}
	}
	w := cmd.OutOrStdout()
	if f.jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Collection string              `json:"collection"`
			Results    []collection.Result `json:"results"`
			Summary    replay.Summary      `json:"summary"`
		}{col.Name, results, sum}); err != nil {
			return err
		}
	} else {
		writeResultsText(w, results)
		fmt.Fprintf(w, "%s: %d passed, %d failed, %d errors of %d requests\n", col.Name, sum.Match, sum.Mismatch, sum.Errors, sum.Calls)
	}
	return verdictExit(sum, "requests could not be run", "requests failed")
}

func writeJUnitFile(path, name string, start time.Time, results []collection.Result) error {
	var b strings.Builder
	if err := collection.WriteJUnit(&b, name, start, results); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--junit: %w", err)
	}
	return nil
}
