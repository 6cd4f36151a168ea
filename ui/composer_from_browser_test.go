package ui_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/metadata"

	"github.com/grpctap/grpctap/demo/demopb"
)

// TestBrowserOpenInComposerTakesReplayHeaders: "Open in composer" starts
// from the headers a replay would send, by the server's one header policy:
// the call's own headers, a redacted one with its "[redacted]" to fill in,
// a real "[redacted]" as it was; not grpc-go's, grpctap's labels nor a
// client's renamed grpctap-* header.
func TestBrowserOpenInComposerTakesReplayHeaders(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-trace", "t-9", "authorization", "Bearer s3cret",
		"x-note", "[redacted]", "grpctap-origin", "forged")
	if _, err := e.client.Echo(ctx, &demopb.EchoRequest{Message: "from a call"}); err != nil {
		t.Fatal(err)
	}
	calls := e.waitCalls(1)
	b := newBrowser(t)
	b.do(15*time.Second, chromedp.Navigate(e.base+"/#/composer?from="+strconv.FormatInt(calls[0].ID, 10)))
	rows := `[...document.querySelectorAll('.md-row')].map(r => [...r.querySelectorAll('input')].map(i => i.value).join(': ')).join('\n')`
	b.wait(10*time.Second, `document.querySelectorAll('.md-row').length > 0 && document.querySelector('.req-json')?.value.includes('from a call')`)
	c, cancel2 := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel2()
	got, err := chromedp.Run(c, chromedp.Evaluate[string](rows))
	if err != nil {
		t.Fatal(err)
	}
	if want := "authorization: [redacted]\nx-note: [redacted]\nx-trace: t-9"; got != want {
		t.Errorf("composer metadata\n got %q\nwant %q", got, want)
	}
}
