package ui_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserKindColumnNotCut: the traffic table's Kind column shows
// "server stream" and "client stream" whole ("server str…" before), at the
// default width and at the narrowest that shows the column, and Method
// keeps room for the demo's method names.
func TestBrowserKindColumnNotCut(t *testing.T) {
	e := newEnv(t, envOpts{})
	sampleTraffic(t, e)
	e.waitCalls(4)
	b := newBrowser(t)
	b.do(15*time.Second, chromedp.Navigate(e.base+"/#/traffic"))
	b.wait(10*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 4`)
	// Cells whose text does not fit: "kind: text (scroll > client)".
	clipped := `JSON.stringify([...document.querySelectorAll('#rows tr[data-id] td')].
		map(td => ({td, col: td.classList.contains('h-rpc') ? 'kind' : (td.querySelector('.meth') ? 'method' : '')})).
		filter(x => x.col && x.td.offsetParent !== null && x.td.scrollWidth > x.td.clientWidth).
		map(x => x.col + ': ' + x.td.textContent + ' (' + x.td.scrollWidth + ' > ' + x.td.clientWidth + ')'))`
	for _, width := range []int64{1360, 1120} {
		b.do(5*time.Second, chromedp.EmulateViewport(width, 800))
		b.wait(5*time.Second, `[...document.querySelectorAll('#rows td.h-rpc')].some(td => td.textContent === 'server stream' && td.offsetParent !== null)`)
		b.shot(fmt.Sprintf("traffic-kind-%d", width))
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](clipped))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got != "[]" {
			t.Errorf("at %d px the table cuts %s", width, got)
		}
	}
}
