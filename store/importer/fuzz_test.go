package importer

import (
	"os"
	"strings"
	"testing"

	"github.com/grpctap/grpctap/store"
)

// FuzzImport checks that no input makes the import reader (grpctap's
// export or grpc-dump) panic or produce a call that is not plausible: a
// closed call without a status, a message without bytes or out of order.
func FuzzImport(f *testing.F) {
	for _, name := range []string{"dump.json", "events.json"} {
		b, err := os.ReadFile("../../testdata/grpcdump/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(`{"type":"status","id":1}`)
	f.Add(`{"service":"s","method":"m","error":{"code":"bogus"}}`)
	f.Add(`{"id":7,"method":"/a.B/C","state":"closed","start":"2026-11-20T09:30:00Z","end":"2026-11-20T09:30:01Z",` +
		`"status":{"code":5},"request_headers":{"authorization":["x"]},"messages":[{"seq":1,"direction":"request",` +
		`"time":"2026-11-20T09:30:00Z","size":3,"raw":"AQID"}]}`)
	f.Fuzz(func(t *testing.T, in string) {
		_ = Read(strings.NewReader(in), func(c *store.CallWithMessages) error {
			if err := Check(c); err != nil {
				t.Fatalf("an implausible call was passed on: %v", err)
			}
			if c.End != nil && c.Status == nil {
				t.Fatalf("closed call without a status %+v", c.Call)
			}
			for _, m := range c.Messages {
				if m.Raw == nil && m.Size > 0 {
					t.Fatalf("message %d without bytes: %+v", m.Seq, m)
				}
			}
			return nil
		})
	})
}
