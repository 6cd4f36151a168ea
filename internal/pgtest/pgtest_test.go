package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestRestart: a cluster starts, takes a connection, stops, starts again
// on the same port with its data.
func TestRestart(t *testing.T) {
	s, err := Start()
	if err != nil {
		Unavailable(t, err)
	}
	defer s.Close()
	dsn, err := s.CreateDB("kept")
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string) {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	exec("CREATE TABLE x(a int); INSERT INTO x VALUES (1)")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
		conn.Close(context.Background())
		t.Fatal("connected to a stopped server")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	exec("SELECT a FROM x")
}
