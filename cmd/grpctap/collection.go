package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/grpctap/grpctap/collection"
	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

func newCollectionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "collection",
		Short: "Keep saved requests, made from captured calls, in a capture's collections",
		Long: `A collection is a named list of saved requests kept in the capture: each a
method, its request metadata and messages as JSON, and the answer expected of
it (an example: the captured call). The inspector's composer opens and sends
them; 'grpctap test' runs a collection as tests. Exported, a collection is a
JSON file (docs/collections.md) to keep in version control and import again.`,
	}
	cmd.AddCommand(newCollectionAddCmd(), newCollectionListCmd(), newCollectionExportCmd(), newCollectionImportCmd())
	return cmd
}

func newCollectionAddCmd() *cobra.Command {
	var f selectFlags
	var dec decodeFlags
	cmd := &cobra.Command{
		Use:   "add NAME [ID ...] [flags]",
		Short: "Save captured calls into a collection, each with its answer as the expected one",
		Long: `add saves each selected call of the capture into the collection NAME (made
when there is none) as a request: its request messages as JSON, its request
metadata less grpctap's own headers, hop-by-hop headers and the values the
recorder redacted, and the call itself as the example 'grpctap test'
compares answers with. A request is named after its method and call id
("Echo #12"); one of the same name is replaced.

Messages are decoded with --proto/--protoset, the schemas saved in the
capture, or the backend's reflection: a call whose request has no schema is
refused.`,
		Example: `  grpctap collection add smoke 12 14
  grpctap collection add checkout --method '/shop.v1.Cart/*' --status OK --since 1h`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCollectionAdd(cmd.Context(), cmd, &f, &dec, args[0], args[1:])
		},
	}
	fs := cmd.Flags()
	f.register(fs, "capture to take the calls from and keep the collection in")
	dec.register(fs, true)
	return cmd
}

func runCollectionAdd(ctx context.Context, cmd *cobra.Command, f *selectFlags, df *decodeFlags, name string, args []string) error {
	st, ids, err := openSelected(ctx, f, args, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	dec, err := schemas.OpenDecoder(ctx, st, df.options(reflectionDial(nil)))
	if err != nil {
		return err
	}
	defer dec.Close()
	reqs := make([]collection.Request, 0, len(ids))
	for _, id := range ids {
		c, err := st.GetCall(ctx, id)
		if err != nil {
			return err
		}
		schemas.DecodeCall(ctx, dec, c)
		q, err := collection.FromCall(c, "")
		if err != nil {
			return err
		}
		reqs = append(reqs, q)
	}
	col, err := collection.Add(ctx, st, name, reqs...)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "saved %d requests into collection %q (%d requests); run them with: grpctap test %q --db %s\n",
		len(reqs), col.Name, len(col.Requests), col.Name, f.db)
	return nil
}

func newCollectionListCmd() *cobra.Command {
	var db string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the collections of a capture",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []store.Collection
			err := withCapture(cmd.Context(), db, store.Options{ReadOnly: true}, func(st *store.Store) (err error) {
				list, err = st.Collections(cmd.Context())
				return err
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			out := make([]collection.Collection, 0, len(list))
			for i := range list {
				c, err := collection.FromStore(&list[i])
				if err != nil {
					return err
				}
				out = append(out, c)
			}
			if jsonOut {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if len(out) == 0 {
				fmt.Fprintf(w, "no collections in %s (make one with: grpctap collection add NAME ID...)\n", db)
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tREQUESTS\tUPDATED")
			for _, c := range out {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", c.ID, c.Name, len(c.Requests), c.Updated.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	dbFlag(cmd.Flags(), &db, "capture to read")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the collections, whole, as JSON")
	return cmd
}

func newCollectionExportCmd() *cobra.Command {
	var db, out string
	cmd := &cobra.Command{
		Use:   "export NAME",
		Short: "Write a collection as a file (the format of docs/collections.md)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var c *collection.Collection
			err := withCapture(cmd.Context(), db, store.Options{ReadOnly: true}, func(st *store.Store) (err error) {
				c, err = collection.Find(cmd.Context(), st, args[0])
				return err
			})
			if err != nil {
				return err
			}
			c.ID, c.Updated = 0, nil
			b, err := json.MarshalIndent(c, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o644)
		},
	}
	dbFlag(cmd.Flags(), &db, "capture to read")
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write (default: standard output)")
	return cmd
}

func newCollectionImportCmd() *cobra.Command {
	var db, name string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Add a collection file to a capture (its requests replace those of the same name)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := readCollectionFile(args[0])
			if err != nil {
				return err
			}
			if name != "" {
				c.Name = name
			}
			return withCapture(ctx, db, store.Options{}, func(st *store.Store) error {
				saved, err := collection.Add(ctx, st, c.Name, c.Requests...)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "imported %d requests into collection %q\n", len(c.Requests), saved.Name)
				return nil
			})
		},
	}
	dbFlag(cmd.Flags(), &db, "capture to keep the collection in")
	cmd.Flags().StringVar(&name, "name", "", "name the collection this instead of the file's name")
	return cmd
}

// readCollectionFile reads and checks a collection file.
func readCollectionFile(path string) (*collection.Collection, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	c, err := collection.Parse(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// writeResultsText prints a test run for people.
func writeResultsText(w io.Writer, results []collection.Result) {
	for _, r := range results {
		fmt.Fprintf(w, "%s %s → %s: ", r.Request, r.Method, r.Target)
		if r.Verdict == "match" {
			fmt.Fprint(w, "pass")
		} else if r.Verdict == "mismatch" {
			fmt.Fprint(w, "FAIL")
		} else {
			fmt.Fprintf(w, "ERROR: %s\n", r.Error)
			continue
		}
		fmt.Fprintf(w, " (%s, %.1fms", r.Got, r.DurationMS)
		if !r.Compared {
			fmt.Fprint(w, ", no example")
		}
		if r.Assertions > 0 {
			fmt.Fprintf(w, ", %d assertions", r.Assertions)
		}
		fmt.Fprintln(w, ")")
		replay.WriteDetails(w, r.Result)
	}
}

// withCapture opens the capture db for the length of f.
func withCapture(ctx context.Context, db string, o store.Options, f func(*store.Store) error) error {
	st, err := store.Open(ctx, db, o)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(st)
}
