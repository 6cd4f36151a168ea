// Package pgtest runs throwaway PostgreSQL servers for tests: a cluster
// made by initdb in a temporary directory, listening on a free loopback
// port and a socket in its own directory, run as an unprivileged user
// when the tests run as root, and removed when stopped. It uses the
// server binaries of Debian's postgresql package (/usr/lib/postgresql/N/bin);
// scripts/setup installs it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

// Bin returns the directory of the newest installed PostgreSQL server
// binaries (GRPCTAP_PG_BIN overrides it), or an error saying how to get
// them.
func Bin() (string, error) {
	if d := os.Getenv("GRPCTAP_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries (initdb) found: install Debian's postgresql package (bash scripts/setup does) or set GRPCTAP_PG_BIN")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Server is one throwaway cluster.
type Server struct {
	bin, dir string
	Port     int
	cred     *syscall.Credential // the user it runs as, when not ourselves

	mu  sync.Mutex
	cmd *exec.Cmd
	log *os.File
}

// User is the cluster's superuser.
const User = "grpctap"

// Start makes a cluster and starts it.
func Start() (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "grpctap-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("nobody")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, and no user nobody to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	out, err := s.command("initdb", "-D", s.data(), "-U", User, "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	return cmd
}

// Start starts the server (again, after Stop) and waits until it takes
// connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o666)
	if err != nil {
		return err
	}
	cmd := s.command("postgres", "-D", s.data(), "-p", strconv.Itoa(s.Port), "-h", "127.0.0.1",
		"-k", s.dir, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=128MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.log = cmd, logf
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			// Wait in the background from now on, so Stop can reap it.
			go func() { err := <-exited; s.reaped(cmd, err) }()
			return nil
		}
		select {
		case werr := <-exited:
			s.cmd = nil
			logf.Close()
			return fmt.Errorf("postgres exited at start (%v); its log: %s", werr, s.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres took connections on no try for 60 s: %v; its log: %s", err, s.Log())
		}
	}
}

// done is closed by reaped; Stop waits on it.
func (s *Server) reaped(cmd *exec.Cmd, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == cmd {
		s.cmd = nil
		s.log.Close()
	}
}

// Stop shuts the server down the way an administrator's fast shutdown
// does (SIGINT: clients are disconnected, work in progress rolled back)
// and waits for it to exit. The cluster stays for Start.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		running := s.cmd == cmd
		s.mu.Unlock()
		if !running {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return errors.New("postgres did not stop within 30 s; killed")
}

// Close stops the server and removes the cluster.
func (s *Server) Close() error {
	err := s.Stop()
	return errors.Join(err, os.RemoveAll(s.dir))
}

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}

// DSN is the URL of database db on the server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, s.Port, db)
}

// CreateDB makes a new empty database and returns its URL.
func (s *Server) CreateDB(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return s.DSN(name), nil
}

var (
	sharedMu  sync.Mutex
	shared    *Server
	sharedErr error
	dbCount   int
)

// DB gives a test a new database on a server shared by the package's
// tests (started on first use; StopShared, from TestMain, removes it). On
// a machine without PostgreSQL the test is skipped, except under CI=true,
// where it fails: CI must test both engines.
func DB(t testing.TB) string {
	t.Helper()
	s := Shared(t)
	sharedMu.Lock()
	dbCount++
	name := fmt.Sprintf("t%d_%s", dbCount, strings.ToLower(sanitize(t.Name())))
	sharedMu.Unlock()
	dsn, err := s.CreateDB(name)
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	return dsn
}

// Shared returns the package's shared server, starting it on first use.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = Start()
	}
	if sharedErr != nil {
		Unavailable(t, sharedErr)
	}
	return shared
}

// Unavailable skips t for want of PostgreSQL, or fails it under CI.
func Unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("PostgreSQL: %v", err)
	}
	t.Skipf("PostgreSQL: %v", err)
}

// StopShared stops and removes the shared server, if one was started.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.Close()
		shared = nil
	}
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

// Main runs a package's tests as goleak.VerifyTestMain does, stopping the
// shared server (if a test started one) before looking for leaks.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Pid is the postmaster's process id, 0 when the server is stopped.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
