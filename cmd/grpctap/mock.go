package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/grpctap/grpctap/mock"
	"github.com/grpctap/grpctap/schemas"
	"github.com/grpctap/grpctap/store"
)

// mockSourceFlags say which recorded calls a mock answers from and how it
// matches; shared by 'mock' and 'proxy --mock-on-unavailable'.
type mockSourceFlags struct {
	method string
	timing bool
	match  string
	files  decodeFlags // for decoded matching; default: the schemas saved in the capture
}

func (f *mockSourceFlags) register(fs *pflag.FlagSet, prefix string) {
	fs.StringVar(&f.method, prefix+"method", "", "answer only methods matching this glob ('/pkg.Svc/*'); others get UNIMPLEMENTED")
	fs.BoolVar(&f.timing, prefix+"timing", false, "keep the recorded gaps between messages (default: answer at once)")
	fs.StringVar(&f.match, prefix+"match", "similar", "loosest match accepted: exact (request bytes), decoded (equal fields) or similar (the closest recorded request)")
	f.files.registerFiles(fs, prefix)
}

// mockSource is what the mock flags ask for: the capture to answer from,
// which calls and how they match; loadMock builds the mock from it.
type mockSource struct {
	db      string
	options mock.Options // without Decoder and Logger
	schemas schemas.DecoderOptions
}

// config checks the flags and reads them, with db the capture to answer
// from.
func (f *mockSourceFlags) config(db string) (mockSource, error) {
	level, err := mock.ParseLevel(f.match)
	if err != nil {
		return mockSource{}, err
	}
	return mockSource{db: db, options: mock.Options{Method: f.method, Timing: f.timing, MaxLevel: level}, schemas: f.files.options(nil)}, nil
}

// loadMock opens the capture read-only and builds the mock from it. The
// returned function releases what it holds.
func loadMock(ctx context.Context, c mockSource, log *slog.Logger) (*mock.Mock, func(), error) {
	st, err := store.Open(ctx, c.db, store.Options{ReadOnly: true})
	if err != nil {
		return nil, nil, err
	}
	dec, err := schemas.OpenDecoder(ctx, st, c.schemas)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	opts := c.options
	opts.Decoder, opts.Logger = dec, log
	m, err := mock.Load(ctx, st, opts)
	// The index holds every call in memory; the capture is not read again.
	st.Close()
	if err != nil {
		dec.Close()
		return nil, nil, err
	}
	return m, func() { dec.Close() }, nil
}

type mockFlags struct {
	db              string
	listen          string
	tlsCert, tlsKey string
	src             mockSourceFlags
	shutdownTimeout time.Duration
	logLevel        logLevel
}

func newMockCmd() *cobra.Command {
	var f mockFlags
	cmd := &cobra.Command{
		Use:   "mock --listen ADDR [flags]",
		Short: "Answer gRPC clients from recorded calls, with no backend",
		Long: `mock serves every recorded method from the capture. For each call it picks a
recorded call of the same method (same :authority preferred, newest first)
by, in turn: the exact request bytes, equal decoded requests, then the most
similar request (fewest differing fields; --match limits how loose). The
response header grpctap-mock-match says which was used ("exact; call=12"),
and so does the log.

The recorded response headers, messages in order (--timing keeps their
gaps), trailers and status with details are played back. Client streams are
read to the end first; calls recorded interleaved (bidi) get each response
after the requests that preceded it in the capture.

A method never recorded gets UNIMPLEMENTED; a request no recorded call
matches (with --match exact or decoded) gets NOT_FOUND naming the nearest
recorded calls.`,
		Example: `  grpctap mock --listen 127.0.0.1:9000
  grpctap mock --db staging.db --listen :9000 --method '/shop.v1.Cart/*' --timing
  grpctap mock --listen 127.0.0.1:9443 --tls-cert server.pem --tls-key server-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMock(cmd.Context(), cmd, &f)
		},
	}
	fs := cmd.Flags()
	dbFlag(fs, &f.db, "capture to answer from")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:50051", "address to serve gRPC on (h2c, or TLS with --tls-cert)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve TLS (ALPN h2) with this PEM certificate, as the real backend may; needs --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	f.src.register(fs, "")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long calls in flight may take to finish")
	f.logLevel.register(fs, "info")
	return cmd
}

func runMock(ctx context.Context, cmd *cobra.Command, f *mockFlags) error {
	log := newLogger(cmd.ErrOrStderr(), f.logLevel.Level)
	srvOpts, err := listenerTLS(f.tlsCert, f.tlsKey)
	if err != nil {
		return err
	}
	src, err := f.src.config(f.db)
	if err != nil {
		return err
	}
	m, release, err := loadMock(ctx, src, log)
	if err != nil {
		return err
	}
	defer release()
	if m.Calls() == 0 {
		return errors.New("the capture holds no finished calls to answer from" + methodNote(f.src.method))
	}
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := m.NewServer(srvOpts...)
	log.Info("grpctap mock listening", "addr", lis.Addr().String(), "tls", f.tlsCert != "", "db", f.db, "calls", m.Calls(), "methods", len(m.Methods()))
	g := newRunGroup(f.shutdownTimeout, log)
	g.add(grpcService("mock", srv, lis))
	return g.run(ctx)
}

func methodNote(glob string) string {
	if glob == "" {
		return ""
	}
	return " matching --method " + glob
}
