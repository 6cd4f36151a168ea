package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/grpctap/grpctap/ui"
)

// pprofUsage is the --pprof flag's help.
const pprofUsage = "advanced: serve Go's runtime profiles of this process (net/http/pprof: /debug/pprof/profile, /heap, /allocs, ...) on this loopback address, to profile grpctap itself under load; a bare port binds 127.0.0.1, port 0 picks a free one (logged); other hosts are refused (default: off)"

// startPprof serves the runtime profiles on addr ("" does nothing). It
// returns stop, which closes the server (a profile being taken is cut:
// shutdown does not wait for a debugging aid) and waits for it; call it
// exactly once. Only loopback addresses are accepted: profiles show the
// process's insides (method names, memory) to whoever asks.
func startPprof(addr string, log *slog.Logger) (stop func() error, err error) {
	noop := func() error { return nil }
	if addr == "" {
		return noop, nil
	}
	addr = webAddr(addr)
	if !ui.IsLoopback(addr) {
		return noop, fmt.Errorf("--pprof %s: profiles are served on loopback addresses only (e.g. 127.0.0.1:6060)", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also /heap, /allocs, /goroutine, ...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return noop, fmt.Errorf("pprof listen: %w (pick another address with --pprof)", err)
	}
	srv := &http.Server{Handler: mux}
	log.Info("pprof listening", "addr", lis.Addr().String())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	return func() error {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve pprof on %s: %w", addr, err)
		}
		return nil
	}, nil
}
