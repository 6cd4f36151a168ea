package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/grpctap/grpctap/proxy"
	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
)

// The grpctap+sqlite target: the full recorder writing to a real capture
// file in a temporary directory, as `grpctap proxy --db` runs it. After the
// run it reports how many events the recorder dropped (the target is 0).
func init() {
	extraTargets = append(extraTargets, func(_ string, log *slog.Logger) (string, proxy.Observer, func() error, error) {
		dir, err := os.MkdirTemp("", "grpctap-bench-*")
		if err != nil {
			return "", nil, nil, err
		}
		ctx := context.Background()
		st, err := store.Open(ctx, filepath.Join(dir, "bench.db"), store.Options{})
		if err != nil {
			return "", nil, nil, err
		}
		rec, err := recorder.New(ctx, st, recorder.Options{Logger: log})
		if err != nil {
			_ = st.Close()
			return "", nil, nil, err
		}
		closeFn := func() error {
			err := rec.Close(ctx)
			s := rec.Stats()
			fmt.Fprintf(os.Stderr, "grpctap+sqlite: %d events recorded, %d dropped\n", s.Recorded, s.Dropped)
			return errors.Join(err, st.Close(), os.RemoveAll(dir))
		}
		return "grpctap+sqlite", rec, closeFn, nil
	})
}
