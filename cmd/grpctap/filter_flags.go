package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/replay"
	"github.com/grpctap/grpctap/store"
)

// callFilter are the filters every command that picks recorded calls
// shares ('calls', 'export', 'replay', 'collection add'): by method, status,
// recording process and age.
type callFilter struct {
	method string
	status string
	proxy  string
	since  time.Duration
}

func (f *callFilter) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.method, "method", "", "only methods matching this glob (e.g. '/pkg.Svc/*', '*Watch*')")
	fs.StringVar(&f.status, "status", "", "only calls that ended with this status: a number or a name in any case (5, not_found, NotFound)")
	proxyFlag(fs, &f.proxy)
	fs.DurationVar(&f.since, "since", 0, "only calls started within this long (e.g. 10m)")
}

// proxyFlag declares --proxy, the filter by recording process.
func proxyFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "proxy", "", "only calls recorded by the grpctap of this --name (a fleet sharing one capture)")
}

// given says whether any filter was given.
func (f *callFilter) given() bool {
	return f.method != "" || f.status != "" || f.since != 0 || f.proxy != ""
}

// filter checks the flags and returns the store's filter of them.
func (f *callFilter) filter() (store.Filter, error) {
	flt := store.Filter{Method: f.method, Proxy: f.proxy}
	if err := checkGlob("--method", f.method); err != nil {
		return flt, err
	}
	if f.status != "" {
		code, err := store.ParseCode(f.status)
		if err != nil {
			return flt, fmt.Errorf("--status: %w", err)
		}
		flt.Status = &code
	}
	if f.since < 0 {
		return flt, fmt.Errorf("--since must be positive")
	}
	if f.since > 0 {
		flt.Since = time.Now().Add(-f.since)
	}
	return flt, nil
}

// selectFlags pick the calls 'replay' and 'collection add' work on: ids
// given as arguments, the filters, or --all.
type selectFlags struct {
	db  string
	all bool
	callFilter
}

// register declares --db (what describes what the command does with the
// capture), --all and the filters.
func (f *selectFlags) register(fs *pflag.FlagSet, what string) {
	dbFlag(fs, &f.db, what)
	fs.BoolVar(&f.all, "all", false, "every call of the capture (without ids or a filter, the command asks for this)")
	f.callFilter.register(fs)
}

// selectCalls returns the ids of the calls the arguments and flags select.
func selectCalls(ctx context.Context, st *store.Store, f *selectFlags, args []string) ([]int64, error) {
	filtered := f.given()
	switch {
	case len(args) > 0 && (filtered || f.all):
		return nil, errors.New("give call ids, or --method/--status/--since/--proxy, or --all: one of them")
	case len(args) == 0 && !filtered && !f.all:
		return nil, errors.New("replay needs call ids (grpctap replay 12 14), a filter (--method, --status, --since, --proxy) or --all for every call of the capture")
	case len(args) > 0:
		ids := make([]int64, 0, len(args))
		var missing []string
		for _, a := range args {
			id, err := strconv.ParseInt(a, 10, 64)
			if err != nil || id <= 0 {
				return nil, fmt.Errorf("%q is not a call id", a)
			}
			if _, _, err := st.RecordedTimeout(ctx, id); errors.Is(err, store.ErrNotFound) {
				missing = append(missing, a)
			} else if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("no call %s in %s (see 'grpctap calls --db %s')", strings.Join(missing, ", "), f.db, f.db)
		}
		return ids, nil
	}
	flt, err := f.filter()
	if err != nil {
		return nil, err
	}
	var ids []int64
	err = st.EachCall(ctx, flt, func(c *store.Call) error {
		if c.State == "open" {
			return nil
		}
		if v := c.RequestHeaders[replay.HeaderOrigin]; len(v) > 0 && v[0] == replay.OriginReplay {
			// A replay recorded into the same capture is not replayed again.
			return nil
		}
		ids = append(ids, c.ID)
		return nil
	})
	return ids, err
}

// openSelected opens the capture and selects calls as the arguments and
// flags say; the caller closes the store.
func openSelected(ctx context.Context, f *selectFlags, args []string, o store.Options) (*store.Store, []int64, error) {
	st, err := store.Open(ctx, f.db, o)
	if err != nil {
		return nil, nil, err
	}
	ids, err := selectCalls(ctx, st, f, args)
	if err == nil && len(ids) == 0 {
		err = errors.New("no calls selected")
	}
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, ids, nil
}
