package main

import (
	"context"
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

// pprofService serves the runtime profiles on addr; nil for "". Stopping
// it closes the server at once (a profile being taken is cut: shutdown
// does not wait for a debugging aid). Only loopback addresses are
// accepted: profiles show the process's insides (method names, memory) to
// whoever asks.
func pprofService(addr string, log *slog.Logger) (*service, error) {
	if addr == "" {
		return nil, nil
	}
	addr = webAddr(addr)
	if !ui.IsLoopback(addr) {
		return nil, fmt.Errorf("--pprof %s: profiles are served on loopback addresses only (e.g. 127.0.0.1:6060)", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also /heap, /allocs, /goroutine, ...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listen: %w (pick another address with --pprof)", err)
	}
	srv := &http.Server{Handler: mux}
	log.Info("pprof listening", "addr", lis.Addr().String())
	s := ctxService("pprof", func(ctx context.Context) error {
		go func() { <-ctx.Done(); _ = srv.Close() }()
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve pprof on %s: %w", addr, err)
		}
		return nil
	}, func() { _ = lis.Close() })
	return &s, nil
}
