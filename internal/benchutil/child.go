package benchutil

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/grpctap/grpctap/internal/syncbuf"
)

// Proxy is a `grpctap proxy` child process of a bench, with a client
// connection to it.
type Proxy struct {
	Cmd    *exec.Cmd
	Stderr *syncbuf.Buffer
	Exited chan struct{} // closed when the process has exited
	Addr   string        // its gRPC listener
	Pprof  string        // its --pprof address; "" without --pprof
	CC     *grpc.ClientConn
}

var (
	listenLine = regexp.MustCompile(`grpctap proxy listening.*addr=(127\.0\.0\.1:\d+)`)
	pprofLine  = regexp.MustCompile(`pprof listening.*addr=(127\.0\.0\.1:\d+)`)
)

// StartProxy runs bin with args, a `grpctap proxy` command line listening
// on 127.0.0.1:0, waits (up to 30 s) until it listens, and, when args ask
// for --pprof, serves its profiles, then dials it. The child dies with the
// bench. The Proxy it returns, even with an error, must be stopped; it is
// nil only when the process did not start.
func StartProxy(ctx context.Context, name, bin string, args ...string) (*Proxy, error) {
	p := &Proxy{Stderr: &syncbuf.Buffer{}, Exited: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Stdout, p.Cmd.Stderr = io.Discard, p.Stderr
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.Cmd.Wait(); close(p.Exited) }()
	pprof := slices.Contains(args, "--pprof")
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for p.Addr == "" || (pprof && p.Pprof == "") {
		text := p.Stderr.String()
		if m := listenLine.FindStringSubmatch(text); m != nil {
			p.Addr = m[1]
		}
		if m := pprofLine.FindStringSubmatch(text); m != nil {
			p.Pprof = m[1]
		}
		select {
		case <-p.Exited:
			return p, fmt.Errorf("%s exited before listening:\n%s", name, p.Stderr)
		case <-deadline.C:
			return p, fmt.Errorf("%s not listening after 30s:\n%s", name, p.Stderr)
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	cc, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return p, fmt.Errorf("dial %s: %w", name, err)
	}
	p.CC = cc
	return p, nil
}

// Stop ends the proxy as SIGINT would (its recorder flushes), or kills it
// after 30 s; it may be called more than once.
func (p *Proxy) Stop() {
	if p.CC != nil {
		_ = p.CC.Close()
		p.CC = nil
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.Exited:
	case <-time.After(30 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.Exited
	}
}
