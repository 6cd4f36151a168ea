package main

import (
	"database/sql"
	"os"
	"strings"
	"testing"
)

// TestDamagedCaptureSaysSo: a capture that opens but has a part that cannot
// be read said "dropped events: sql: no rows in result set" (its count of
// dropped events gone) or "database disk image is malformed" (its page
// damaged) and listed nothing. calls now lists the calls it can read and
// says the capture is damaged.
func TestDamagedCaptureSaysSo(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, db *sql.DB, path string){
		"count row gone": func(t *testing.T, db *sql.DB, _ string) {
			if _, err := db.Exec("DELETE FROM counters WHERE name = 'dropped_events'"); err != nil {
				t.Fatal(err)
			}
		},
		"count page zeroed": func(t *testing.T, db *sql.DB, path string) {
			var page, size int64
			if err := db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = 'counters'").Scan(&page); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow("PRAGMA page_size").Scan(&size); err != nil {
				t.Fatal(err)
			}
			db.Close() // before writing the file under it
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(make([]byte, size), (page-1)*size); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := sampleCapture(t)
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			// Everything in the main file, as after a clean close.
			if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				t.Fatal(err)
			}
			damage(t, db, path)
			db.Close()

			out, _, err := runCmd(t, "calls", "--db", path)
			if err == nil || !strings.Contains(err.Error(), "capture "+path+" is damaged: its count of dropped events cannot be read") {
				t.Errorf("err = %v, want it to say the capture is damaged", err)
			}
			for _, m := range []string{"/shop.v1.Cart/Get", "/shop.v1.Cart/Remove", "/chat.v1.Chat/Talk"} {
				if !strings.Contains(out, m) {
					t.Errorf("the readable call %s is not listed:\n%s", m, out)
				}
			}
			if _, _, err := runCmd(t, "export", "--db", path); err != nil {
				t.Errorf("export of the readable calls: %v", err)
			}
		})
	}
}
