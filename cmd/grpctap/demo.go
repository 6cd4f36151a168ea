package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
)

// demoWebAddr is where the demo serves its gRPC-Web bridge unless told
// otherwise: a newcomer sees the bridge work without a flag.
const demoWebAddr = "127.0.0.1:8080"

// demoBackendAddr is where the demo backend listens unless told otherwise:
// the same port on every start, so calls recorded by one demo replay
// against the next.
const demoBackendAddr = "127.0.0.1:50049"

type demoFlags struct {
	proxy   proxyFlags
	record  recordFlags
	decode  decodeFlags
	web     webFlags
	ui      uiFlags
	traffic time.Duration
	backend string
	changed bool
}

func newDemoCmd() *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the proxy in front of a built-in demo backend, with sample traffic",
		Long: `demo starts a small gRPC service of grpctap's own (grpctap.demo.v1.DemoService:
unary Echo, client-streaming Sum, server-streaming Countdown, bidi Chat, with
server reflection; on --backend-listen, the same port on every start) and
the proxy in front of it, with the web inspector (--ui) and the gRPC-Web
bridge (--web, default 127.0.0.1:8080), then prints their addresses and
commands to try. A default address that is taken (by another demo) is
replaced by a free port. Unless --traffic=0, it also sends a few calls of
every kind through the proxy now and then, so there is something to look at.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd, &f)
		},
	}
	f.proxy.register(cmd.Flags(), false)
	f.record.register(cmd.Flags())
	f.decode.register(cmd.Flags(), true)
	f.web.register(cmd.Flags(), demoWebAddr)
	f.ui.register(cmd.Flags(), true)
	cmd.Flags().DurationVar(&f.traffic, "traffic", 3*time.Second, "send a round of sample calls through the proxy this often (0 turns it off)")
	cmd.Flags().BoolVar(&f.changed, "changed", false, "answer as a changed backend would (some Echo, Sum, Countdown and Chat fields altered), for trying 'grpctap test' and 'grpctap replay' against it")
	cmd.Flags().StringVar(&f.backend, "backend-listen", demoBackendAddr, "address the demo backend listens on (when the default is taken, a free port)")
	return cmd
}

func runDemo(ctx context.Context, cmd *cobra.Command, f *demoFlags) error {
	log := newLogger(cmd.ErrOrStderr(), f.proxy.logLevel.Level)
	// Every address is taken before anything starts, so that all that are
	// in use are reported at once.
	ls, err := listenAll(cmd.Flags(), log,
		listenSpec{flag: "backend-listen", addr: f.backend, what: "demo backend", advice: "choose another address with --backend-listen"},
		f.proxy.listenSpec(), f.web.listenSpec(), f.ui.listenSpec(!f.record.noRecord))
	if err != nil {
		return err
	}
	defer closeListeners(ls)
	g := newRunGroup(f.proxy.shutdownTimeout, log)
	// The backend stops last: calls the proxy still forwards reach it.
	backend := demo.ServeWith(ls[0], demo.Options{Changed: f.changed})
	g.onClose(func(ctx context.Context) error { _ = backend.Close(ctx); return nil })
	f.proxy.backend = backend.Addr()
	cfg, err := readForwarderConfig(log, &f.proxy, &f.record, &f.decode)
	if err != nil {
		return g.abort(err)
	}
	doors, err := readFrontDoors(&f.web, &f.ui)
	if err != nil {
		return g.abort(err)
	}
	doors.webLn, doors.uiLn = ls[2], ls[3]
	fw, err := startForwarder(ctx, g, log, cfg, ls[1])
	if err != nil {
		return g.abort(err)
	}
	webAddr, uiURL, err := fw.serveIn(ctx, g, doors, f.proxy.tlsCert, f.proxy.shutdownTimeout, log)
	if err != nil {
		return g.abort(err)
	}
	addr := fw.lis.Addr().String()
	printDemoHints(cmd.OutOrStdout(), demoHints{
		addr: addr, backend: backend.Addr(), tls: f.proxy.tlsCert != "", webTLS: f.web.tlsCert != "", web: webAddr, ui: uiURL,
		db: f.record.db, recording: !f.record.noRecord, changed: f.changed,
	})
	if f.traffic > 0 && f.proxy.tlsCert == "" {
		g.add(ctxService("demo traffic", func(ctx context.Context) error {
			sampleTraffic(ctx, addr, f.traffic, log)
			return nil
		}, nil))
	}
	return g.run(ctx)
}

type demoHints struct {
	addr, backend, web, ui, db string
	tls, webTLS, recording     bool
	changed                    bool // the backend answers as demo.Changed
}

func printDemoHints(w io.Writer, h demoHints) {
	plaintext := "-plaintext "
	if h.tls {
		plaintext = "-insecure "
	}
	what := "grpctap.demo.v1.DemoService, with reflection"
	if h.changed {
		what += "; --changed: some answers altered"
	}
	fmt.Fprintf(w, "grpctap demo\n  proxy    %s  (clients connect here)\n  backend  %s  (%s)\n", h.addr, h.backend, what)
	if h.web != "" {
		fmt.Fprintf(w, "  web      %s  (gRPC-Web bridge)\n", h.web)
	}
	if h.recording {
		fmt.Fprintf(w, "  capture  %s\n", h.db)
	}
	if h.ui != "" {
		fmt.Fprintf(w, "\nOpen the inspector: %s\n", h.ui)
	}
	fmt.Fprintf(w, `
Try it (grpcurl):
  grpcurl %s%s list
  grpcurl %s-d '{"message":"hello","tags":["a","b"]}' %s grpctap.demo.v1.DemoService/Echo
  grpcurl %s-d '{"count":3}' %s grpctap.demo.v1.DemoService/Countdown
`, plaintext, h.addr, plaintext, h.addr, plaintext, h.addr)
	if h.web != "" {
		scheme, insecure := "http", ""
		if h.webTLS {
			scheme, insecure = "https", "-k "
		}
		// The body is one gRPC-Web frame, base64 (grpc-web-text): an
		// EchoRequest with message "hi". The answer comes back the same way.
		fmt.Fprintf(w, `
Try the gRPC-Web bridge (curl; a browser page on another origin needs --web-origin):
  curl -s %s-H 'content-type: application/grpc-web-text' --data 'AAAAAAQKAmhp' %s://%s/grpctap.demo.v1.DemoService/Echo
`, insecure, scheme, h.web)
	}
	if h.recording {
		db := ""
		if h.db != defaultDB {
			db = " --db " + h.db
		}
		fmt.Fprintf(w, `
See what passed (in another terminal):
  grpctap calls%s
  grpctap show%s <id>
  grpctap export%s | jq .

Turn calls into tests (then run them against 'grpctap demo --changed' to see them fail):
  grpctap collection add smoke <id> ...%s
  grpctap test smoke%s --ignore-field receivedAt --ignore-field at --ignore-field sentAt --ignore-header x-echo-handled-at
`, db, db, db, db, db)
	}
	fmt.Fprintln(w, "\nPress Ctrl-C to stop.")
}

// sampleTraffic sends one call of each RPC kind through the proxy every
// interval until ctx ends, so a new user sees every kind of call pass.
func sampleTraffic(ctx context.Context, addr string, interval time.Duration, log *slog.Logger) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		// Returning early would stop the demo with it (runGroup).
		log.Warn("demo traffic: dial", "err", err)
		<-ctx.Done()
		return
	}
	defer cc.Close()
	c := demopb.NewDemoServiceClient(cc)
	t := time.NewTicker(interval)
	defer t.Stop()
	for round := 1; ; round++ {
		if err := demoRound(ctx, c, round); err != nil && ctx.Err() == nil {
			log.Warn("demo traffic", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// demoRound makes one call of each kind; every fourth round Echo fails on
// purpose, so errors show up too.
func demoRound(ctx context.Context, c demopb.DemoServiceClient, round int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-demo-round", fmt.Sprint(round), "authorization", "Bearer demo-secret-token")
	req := &demopb.EchoRequest{
		Message: fmt.Sprintf("hello #%d", round),
		Author:  &demopb.Author{Name: "demo", Mood: demopb.Mood_MOOD_CURIOUS},
		Tags:    []string{"demo", "sample"},
		Labels:  map[string]string{"round": fmt.Sprint(round)},
	}
	if round%4 == 0 {
		req.Fail = &demopb.FailWith{Code: 9, Message: "the demo fails every fourth round on purpose"}
	}
	if _, err := c.Echo(ctx, req); err != nil && req.Fail == nil {
		return fmt.Errorf("Echo: %w", err)
	}
	sum, err := c.Sum(ctx)
	if err != nil {
		return fmt.Errorf("Sum: %w", err)
	}
	for i := 1; i <= 3; i++ {
		if err := sum.Send(&demopb.SumRequest{Value: &demopb.SumRequest_Integer{Integer: int64(i * round)}}); err != nil {
			return fmt.Errorf("Sum: %w", err)
		}
	}
	if _, err := sum.CloseAndRecv(); err != nil {
		return fmt.Errorf("Sum: %w", err)
	}
	cd, err := c.Countdown(ctx, &demopb.CountdownRequest{Count: 3, Interval: durationpb.New(100 * time.Millisecond)})
	if err != nil {
		return fmt.Errorf("Countdown: %w", err)
	}
	for {
		if _, err := cd.Recv(); err != nil {
			if err == io.EOF {
				break
			}
			return fmt.Errorf("Countdown: %w", err)
		}
	}
	chat, err := c.Chat(ctx)
	if err != nil {
		return fmt.Errorf("Chat: %w", err)
	}
	for _, text := range []string{"hi", "how are you?"} {
		if err := chat.Send(&demopb.ChatMessage{Author: &demopb.Author{Name: "demo"}, Text: text}); err != nil {
			return fmt.Errorf("Chat: %w", err)
		}
		if _, err := chat.Recv(); err != nil {
			return fmt.Errorf("Chat: %w", err)
		}
	}
	if err := chat.CloseSend(); err != nil {
		return fmt.Errorf("Chat: %w", err)
	}
	if _, err := chat.Recv(); err != io.EOF {
		return fmt.Errorf("Chat: stream did not end: %v", err)
	}
	return nil
}
