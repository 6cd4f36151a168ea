// Command webbench compares gRPC-Web unary throughput of grpctap's bridge
// (the real 'grpctap proxy --web' binary, recording to SQLite) with
// improbable-eng's grpc-web v0.15.0, in one run, on loopback.
//
//	go run ./bench/webbench [-n 20000] [-c 32] [-rounds 3]
//
// It starts the demo backend in-process, builds grpctap from this module
// and starts it in front of that backend. The baseline, named grpcwebproxy
// in the output, is what improbable's grpcwebproxy serves:
// grpcweb.WrapServer around a grpc.Server whose unknown-service handler is
// mwitkow/grpc-proxy's transparent handler, both from this module's go.mod.
// It is built into webbench, which re-executes itself ('webbench
// -serve-baseline ...', see baseline.go) so that the baseline runs in a
// process of its own, as grpctap does. Both get the same load, alternating,
// over HTTP/1.1 (plaintext) and HTTP/2 (TLS, since grpcwebproxy speaks
// HTTP/2 only over TLS), plus h2c for grpctap alone. It prints the median
// over the rounds of throughput, p50 and p99, and the ratio
// grpctap/grpcwebproxy.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/grpctap/grpctap/demo"
	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/syncbuf"
)

type config struct {
	n, c, rounds int
	size         int
	timeout      time.Duration
	noRecord     bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveBaselineArg {
		if err := runBaseline(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "webbench:", err)
			os.Exit(1)
		}
		return
	}
	var cfg config
	flag.IntVar(&cfg.n, "n", 20000, "requests per measurement")
	flag.IntVar(&cfg.c, "c", 32, "concurrent requests")
	flag.IntVar(&cfg.rounds, "rounds", 3, "measurements per target and transport (the median is reported)")
	flag.IntVar(&cfg.size, "size", 128, "request message size in bytes")
	flag.DurationVar(&cfg.timeout, "timeout", 15*time.Minute, "bound on the whole run")
	flag.BoolVar(&cfg.noRecord, "no-record-too", false, "also measure grpctap with --no-record, to show what recording costs")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "webbench:", err)
		os.Exit(1)
	}
}

// target is one gRPC-Web server under test.
type target struct {
	name string
	urls map[string]string // transport → base URL
}

func run(ctx context.Context, cfg config) error {
	tmp, err := os.MkdirTemp("", "webbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	certFile, keyFile, err := writeCert(tmp)
	if err != nil {
		return err
	}

	backend, err := demo.Start(ctx, "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer backend.Close(context.Background())

	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = p.Process.Kill()
				<-done
			}
		}
	}()
	// Each process's stderr is kept, to say why a target never got ready.
	stderrOf := map[string]*syncbuf.Buffer{}
	start := func(bin string, args ...string) error {
		cmd := exec.CommandContext(ctx, bin, args...)
		errBuf := &syncbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = io.Discard, errBuf
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		stderrOf[strings.Join(args, " ")] = errBuf
		return nil
	}

	// grpctap: the real binary, recording on.
	fmt.Println("building grpctap ...")
	tapBin := filepath.Join(tmp, "grpctap")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", tapBin, "./cmd/grpctap").CombinedOutput(); err != nil {
		return fmt.Errorf("build grpctap (run from the module root): %v\n%s", err, out)
	}
	tapH1, tapTLS := freePort(), freePort()
	if err := start(tapBin, "proxy", "--backend", backend.Addr(), "--listen", "127.0.0.1:0",
		"--web", tapH1, "--db", filepath.Join(tmp, "bench.db"), "--log-level", "error", "--ui", ""); err != nil {
		return err
	}
	if err := start(tapBin, "proxy", "--backend", backend.Addr(), "--listen", "127.0.0.1:0",
		"--web", tapTLS, "--web-tls-cert", certFile, "--web-tls-key", keyFile,
		"--db", filepath.Join(tmp, "bench-tls.db"), "--log-level", "error", "--ui", ""); err != nil {
		return err
	}
	targets := []*target{}
	tap := &target{name: "grpctap", urls: map[string]string{
		"http/1.1": "http://" + tapH1, "h2c": "http://" + tapH1, "h2 (TLS)": "https://" + tapTLS,
	}}
	var tapNoRec *target
	if cfg.noRecord {
		// The same binary without recording: what recording costs.
		h1, tlsAddr := freePort(), freePort()
		if err := start(tapBin, "proxy", "--backend", backend.Addr(), "--listen", "127.0.0.1:0", "--no-record",
			"--web", h1, "--log-level", "error", "--ui", ""); err != nil {
			return err
		}
		if err := start(tapBin, "proxy", "--backend", backend.Addr(), "--listen", "127.0.0.1:0", "--no-record",
			"--web", tlsAddr, "--web-tls-cert", certFile, "--web-tls-key", keyFile, "--log-level", "error", "--ui", ""); err != nil {
			return err
		}
		tapNoRec = &target{name: "grpctap-norec", urls: map[string]string{
			"http/1.1": "http://" + h1, "h2c": "http://" + h1, "h2 (TLS)": "https://" + tlsAddr,
		}}
	}

	// The baseline: grpcwebproxy's server (grpcweb.WrapServer around
	// grpc-proxy), built into this binary and run as a process of its own,
	// as grpctap is, with the flags webbench gave grpcwebproxy.
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find webbench's own binary for the baseline: %w", err)
	}
	gwpH1, gwpTLS := freePort(), freePort()
	life := cfg.timeout + time.Minute // outlives the run, not an orphaned parent
	if err := start(self, serveBaselineArg, "-http", gwpH1, "-tls", gwpTLS, "-backend", backend.Addr(),
		"-tls-cert", certFile, "-tls-key", keyFile, "-max-life", life.String()); err != nil {
		return fmt.Errorf("start the baseline: %w", err)
	}
	targets = append(targets, &target{name: "grpcwebproxy", urls: map[string]string{
		"http/1.1": "http://" + gwpH1, "h2 (TLS)": "https://" + gwpTLS,
	}})
	targets = append(targets, tap)
	if tapNoRec != nil {
		targets = append(targets, tapNoRec)
	}

	req := requestBody(cfg.size)
	transports := []string{"http/1.1", "h2 (TLS)", "h2c"}
	for _, t := range targets {
		for _, tr := range transports {
			if u, ok := t.urls[tr]; ok {
				if err := waitReady(ctx, newClient(tr, cfg.c), u, req); err != nil {
					var why strings.Builder
					for args, b := range stderrOf {
						if out := b.String(); out != "" {
							fmt.Fprintf(&why, "\n  stderr of %s:\n%s", args, out)
						}
					}
					return fmt.Errorf("%s %s not ready: %w%s", t.name, tr, err, why.String())
				}
			}
		}
	}

	type key struct{ target, transport string }
	results := map[key][]result{}
	fmt.Printf("load: %d unary Echo calls, %d concurrent, %d-byte messages, %d rounds; backend in-process\n", cfg.n, cfg.c, cfg.size, cfg.rounds)
	for round := 0; round < cfg.rounds; round++ {
		order := slices.Clone(targets)
		if round%2 == 1 {
			slices.Reverse(order) // alternate who goes first
		}
		for _, tr := range transports {
			for _, t := range order {
				u, ok := t.urls[tr]
				if !ok {
					continue
				}
				c := newClient(tr, cfg.c)
				if _, err := load(ctx, c, u, req, cfg.n/10, cfg.c); err != nil { // warm-up
					return fmt.Errorf("%s %s warm-up: %w", t.name, tr, err)
				}
				r, err := load(ctx, c, u, req, cfg.n, cfg.c)
				c.CloseIdleConnections()
				if err != nil {
					return fmt.Errorf("%s %s: %w", t.name, tr, err)
				}
				results[key{t.name, tr}] = append(results[key{t.name, tr}], r)
				fmt.Printf("  round %d %-12s %-9s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms\n", round+1, t.name, tr, r.rps, ms(r.p50), ms(r.p99))
			}
		}
	}

	fmt.Printf("\nmedians of %d rounds\n", cfg.rounds)
	fmt.Printf("%-9s %-12s %10s %9s %9s %8s\n", "transport", "target", "req/s", "p50 ms", "p99 ms", "ratio")
	for _, tr := range transports {
		gwp := median(results[key{"grpcwebproxy", tr}])
		for _, t := range targets {
			rs := results[key{t.name, tr}]
			if len(rs) == 0 {
				continue
			}
			m := median(rs)
			ratio := "-"
			if t.name == "grpctap" && gwp.rps > 0 {
				ratio = fmt.Sprintf("%.2fx", m.rps/gwp.rps)
			}
			fmt.Printf("%-9s %-12s %10.0f %9.2f %9.2f %8s\n", tr, t.name, m.rps, ms(m.p50), ms(m.p99), ratio)
		}
	}
	return nil
}

type result struct {
	rps      float64
	p50, p99 time.Duration
}

// median takes each figure's median independently.
func median(rs []result) result {
	if len(rs) == 0 {
		return result{}
	}
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return result{
		rps: pick(func(r result) float64 { return r.rps }),
		p50: time.Duration(pick(func(r result) float64 { return float64(r.p50) })),
		p99: time.Duration(pick(func(r result) float64 { return float64(r.p99) })),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// requestBody is one gRPC-Web frame holding an EchoRequest of about size bytes.
func requestBody(size int) []byte {
	msg, err := proto.Marshal(&demopb.EchoRequest{Message: strings.Repeat("x", size)})
	if err != nil {
		panic(err)
	}
	out := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:5], uint32(len(msg)))
	copy(out[5:], msg)
	return out
}

// newClient returns an HTTP client for one transport with room for c
// connections (HTTP/1.1) or one multiplexed connection (HTTP/2).
func newClient(transport string, c int) *http.Client {
	tr := &http.Transport{
		MaxIdleConnsPerHost: c,
		MaxConnsPerHost:     c,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // our own throwaway certificate, loopback only
	}
	p := new(http.Protocols)
	switch transport {
	case "http/1.1":
		p.SetHTTP1(true)
	case "h2c":
		p.SetUnencryptedHTTP2(true)
	default:
		p.SetHTTP2(true)
	}
	tr.Protocols = p
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// call makes one unary gRPC-Web call and checks its status.
func call(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/grpctap.demo.v1.DemoService/Echo", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	if !bytes.Contains(out, []byte("grpc-status: 0")) && !bytes.Contains(out, []byte("Grpc-Status: 0")) {
		return fmt.Errorf("call failed: %q", out)
	}
	return nil
}

// load sends n calls from c workers and measures them.
func load(ctx context.Context, cl *http.Client, url string, body []byte, n, c int) (result, error) {
	var next atomic.Int64
	lat := make([][]time.Duration, c)
	errs := make([]error, c)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				t := time.Now()
				if err := call(ctx, cl, url, body); err != nil {
					errs[w] = err
					return
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return result{
		rps: float64(len(all)) / elapsed.Seconds(),
		p50: all[len(all)/2],
		p99: all[len(all)*99/100],
	}, nil
}

// waitReady retries one call until it succeeds or 15s pass.
func waitReady(ctx context.Context, c *http.Client, url string, body []byte) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := call(ctx, c, url, body)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePort returns a loopback address that was free a moment ago.
func freePort() string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// writeCert writes a throwaway self-signed certificate for 127.0.0.1.
func writeCert(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "webbench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
