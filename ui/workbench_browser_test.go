package ui_test

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/grpctap/grpctap/store"
	"github.com/grpctap/grpctap/ui"
)

// sizes are the two screen sizes every view of the workbench is shot at.
var sizes = []struct {
	name string
	w, h int64
}{{"1440", 1440, 900}, {"1024", 1024, 768}}

// shots saves a screenshot of the page as it is at each size, scrolled to
// the element of id focus when given.
func (b *browser) shots(name, focus string) {
	b.t.Helper()
	for _, s := range sizes {
		b.do(5*time.Second, chromedp.EmulateViewport(s.w, s.h))
		if focus != "" {
			b.eval(`document.getElementById(` + jsString(focus) + `)?.scrollIntoView({block: 'start'})`)
		}
		b.shot(name + "-" + s.name)
	}
	b.do(5*time.Second, chromedp.EmulateViewport(sizes[0].w, sizes[0].h))
}

// TestBrowserLiveBidiConversation: in the composer a bidi call is a
// conversation: open it, send a message and see the answer, send again,
// half-close; the call ends OK and is recorded as the composer's.
func TestBrowserLiveBidiConversation(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	b.do(15*time.Second, chromedp.EmulateViewport(1440, 900),
		chromedp.Navigate(e.base+"/#/composer?method="+url.QueryEscape("/grpctap.demo.v1.DemoService/Chat")))
	b.wait(10*time.Second, `!!document.getElementById('live-open')`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("live-open")))
	b.wait(5*time.Second, `document.getElementById('live-state')?.textContent === 'open' && !document.getElementById('live-send').disabled`)
	say := func(text string) {
		b.eval(`(() => { const t = document.getElementById('live-msg'); t.value = JSON.stringify({author: {name: 'ann', mood: 'MOOD_HAPPY'}, text: ` + jsString(text) + `}); })()`)
		b.do(5*time.Second, chromedp.Click(chromedp.ID("live-send")))
	}
	say("hello, stream")
	// The answer shows while the call is still open.
	b.wait(5*time.Second, `(() => { const r = [...document.querySelectorAll('#live-log .live-entry.response')]; return r.length === 1 && r[0].innerText.includes('ann said: hello, stream') && document.getElementById('live-state').textContent === 'open'; })()`)
	b.wait(5*time.Second, `document.getElementById('live-headers').innerText.includes('Headers')`)
	b.shots("composer-live-bidi-open", "response")
	say("and again")
	b.wait(5*time.Second, `(() => { const r = [...document.querySelectorAll('#live-log .live-entry.response')]; return r.length === 2 && r[1].innerText.includes('ann said: and again'); })()`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("live-close")))
	b.wait(5*time.Second, `document.getElementById('live-state').textContent === 'OK (0)' && !!document.querySelector('#live-recorded a[href^="#/call/"]') && document.getElementById('live-headers').innerText.includes('Trailers')`)
	b.shots("composer-live-bidi-done", "response")

	// Sent and answered in turn: request, answer, request, answer.
	calls := e.waitCalls(1)
	c, err := e.st.GetCall(context.Background(), calls[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var order string
	for _, m := range c.Messages {
		order += m.Direction[:3] + " "
	}
	if order != "req res req res " || c.RPC != store.RPCBidiStreaming || c.Status.Name != "OK" {
		t.Errorf("recorded %s %s %v", order, c.RPC, c.Status)
	}
	if got := c.RequestHeaders[ui.OriginHeader]; len(got) != 1 || got[0] != ui.OriginComposer {
		t.Errorf("origin %v", got)
	}

	// A server stream: its one message goes with the half-close, ticks
	// come in as they are sent, and Cancel ends it.
	b.eval(`location.hash = '#/composer?method=' + encodeURIComponent('/grpctap.demo.v1.DemoService/Countdown')`)
	b.wait(10*time.Second, `document.getElementById('method-title')?.textContent.endsWith('/Countdown') && !!document.getElementById('live-open')`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("live-open")))
	b.wait(5*time.Second, `document.getElementById('live-state')?.textContent === 'open' && document.getElementById('live-send').textContent === 'Send and half-close'`)
	b.eval(`document.getElementById('live-msg').value = '{"count": 100, "interval": "0.05s"}'`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("live-send")))
	b.wait(5*time.Second, `document.querySelectorAll('#live-log .live-entry.response').length >= 2 && document.getElementById('live-state').textContent === 'open'`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("live-cancel")))
	b.wait(5*time.Second, `document.getElementById('live-state').textContent === 'CANCELLED (1)' && !!document.querySelector('#live-recorded a')`)
	b.shots("composer-live-server-stream-cancelled", "response")
	if n := len(e.waitCalls(2)); n != 2 {
		t.Errorf("%d calls recorded", n)
	}
}

// TestBrowserSaveToCollectionThenRun: captured calls saved from their
// detail into a collection run as tests in the inspector: they pass
// against their backend, and against a changed one the failing request
// shows its field differences.
func TestBrowserSaveToCollectionThenRun(t *testing.T) {
	e := newEnv(t, envOpts{})
	sampleTraffic(t, e) // 1: Echo warm-up, 2: a failing Echo, 3: Countdown, 4: Sum
	e.waitCalls(4)
	b := newBrowser(t)
	save := func(id, collection string, fresh bool) {
		b.eval(`location.hash = '#/call/` + id + `'`)
		b.wait(10*time.Second, `!!document.getElementById('save-to-collection') && !document.getElementById('save-to-collection').disabled && document.querySelector('.detail-head h2')?.textContent !== ''`)
		b.do(5*time.Second, chromedp.Click(chromedp.ID("save-to-collection")))
		b.wait(5*time.Second, `!!document.getElementById('stc-ok')`)
		if fresh {
			// The answer's time field is offered to ignore.
			b.wait(2*time.Second, `document.getElementById('stc-ignore').value === 'receivedAt'`)
			b.eval(`(() => { document.getElementById('stc-collection').value = ''; document.getElementById('stc-collection').dispatchEvent(new Event('change')); document.getElementById('stc-new').value = ` + jsString(collection) + `; })()`)
			// Assertions: the status, and a field of the answer.
			b.do(5*time.Second, chromedp.Click(chromedp.ID("stc-add-assert")))
			b.eval(`(() => { document.getElementById('stc-assert-status').checked = true; const r = document.querySelector('.assert-row');
				r.querySelector('.assert-path').value = 'author.name'; r.querySelector('.assert-value').value = '"ann"'; })()`)
			b.shots("save-to-collection-dialog", "")
		} else {
			b.eval(`document.getElementById('stc-collection').value = ` + jsString(collection))
		}
		b.do(5*time.Second, chromedp.Click(chromedp.ID("stc-ok")))
		b.wait(5*time.Second, `!document.getElementById('save-call-dialog') && document.getElementById('toast').textContent.startsWith('Saved to')`)
	}
	b.do(15*time.Second, chromedp.EmulateViewport(1440, 900), chromedp.Navigate(e.base+"/#/traffic"))
	b.wait(10*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 4`)
	save("1", "Smoke from traffic", true)
	save("4", "Smoke from traffic", false)

	var list struct{ Collections []ui.Collection }
	e.do("GET", "/api/collections", nil, &list)
	if len(list.Collections) != 1 || len(list.Collections[0].Requests) != 2 || list.Collections[0].Requests[0].FromCall != 1 ||
		len(list.Collections[0].Requests[0].IgnoreFields) != 1 || len(list.Collections[0].Requests[0].Assertions) != 2 || list.Collections[0].Requests[1].Name != "Sum #4" {
		t.Fatalf("saved %+v", list.Collections)
	}

	// Run it from the composer's collections.
	b.eval(`location.hash = '#/composer'`)
	b.wait(10*time.Second, `!!document.querySelector('[data-collection="Smoke from traffic"] .run-collection')`)
	b.do(5*time.Second, chromedp.Click(chromedp.CSS(`[data-collection="Smoke from traffic"] .run-collection`)))
	b.wait(5*time.Second, `!!document.getElementById('run-go')`)
	b.eval(`document.getElementById('run-ignore-headers').value = 'x-echo-handled-at'`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("run-go")))
	b.wait(10*time.Second, `(() => { const s = document.getElementById('run-summary'); return s && s.textContent.includes('2 passed, 0 failed, 0 errors of 2 requests') && document.querySelectorAll('.run-result[data-verdict="match"]').length === 2; })()`)
	b.shots("collection-run-passed", "")

	// Against the changed demo backend the Echo fails, field by field.
	b.eval(`document.getElementById('run-target').value = ` + jsString(startChangedDemo(t)))
	b.do(5*time.Second, chromedp.Click(chromedp.ID("run-go")))
	b.wait(10*time.Second, `(() => { const s = document.getElementById('run-summary'); if (!s || !s.textContent.includes('0 passed, 2 failed')) return false;
		const echo = document.querySelector('.run-result[data-verdict="mismatch"] .run-diff');
		return !!echo && echo.innerText.includes('author.name') && echo.innerText.includes('"ANN"') && echo.innerText.includes('assertion'); })()`)
	b.shots("collection-run-failed", "run-summary")
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string { return strconv.Quote(s) }
