package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newCompactCmd() *cobra.Command {
	var db, into string
	cmd := &cobra.Command{
		Use:   "compact [FILE] --into OUT",
		Short: "Write a capture as one self-contained file, for sharing",
		Long: `compact copies a capture into a new file that holds everything itself:
message bodies kept in the capture's segment folder (FILE-segments/, for
bodies of 16 KiB and more) are put back inline, and free pages are left out.
The capture may be recorded into meanwhile; OUT holds what was written when
compact started. FILE defaults to --db.

A PostgreSQL capture (--db postgres://…) is written the same way, to an
SQLite file: a fleet's calls, its saved schemas and collections, in one file
to attach to a bug or open with 'grpctap ui --db OUT'.`,
		Example: `  grpctap compact --into bug-1234.db
  grpctap compact captures/staging.db --into staging-copy.db
  grpctap compact --db postgres://grpctap@db.internal/grpctap --into fleet-today.db`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if cmd.Flags().Changed("db") && args[0] != db {
					return fmt.Errorf("give the capture once: as FILE or with --db")
				}
				db = args[0]
			}
			if into == "" {
				return fmt.Errorf("--into OUT is required: the file to write")
			}
			ctx := cmd.Context()
			st, err := openCapture(ctx, db)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Compact(ctx, into); err != nil {
				return err
			}
			if fi, err := os.Stat(into); err == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%d bytes, no segment folder needed)\n", into, fi.Size())
			}
			return nil
		},
	}
	dbFlag(cmd.Flags(), &db, "capture to read")
	cmd.Flags().StringVar(&into, "into", "", "new file to write (must not exist)")
	return cmd
}
