package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

func newExportCmd() *cobra.Command {
	var f filterFlags
	var out string
	var df decodeFlags
	cmd := &cobra.Command{
		Use:   "export [--out FILE] [flags]",
		Short: "Export whole calls as NDJSON",
		Long: `export writes the calls the filters select, oldest first, one JSON object
per line with all their messages (the schema of docs/capture.md), for jq
and other tools.`,
		Example: `  grpctap export --out calls.ndjson
  grpctap export --method '*Checkout*' --since 1h | jq -c '.messages | length'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if _, err := f.filter(); err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := openCapture(ctx, f.db)
			if err != nil {
				return err
			}
			defer st.Close()
			dec, err := schemas.OpenDecoder(ctx, st, df.options(nil))
			if err != nil {
				return err
			}
			defer dec.Close()
			var w io.Writer = cmd.OutOrStdout()
			if out != "" && out != "-" {
				file, err := os.Create(out)
				if err != nil {
					return fmt.Errorf("export: %w", err)
				}
				defer func() { err = errors.Join(err, file.Close()) }()
				w = file
			}
			bw := bufio.NewWriterSize(w, 1<<16)
			enc := json.NewEncoder(bw)
			n := 0
			err = f.each(ctx, st, func(c *store.Call) error {
				msgs, err := st.Messages(ctx, c.ID)
				if err != nil {
					return err
				}
				n++
				full := &store.CallWithMessages{Call: *c, Messages: msgs}
				schemas.DecodeCall(ctx, dec, full)
				return enc.Encode(schemas.DecodedCall{CallWithMessages: full, StatusDetails: schemas.DecodeDetails(ctx, dec, &full.Call)})
			})
			if err != nil {
				return fmt.Errorf("export: %w", readError(ctx, st, err))
			}
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if out != "" && out != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "exported %d calls to %s\n", n, out)
			}
			return nil
		},
	}
	f.register(cmd.Flags(), 0)
	df.register(cmd.Flags(), false)
	cmd.Flags().StringVarP(&out, "out", "o", "", "write to FILE instead of standard output")
	return cmd
}
