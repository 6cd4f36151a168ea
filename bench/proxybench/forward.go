package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"text/tabwriter"

	"google.golang.org/grpc"

	"github.com/grpctap/grpctap/forward"
	"github.com/grpctap/grpctap/internal/benchutil"
	"github.com/grpctap/grpctap/proxy"
)

// The grpctap-forward target is the "grpctap" target (the same proxy and
// observer, h2c to the backend) reached as a forward proxy: the client
// dials bench.test:PORT and grpc-go's own proxy support, from HTTPS_PROXY,
// sends CONNECT to grpctap's listener, which maps the name to 127.0.0.1
// (as --resolve does) and serves the h2c tunnel. The other targets are on
// loopback addresses, which grpc-go never sends through a proxy.
const forwardName = "grpctap-forward"

// reserveForward takes the forward proxy's port and points HTTPS_PROXY at
// it. grpc-go reads the variable once, at its first connection, so this
// runs before any client exists.
func reserveForward() (net.Listener, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"NO_PROXY", "no_proxy", "https_proxy"} {
		_ = os.Unsetenv(k)
	}
	if err := os.Setenv("HTTPS_PROXY", "http://"+lis.Addr().String()); err != nil {
		_ = lis.Close()
		return nil, err
	}
	return lis, nil
}

// serveForward serves the forward proxy on lis and returns the address
// its clients dial and how to stop it.
func serveForward(lis net.Listener, backend string, log *slog.Logger) (string, func(), error) {
	_, port, err := net.SplitHostPort(backend)
	if err != nil {
		return "", nil, err
	}
	p, err := proxy.New(proxy.Options{Observer: &countingObserver{}, Logger: log})
	if err != nil {
		return "", nil, err
	}
	r := forward.Resolve{}
	if err := r.Parse("bench.test=127.0.0.1"); err != nil {
		return "", nil, err
	}
	srv := p.NewServer(grpc.Creds(forward.Credentials(nil)))
	go func() { _ = srv.Serve(forward.Listen(lis, forward.Options{Resolve: r, Logger: log})) }()
	return "bench.test:" + port, func() { srv.Stop(); _ = p.Close() }, nil
}

// printForwardRatios prints grpctap-forward against grpctap (reverse
// mode), medians over the rounds.
func printForwardRatios(out io.Writer, cases []benchCase, results map[string]map[string][]benchutil.Result) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\ncase\tforward ops/s\treverse ops/s\tops/s forward/reverse\tp50 forward/reverse\tp99 forward/reverse\t")
	for _, c := range cases {
		ftp, fp50, fp99, _ := benchutil.Median(results[c.name][forwardName])
		rtp, rp50, rp99, _ := benchutil.Median(results[c.name]["grpctap"])
		if rtp == 0 || ftp == 0 {
			continue
		}
		p50, p99 := "-", "-"
		if !c.stream {
			p50 = fmt.Sprintf("%.2fx", float64(fp50)/float64(rp50))
			p99 = fmt.Sprintf("%.2fx", float64(fp99)/float64(rp99))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2fx\t%s\t%s\t\n", c.name, ftp, rtp, ftp/rtp, p50, p99)
	}
	return tw.Flush()
}
