package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/store/importer"
)

func newImportCmd() *cobra.Command {
	var db string
	var keep keepFlags
	cmd := &cobra.Command{
		Use:   "import FILE [--db PATH]",
		Short: "Import calls from grpctap's export or a grpc-dump stream into a capture",
		Long: `import adds calls to a capture (created if missing), numbered after those
already there. It reads grpctap's own NDJSON ('grpctap export': every field
of each call and its messages kept) and the JSON stream written by grpc-dump
(github.com/bradleyjkemp/grpc-tools), both of its layouts: one object per
call (service, method, messages, error, metadata) and one object per event
(type rpc, message, status, joined by id). Use '-' to read standard input.

Calls are kept as the proxy keeps them: headers redacted and bodies cut as
--redact-header, --no-redact and --record-max-message say (the proxy's
defaults). The input is read as a stream and written in batches; an error
in it stops the import there, and says how many calls were imported before.
Proxies may be recording into the capture meanwhile.`,
		Example: `  grpctap export --db old.db --since 1h | grpctap import - --db shared.db
  grpc-dump --port 12345 > dump.json
  grpctap import dump.json && grpctap calls`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("import: %w", err)
				}
				defer f.Close()
				r = f
			}
			ctx := cmd.Context()
			log := newLogger(cmd.ErrOrStderr(), slog.LevelInfo)
			st, err := store.Open(ctx, db, store.Options{})
			if err != nil {
				return err
			}
			defer st.Close()
			policy := recorder.NewPolicy(keep.redactList(log, db), int(keep.maxMessage))
			res, err := importer.Into(ctx, st, r, policy.Call)
			if err != nil {
				if res.N > 0 {
					return fmt.Errorf("import %s: %w (%d calls before it were imported, ids %d–%d)", args[0], err, res.N, res.First, res.Last)
				}
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			if res.N == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no calls in %s\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d calls (ids %d–%d) into %s\n", res.N, res.First, res.Last, db)
			return nil
		},
	}
	dbFlag(cmd.Flags(), &db, "capture to add the calls to")
	keep.register(cmd.Flags())
	return cmd
}
