package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/grpctap/grpctap/decode"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

func newShowCmd() *cobra.Command {
	var db string
	var asJSON, full bool
	var df decodeFlags
	cmd := &cobra.Command{
		Use:   "show ID [flags]",
		Short: "Show one recorded call whole, messages included",
		Long: `show prints one call of a capture: where it went, its headers, trailers,
status and every message. With --json it prints the call as one JSON
object, the schema of docs/capture.md with messages.

Decoded views are bounded, so that a large message does not print as many
times its size: the first 200 items of each list, 4 KiB of each string or
bytes value, 5,000 elements in all; a note says what was left out. --full
prints them whole. Raw bytes (--json) are always whole.`,
		Example: `  grpctap show 42
  grpctap show 42 --json | jq '.messages[] | .size'`,
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return errors.New("show needs the id of a call: grpctap show ID (ids are the first column of 'grpctap calls')")
			case len(args) > 1:
				return fmt.Errorf("show takes one call id, not %d (to see several: grpctap export)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("call id %q is not a positive number (see 'grpctap calls')", args[0])
			}
			ctx := cmd.Context()
			st, err := openCapture(ctx, db)
			if err != nil {
				return err
			}
			defer st.Close()
			c, err := st.GetCall(ctx, id)
			if err != nil {
				return readError(ctx, st, err)
			}
			dec, err := schemas.OpenDecoder(ctx, st, df.options(nil))
			if err != nil {
				return err
			}
			defer dec.Close()
			lim := decode.DefaultLimits
			if full {
				lim = decode.NoLimits
			}
			schemas.DecodeCallWithin(ctx, dec, c, lim)
			dc := schemas.DecodedCall{CallWithMessages: c, StatusDetails: schemas.DecodeDetails(ctx, dec, &c.Call)}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(dc)
			}
			printCall(cmd.OutOrStdout(), dc)
			return nil
		},
	}
	dbFlag(cmd.Flags(), &db, "capture to read")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the call as JSON")
	cmd.Flags().BoolVar(&full, "full", false, "decoded views whole: every item of long lists, strings and bytes (default: the first 200 items, 4 KiB)")
	df.register(cmd.Flags(), false)
	return cmd
}

// showBytes is how much of each body the human view dumps.
const showBytes = 512

func printCall(w io.Writer, dc schemas.DecodedCall) {
	c := dc.CallWithMessages
	fmt.Fprintf(w, "call %d  %s  (%s, %s)\n", c.ID, c.Method, c.RPC, c.Protocol)
	fmt.Fprintf(w, "  backend    %s\n  authority  %s\n  peer       %s\n", c.Backend, c.Authority, c.Peer)
	fmt.Fprintf(w, "  start      %s\n", c.Start.Local().Format("2006-01-02 15:04:05.000000"))
	if c.End != nil {
		fmt.Fprintf(w, "  end        %s  (%s)\n", c.End.Local().Format("2006-01-02 15:04:05.000000"), formatMS(*c.DurationMS))
		fmt.Fprintf(w, "  status     %s (%d)", c.Status.Name, c.Status.Code)
		if c.Status.Message != "" {
			fmt.Fprintf(w, ": %s", c.Status.Message)
		}
		fmt.Fprintln(w)
		for i, d := range c.Status.Details {
			printDetail(w, i, d, dc.StatusDetails)
		}
	} else {
		fmt.Fprintln(w, "  state      open (still running)")
	}
	fmt.Fprintf(w, "  messages   %s (%s), %s (%s)\n", plural(c.RequestCount, "request"), formatBytes(c.RequestBytes),
		plural(c.ResponseCount, "response"), formatBytes(c.ResponseBytes))
	if c.DroppedEvents > 0 {
		fmt.Fprintf(w, "  INCOMPLETE %d events of this call were dropped while recording\n", c.DroppedEvents)
	}
	printMD(w, "request headers", c.RequestHeaders)
	printMD(w, "response headers", c.ResponseHeaders)
	printMD(w, "trailers", c.Trailers)
	for _, m := range c.Messages {
		arrow := "→"
		if m.Direction == store.DirResponse {
			arrow = "←"
		}
		fmt.Fprintf(w, "\n#%d %s %s  %s  %d bytes", m.Seq, arrow, m.Direction, m.Time.Local().Format("15:04:05.000000"), m.Size)
		if m.Truncated {
			fmt.Fprintf(w, " (stored %d, truncated)", len(m.Raw))
		}
		fmt.Fprintln(w)
		if len(m.JSON) > 0 {
			var pretty bytes.Buffer
			if json.Indent(&pretty, m.JSON, "  ", "  ") == nil {
				fmt.Fprintf(w, "  %s\n", pretty.Bytes())
			} else {
				fmt.Fprintf(w, "  %s\n", m.JSON)
			}
			if m.DecodeError != "" {
				fmt.Fprintf(w, "  (note: %s)\n", m.DecodeError)
			}
			continue
		}
		if m.DecodeError != "" {
			fmt.Fprintf(w, "  (decode error: %s)\n", m.DecodeError)
		}
		if printSchemaless(w, m) {
			continue
		}
		raw := m.Raw
		if len(raw) > showBytes {
			raw = raw[:showBytes]
		}
		for _, line := range strings.SplitAfter(strings.TrimRight(hex.Dump(raw), "\n"), "\n") {
			fmt.Fprintf(w, "  %s", line)
		}
		if len(raw) > 0 {
			fmt.Fprintln(w)
		}
		if len(raw) < len(m.Raw) {
			fmt.Fprintf(w, "  … %d more bytes (--json has them all)\n", len(m.Raw)-len(raw))
		}
	}
}

// printDetail prints the i-th status detail: its type and decoded JSON,
// else its size and why it was not decoded.
func printDetail(w io.Writer, i int, raw []byte, decoded []schemas.DetailView) {
	fmt.Fprintf(w, "  detail %d   ", i+1)
	if i >= len(decoded) {
		fmt.Fprintf(w, "%d bytes\n", len(raw))
		return
	}
	dv := decoded[i]
	if len(dv.JSON) == 0 {
		if dv.Type != "" {
			fmt.Fprintf(w, "%s, ", dv.Type)
		}
		fmt.Fprintf(w, "%d bytes (not decoded: %s)\n", len(raw), dv.Error)
		return
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, dv.JSON, "    ", "  ") != nil {
		pretty.Reset()
		pretty.Write(dv.JSON)
	}
	fmt.Fprintf(w, "%s\n    %s\n", dv.Type, pretty.Bytes())
}

func printMD(w io.Writer, title string, md store.Metadata) {
	if len(md) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range md[k] {
			fmt.Fprintf(w, "  %s: %s\n", k, v)
		}
	}
}
