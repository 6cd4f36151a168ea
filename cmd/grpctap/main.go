// Command grpctap is a recording, inspecting gRPC proxy with a gRPC-Web
// bridge. main only wires subcommands together; each lives in its own file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes. Commands that compare things (replay) use exitMismatch.
const (
	exitOK       = 0
	exitMismatch = 1
	exitError    = 2
)

// exitError lets a command choose its exit code and message.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode maps run's error to the process exit code, printing it.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		if ec.err != nil && ec.err.Error() != "" {
			fmt.Fprintln(stderr, "grpctap:", ec.err)
		}
		return ec.code
	}
	fmt.Fprintln(stderr, "grpctap:", err)
	return exitError
}

// run executes one grpctap command line. ctx is cancelled on SIGINT/SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "grpctap",
		Short: "A recording, inspecting gRPC proxy with a gRPC-Web bridge",
		Long: `grpctap sits between gRPC clients and servers: it forwards every call
unchanged, records it, decodes its messages and lets you search, replay and
mock what passed. Browser apps reach gRPC backends through its gRPC-Web bridge.

Start with 'grpctap demo' to see it work against a built-in backend.`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("grpctap {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newProxyCmd(),
		newDemoCmd(),
		newCallsCmd(),
		newShowCmd(),
		newExportCmd(),
		newImportCmd(),
		newCompactCmd(),
		newStatsCmd(),
		newReplayCmd(),
		newCollectionCmd(),
		newTestCmd(),
		newMockCmd(),
		newUICmd(),
		newCACmd(),
	)
	return root
}
