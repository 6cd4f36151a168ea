package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// logLevel is --log-level, the one flag every command that logs shares.
type logLevel struct{ slog.Level }

// register declares --log-level on fs, at info unless given (the level of
// the "listening" lines that name a server's address). calls is the level
// that logs one line per call, said in the help ("" when none does).
func (l *logLevel) register(fs *pflag.FlagSet, calls string) {
	l.Level = slog.LevelInfo
	levels := []string{"debug", "info", "warn", "error"}
	for i, name := range levels {
		if name == calls {
			levels[i] += " (one line per call)"
		}
	}
	usage := "log level: " + strings.Join(levels[:3], ", ") + " or " + levels[3]
	fs.Var(l, "log-level", usage)
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func (l *logLevel) Type() string { return "level" }

// String is the level as --log-level takes it: "info", not slog's "INFO".
func (l *logLevel) String() string { return strings.ToLower(l.Level.String()) }

func (l *logLevel) Set(s string) error {
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("%q is not a log level (debug, info, warn, error)", s)
	}
	return nil
}
