package benchutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcCPU returns the process's user plus system time so far.
func ProcCPU(pid int, tick time.Duration) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis, from field 3 (state).
	i := strings.LastIndexByte(string(b), ')')
	var f []string
	if i >= 0 {
		f = strings.Fields(string(b[i+1:]))
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("read CPU time: unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	return time.Duration(utime+stime) * tick, nil
}

// ClockTick is the unit of /proc/PID/stat's times (sysconf CLK_TCK,
// 100 Hz on Linux unless getconf says otherwise).
func ClockTick(ctx context.Context) (time.Duration, error) {
	hz := 100
	if b, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			hz = n
		}
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return 0, fmt.Errorf("CPU times are read from /proc (Linux only): %w", err)
	}
	return time.Second / time.Duration(hz), nil
}

// Main runs a bench command's body with a context that ends after timeout
// or on SIGINT/SIGTERM, and exits 1 with the error, prefixed by name.
func Main(name string, timeout time.Duration, run func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
