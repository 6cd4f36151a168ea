package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"github.com/spf13/pflag"
)

// listenSpec is one address a command listens on, given by a flag.
type listenSpec struct {
	flag   string // the flag's name, without dashes: "listen"
	addr   string // the address to listen on; "" is off
	advice string // what to do when it is taken: "choose another address with --listen"
	what   string // what listens there, for the log: "proxy"
}

// listenAll listens on every spec's address, before anything else starts,
// and returns the listeners in spec order (nil for an address that is off).
// An address that is the flag's default (the user did not give it) and is
// taken, by another grpctap for one, is replaced by a free port on the same
// host, and the change is logged; an address the user gave must be free.
// Every address that fails is reported at once, and nothing stays open then.
func listenAll(fs *pflag.FlagSet, log *slog.Logger, specs ...listenSpec) ([]net.Listener, error) {
	out := make([]net.Listener, len(specs))
	var errs []error
	for i, s := range specs {
		if s.addr == "" {
			continue
		}
		lis, err := net.Listen("tcp", s.addr)
		if err != nil && errors.Is(err, syscall.EADDRINUSE) && !fs.Changed(s.flag) {
			host, _, splitErr := net.SplitHostPort(s.addr)
			if splitErr == nil {
				if lis, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err == nil {
					log.Warn(fmt.Sprintf("%s: the default address is taken (another grpctap?); listening on a free port instead", s.what),
						"flag", "--"+s.flag, "taken", s.addr, "addr", lis.Addr().String())
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %s: %w (%s)", s.flag, s.addr, err, s.advice))
			continue
		}
		out[i] = lis
	}
	if len(errs) > 0 {
		closeListeners(out)
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// closeListeners closes every listener that is not nil. A server that
// served one closed it already; closing it again does no harm.
func closeListeners(ls []net.Listener) {
	for _, l := range ls {
		if l != nil {
			_ = l.Close()
		}
	}
}
