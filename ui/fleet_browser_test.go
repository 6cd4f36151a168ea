package ui_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/grpctap/grpctap/store"
)

// TestBrowserFleetProxyColumn: a capture recorded by two proxies shows
// which one recorded each call, in a column and the call's detail, and
// the traffic filters by proxy (the filter kept in the URL).
func TestBrowserFleetProxyColumn(t *testing.T) {
	e := newEnv(t, envOpts{})
	sampleTraffic(t, e)
	e.waitCalls(4)
	// A second proxy records into the same capture.
	ctx := context.Background()
	other, err := store.Open(ctx, e.st.Path(), store.Options{Name: "edge-b"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	k := other.NewKey()
	now := time.Now()
	if err := other.WriteBatch(ctx, []store.Event{{Start: &store.CallStart{ID: k, Method: "/shop.v1.Cart/Add", Protocol: "grpc", Backend: "10.0.0.7:9000", Time: now}},
		{End: &store.CallEnd{CallID: k, Time: now.Add(time.Millisecond)}}}); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	b.do(15*time.Second, chromedp.EmulateViewport(1440, 900), chromedp.Navigate(e.base+"/#/traffic"))
	b.wait(10*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 5`)
	b.wait(5*time.Second, `[...document.querySelectorAll('#rows td.h-proxy')].filter(td => td.textContent === 'edge-b').length === 1 &&
		document.querySelectorAll('#rows td.h-proxy').length === 5 && document.querySelector('th.h-proxy').offsetParent !== null`)
	b.shot("fleet-proxy-column-1440x900")
	// Filter by the other proxy: only its call stays, and the URL says so.
	b.eval(`(() => { const s = document.querySelector('select[aria-label=Proxy]'); s.value = 'edge-b'; s.dispatchEvent(new Event('change')); })()`)
	b.wait(10*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 1 && location.hash.includes('proxy=edge-b')`)
	b.do(15*time.Second, chromedp.Reload())
	b.wait(10*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 1 && document.querySelector('select[aria-label=Proxy]').value === 'edge-b'`)
	// The call's detail says who recorded it.
	b.eval(`document.querySelector('#rows tr[data-id]').click()`)
	b.wait(10*time.Second, `[...document.querySelectorAll('#detail-pane .k')].some(k => k.textContent === 'Recorded by' && k.nextSibling.textContent === 'edge-b')`)
}
