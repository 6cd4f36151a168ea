package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/grpctap/grpctap/recorder"
	"github.com/grpctap/grpctap/store"
)

// The grpctap+sqlite target: the full recorder writing to a real capture
// file in a temporary directory, as `grpctap proxy --db` runs it. After the
// run it reports how many events the recorder dropped (the target is 0).
// After each measurement the bench waits for the recorder to write what is
// queued and counts that time in the measurement: a recorder that falls
// behind pays for it in throughput, and its backlog does not steal CPU from
// the next target's measurement.
func init() {
	extraTargets = append(extraTargets, func(_ string, log *slog.Logger) (extraTarget, error) {
		dir, err := os.MkdirTemp("", "grpctap-bench-*")
		if err != nil {
			return extraTarget{}, err
		}
		ctx := context.Background()
		st, err := store.Open(ctx, filepath.Join(dir, "bench.db"), store.Options{})
		if err != nil {
			return extraTarget{}, err
		}
		rec, err := recorder.New(ctx, st, recorder.Options{Logger: log})
		if err != nil {
			_ = st.Close()
			return extraTarget{}, err
		}
		settle := func() time.Duration {
			t0 := time.Now()
			fctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := rec.Flush(fctx); err != nil {
				fmt.Fprintln(os.Stderr, "grpctap+sqlite:", err)
			}
			return time.Since(t0)
		}
		closeFn := func() error {
			err := rec.Close(ctx)
			s := rec.Stats()
			fmt.Fprintf(os.Stderr, "grpctap+sqlite: %d events recorded, %d dropped\n", s.Recorded, s.Dropped)
			return errors.Join(err, st.Close(), os.RemoveAll(dir))
		}
		return extraTarget{name: "grpctap+sqlite", obs: rec, settle: settle, closeFn: closeFn}, nil
	})
}
