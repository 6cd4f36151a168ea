package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/msgdiff"
	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

type replayFlags struct {
	selectFlags
	compareFlags
	dbOut       string
	decode      decodeFlags
	rate        float64
	duration    time.Duration
	concurrency int
	logLevel    logLevel
}

func newReplayCmd() *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay [ID ...] [flags]",
		Short: "Re-send recorded calls to a backend and diff the answers with the capture",
		Long: `replay re-sends each selected call to --target (default: the backend it was
recorded against) with its recorded request metadata and request messages,
in their recorded order. Streams keep their shape: in a bidi call each
request is sent after the responses that preceded it in the capture.
Hop-by-hop headers and values the recorder redacted are left out; --header
adds or overrides (for credentials the capture does not hold).

Each call gets the deadline its client set when it was recorded (the
capture stores it), or --timeout when given, or 30s when the recording had
none.

What comes back is compared with the capture: status code, message and
details, response headers and trailers (less volatile ones such as date;
see --ignore-header), and each response message by its decoded fields. A
difference prints as its field path with the recorded and the new value.
Messages decode with --proto/--protoset, the schemas saved in the capture,
or the target's reflection; without any schema they are compared as
schemaless trees (field numbers) and the report says so.

Exit status: 0 when every call matches, 1 when any differs, 2 on errors.

With --duration the selection is replayed as load instead, in a loop, at
--rate calls/s with --concurrency calls in flight: throughput, latency
percentiles and the count of each status are printed; nothing is compared.`,
		Example: `  grpctap replay --all                            # every call in ./grpctap.db
  grpctap replay 12 14 --target 127.0.0.1:9001    # two calls, against another backend
  grpctap replay --method '/shop.v1.Cart/*' --status OK --since 1h --ignore-field updatedAt
  grpctap replay --header "authorization: Bearer $TOKEN" --json
  grpctap replay --method '*Echo' --rate 200 --duration 30s --concurrency 16`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplay(cmd.Context(), cmd, &f, args)
		},
	}
	fs := cmd.Flags()
	f.selectFlags.register(fs, "capture to replay from")
	f.compareFlags.register(fs, "each call's recorded backend", "as recorded, or 30s when recorded without one")
	fs.StringVar(&f.dbOut, "db-out", "", "record the replayed calls in this capture, marked with the id of the call each replays")
	f.decode.register(fs, true)
	fs.Float64Var(&f.rate, "rate", 0, "load mode: calls started per second (0: as fast as --concurrency allows)")
	fs.DurationVar(&f.duration, "duration", 0, "load mode: replay the selection in a loop for this long and report throughput and latency")
	fs.IntVar(&f.concurrency, "concurrency", 1, "load mode: calls in flight at most")
	f.logLevel.register(fs, "")
	return cmd
}

// parseHeaders reads 'key: value' flags.
func parseHeaders(hs []string) (metadata.MD, error) {
	md := metadata.MD{}
	for _, h := range hs {
		k, v, ok := strings.Cut(h, ":")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			return nil, fmt.Errorf("--header %q: want 'key: value'", h)
		}
		md.Append(k, strings.TrimSpace(v))
	}
	return md, nil
}

func runReplay(ctx context.Context, cmd *cobra.Command, f *replayFlags, args []string) error {
	log := newLogger(cmd.ErrOrStderr(), f.logLevel.Level)
	if f.duration < 0 {
		return fmt.Errorf("--duration %v: must be positive", f.duration)
	}
	if f.rate < 0 {
		return fmt.Errorf("--rate %v: must not be negative", f.rate)
	}
	if f.duration == 0 && (f.rate != 0 || cmd.Flags().Changed("concurrency")) {
		return errors.New("--rate and --concurrency are load-mode flags: give --duration too")
	}
	if f.concurrency < 1 {
		return errors.New("--concurrency must be at least 1")
	}
	sf, err := readSendFlags(f.target, f.headers, f.ignoreField, &f.backendTLS, log)
	if err != nil {
		return err
	}
	hdr, ignore, tlsCfg := sf.header, sf.ignore, sf.tls
	st, ids, err := openSelected(ctx, &f.selectFlags, args, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer st.Close()

	var obs proxy.Observer
	if f.dbOut != "" {
		out, err := store.Open(ctx, f.dbOut, store.Options{})
		if err != nil {
			return fmt.Errorf("--db-out: %w", err)
		}
		rec, err := recorder.New(ctx, out, recorder.Options{Logger: log})
		if err != nil {
			out.Close()
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := rec.Close(cctx); err != nil {
				log.Error("--db-out: flush", "err", err)
			}
			out.Close()
		}()
		obs = rec
	}
	rp := replay.New(replay.Options{Target: f.target, TLS: tlsCfg, Header: hdr, Timeout: f.timeout, Observer: obs})
	defer rp.Close()

	if f.duration > 0 {
		return runLoad(ctx, cmd.OutOrStdout(), st, rp, ids, f)
	}

	dec, err := schemas.OpenDecoder(ctx, st, f.decode.options(reflectionDial(tlsCfg)))
	if err != nil {
		return err
	}
	defer dec.Close()
	cmpr := newComparator(dec, ignore, f.ignoreHdr)

	w := cmd.OutOrStdout()
	var sum replay.Summary
	results := []replay.Result{}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		res := replayOne(ctx, st, rp, cmpr, id)
		sum.Add(res)
		if f.jsonOut {
			results = append(results, res)
		} else {
			replay.WriteText(w, res)
		}
	}
	if f.jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Results []replay.Result `json:"results"`
			Summary replay.Summary  `json:"summary"`
		}{results, sum}); err != nil {
			return err
		}
	} else {
		replay.WriteSummary(w, sum)
	}
	return verdictExit(sum, "calls could not be replayed", "calls differ from the capture")
}

// compareFlags are the flags of 'replay' and 'test', which send calls
// again and compare the answers: where to, with what, and what the
// comparison leaves out.
type compareFlags struct {
	target      string
	headers     []string
	timeout     time.Duration
	backendTLS  backendTLSFlags
	ignoreField []string
	ignoreHdr   []string
	jsonOut     bool
}

// register declares them; targetDefault and timeoutDefault say what the
// command does without --target and --timeout.
func (f *compareFlags) register(fs *pflag.FlagSet, targetDefault, timeoutDefault string) {
	fs.StringVar(&f.target, "target", "", "address to send every call to (default: "+targetDefault+")")
	fs.StringArrayVar(&f.headers, "header", nil, "'key: value' request header to add or override (repeatable)")
	fs.DurationVar(&f.timeout, "timeout", 0, "deadline of each call (default: "+timeoutDefault+")")
	f.backendTLS.register(fs)
	fs.StringArrayVar(&f.ignoreField, "ignore-field", nil, "field path left out of message diffs, e.g. receivedAt, items[*].id, labels[\"k\"] (repeatable)")
	fs.StringArrayVar(&f.ignoreHdr, "ignore-header", nil, "response header or trailer left out of the comparison, added to the default list ("+strings.Join(replay.DefaultVolatileHeaders, ", ")+") (repeatable)")
	fs.BoolVar(&f.jsonOut, "json", false, "print one JSON report (results and summary) instead of text")
}

// sendFlags are the flags replay and test read alike.
type sendFlags struct {
	header metadata.MD
	ignore []msgdiff.FieldPath
	tls    *tls.Config
}

// readSendFlags checks --target and reads --header, --ignore-field and
// the backend TLS flags.
func readSendFlags(target string, headers, ignoreFields []string, bt *backendTLSFlags, log *slog.Logger) (*sendFlags, error) {
	if target != "" {
		if err := checkTarget("--target", target); err != nil {
			return nil, err
		}
	}
	hdr, err := parseHeaders(headers)
	if err != nil {
		return nil, err
	}
	sf := &sendFlags{header: hdr}
	for _, s := range ignoreFields {
		p, err := msgdiff.ParseFieldPath(s)
		if err != nil {
			return nil, fmt.Errorf("--ignore-field: %w", err)
		}
		sf.ignore = append(sf.ignore, p)
	}
	if sf.tls, err = bt.config(log); err != nil {
		return nil, err
	}
	return sf, nil
}

// newComparator compares as replay and test do: the volatile headers and
// --ignore-header left out.
func newComparator(dec *decode.Decoder, ignore []msgdiff.FieldPath, ignoreHeaders []string) *replay.Comparator {
	return &replay.Comparator{Decoder: dec, IgnoreFields: ignore,
		IgnoreHeaders: append(append([]string(nil), replay.DefaultVolatileHeaders...), ignoreHeaders...)}
}

// verdictExit is the exit of a run that compared: 2 when anything could
// not be run, 1 when anything differs.
func verdictExit(sum replay.Summary, errored, differ string) error {
	switch {
	case sum.Errors > 0:
		return &exitCodeError{code: exitError, err: fmt.Errorf("%d of %d %s", sum.Errors, sum.Calls, errored)}
	case sum.Mismatch > 0:
		return &exitCodeError{code: exitMismatch, err: fmt.Errorf("%d of %d %s", sum.Mismatch, sum.Calls, differ)}
	}
	return nil
}

func replayOne(ctx context.Context, st *store.Store, rp *replay.Replayer, cmpr *replay.Comparator, id int64) replay.Result {
	c, err := st.GetCall(ctx, id)
	if err != nil {
		return replay.Result{CallID: id, Verdict: replay.Error, Error: err.Error(), Diffs: []replay.Diff{}}
	}
	if cmpr.Decoder != nil {
		schemas.DecodeCall(ctx, cmpr.Decoder, c) // fills in the RPC kind from the schema
	}
	recTimeout, ok, err := st.RecordedTimeout(ctx, id)
	if err != nil {
		return replay.Result{CallID: id, Method: c.Method, Verdict: replay.Error, Error: err.Error(), Diffs: []replay.Diff{}}
	}
	out, err := rp.Send(ctx, c, rp.Timeout(recTimeout, ok))
	if errors.Is(err, replay.ErrNoTarget) {
		err = fmt.Errorf("%w (give --target)", err)
	}
	if err != nil {
		return replay.Result{CallID: id, Method: c.Method, RPC: c.RPC, Target: rp.Target(&c.Call), Verdict: replay.Error, Error: err.Error(), Diffs: []replay.Diff{}}
	}
	return cmpr.Compare(ctx, c, out)
}

func runLoad(ctx context.Context, w io.Writer, st *store.Store, rp *replay.Replayer, ids []int64, f *replayFlags) error {
	calls := make([]*store.CallWithMessages, 0, len(ids))
	timeouts := make([]time.Duration, 0, len(ids))
	for _, id := range ids {
		c, err := st.GetCall(ctx, id)
		if err != nil {
			return err
		}
		d, ok, err := st.RecordedTimeout(ctx, id)
		if err != nil {
			return err
		}
		calls = append(calls, c)
		timeouts = append(timeouts, rp.Timeout(d, ok))
	}
	rep, err := rp.Load(ctx, calls, timeouts, replay.LoadOptions{Rate: f.rate, Duration: f.duration, Concurrency: f.concurrency})
	if err != nil {
		return err
	}
	if f.jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(w, "load: %d recorded calls in a loop for %s, rate %s, concurrency %d\n", len(calls), f.duration, rateText(f.rate), f.concurrency)
	replay.WriteLoadReport(w, rep)
	return nil
}

func rateText(r float64) string {
	if r <= 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + "/s"
}

// reflectionDial dials a target for its schema with the same TLS as the
// replayed calls.
func reflectionDial(cfg *tls.Config) decode.Dialer {
	return func(target string) (grpc.ClientConnInterface, error) {
		creds := insecure.NewCredentials()
		if cfg != nil {
			creds = credentials.NewTLS(cfg)
		}
		return grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	}
}
