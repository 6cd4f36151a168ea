package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// uiShutdownTimeout is how long 'grpctap ui' lets requests in flight
// finish when it stops.
const uiShutdownTimeout = 5 * time.Second

func newUICmd() *cobra.Command {
	var (
		db       string
		uf       uiFlags
		df       decodeFlags
		logLevel logLevel
	)
	cmd := &cobra.Command{
		Use:   "ui [--db PATH] [flags]",
		Short: "Open the web inspector over an existing capture, without a proxy",
		Long: `ui serves the web inspector (the same one 'grpctap proxy' and 'grpctap demo'
start) over a capture file: browse and search its calls, read their decoded
messages, replay them, and compose new calls to a target of your choice.
A proxy writing the same file at the same time is noticed: new calls show
up within a second.

Composer calls made here go straight to the target and are not recorded
(there is no proxy); collections are saved in the capture file.`,
		Example: `  grpctap ui --db ./grpctap.db
  grpctap ui --db capture.db --ui 127.0.0.1:8080 --protoset api.protoset`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if uf.addr == "" {
				return errors.New("--ui needs an address: the inspector is all this command serves")
			}
			cfg, err := uf.config()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			log := newLogger(cmd.ErrOrStderr(), logLevel.Level)
			if _, err := os.Stat(db); err != nil && !store.IsPostgres(db) {
				return fmt.Errorf("no capture at %s (record one with 'grpctap proxy' or 'grpctap demo', or pass --db): %w", db, store.ErrNoCapture)
			}
			st, err := store.Open(ctx, db, store.Options{})
			if err != nil {
				if !errors.Is(err, store.ErrNotCapture) && !errors.Is(err, store.ErrCorrupt) && !errors.Is(err, store.ErrNewerSchema) {
					// A capture we may read but not write: collections are off.
					if ro, roErr := store.Open(ctx, db, store.Options{ReadOnly: true}); roErr == nil {
						log.Warn("capture is read-only: collections cannot be saved", "db", db, "err", err)
						st, err = ro, nil
					}
				}
				if err != nil {
					return err
				}
			}
			defer st.Close()
			dial := func(backend string) (grpc.ClientConnInterface, error) {
				return grpc.NewClient(backend, grpc.WithTransportCredentials(insecure.NewCredentials()))
			}
			dec, err := schemas.OpenDecoder(ctx, st, df.options(dial))
			if err != nil {
				return err
			}
			defer dec.Close()
			// A proxy with no backend: composer calls need a target, and
			// each target gets its own path; nothing observes them.
			p, err := proxy.New(proxy.Options{Logger: log})
			if err != nil {
				return err
			}
			defer p.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "grpctap ui\n  capture    %s\n", db)
			ls, err := listenAll(cmd.Flags(), log, uf.listenSpec(true))
			if err != nil {
				return err
			}
			defer closeListeners(ls)
			inspector, _, err := uiService(ctx, cfg, ls[0], uiDeps{Store: st, Proxy: p, Decoder: dec, Logger: log, Out: out})
			if err != nil {
				return err
			}
			g := newRunGroup(uiShutdownTimeout, log)
			g.add(*inspector)
			fmt.Fprintln(out, "\nPress Ctrl-C to stop.")
			return g.run(ctx)
		},
	}
	dbFlag(cmd.Flags(), &db, "capture to show")
	uf.register(cmd.Flags(), false)
	df.register(cmd.Flags(), true)
	logLevel.register(cmd.Flags(), "")
	return cmd
}
