package ui_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/grpctap/grpctap/demo/demopb"
)

// evalAs evaluates a JavaScript expression in the page and returns its
// value.
func evalAs[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// rect is an element's box on the screen, as getBoundingClientRect says.
type rect struct{ Left, Top, Right, Bottom, Width, Height float64 }

func (b *browser) rect(sel string) rect {
	b.t.Helper()
	return evalAs[rect](b, fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return {};
		const r = el.getBoundingClientRect(); return {Left: r.left, Top: r.top, Right: r.right, Bottom: r.bottom, Width: r.width, Height: r.height}; })()`, sel))
}

// visibleRows counts the traffic rows a user sees whole: below the
// table's header, above the end of the list's pane and of the window.
const visibleRows = `(() => { const s = document.getElementById('list-scroll'); const head = document.querySelector('#calls thead').getBoundingClientRect();
	const bottom = Math.min(s.getBoundingClientRect().bottom, innerHeight);
	return [...document.querySelectorAll('#rows tr[data-id]')].filter(r => { const b = r.getBoundingClientRect(); return b.top >= head.bottom - 0.5 && b.bottom <= bottom + 0.5; }).length; })()`

// selection says which row is selected and which has the focus:
// "selected-id/focused-id" ("-" for none).
const selection = `(() => { const s = document.querySelectorAll('#rows tr.sel'); const f = document.activeElement;
	return (s.length === 1 ? s[0].dataset.id : s.length ? 'several' : '-') + '/' + (f && f.matches('#rows tr') ? f.dataset.id : '-'); })()`

// clippedCells lists the time and method cells whose text the list cuts
// short: "text (scroll > client)".
const clippedCells = `JSON.stringify([...document.querySelectorAll('#rows tr[data-id]')].flatMap(r => [r.children[1], r.children[2]]).
	filter(td => td.offsetParent !== null && td.scrollWidth > td.clientWidth).map(td => td.textContent + ' (' + td.scrollWidth + ' > ' + td.clientWidth + ')'))`

// makeCalls makes n Echo calls through the proxy, "call 1" … "call n".
func makeCalls(t *testing.T, e *env, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		echo(t, e, fmt.Sprintf("call %d", i))
	}
}

// TestBrowserWorkbench: the traffic list shows at least 30 calls on a
// 1440×900 screen; the keyboard moves the selection (j/k, ↑/↓), Enter opens
// the call beside the list, the detail follows the selection, Esc closes
// it and leaves the row selected; at 1024×768 the detail is below the
// list. Every view reloads to itself.
func TestBrowserWorkbench(t *testing.T) {
	e := newEnv(t, envOpts{})
	makeCalls(t, e, 45)
	e.waitCalls(45)
	b := newBrowser(t)
	console := b.watchConsole()
	b.do(15*time.Second, chromedp.EmulateViewport(1440, 900), chromedp.Navigate(e.base+"/#/traffic"))
	b.wait(10*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 45`)

	n := evalAs[int](b, visibleRows)
	t.Logf("1440×900, list alone: %d rows visible", n)
	if n < 30 {
		t.Errorf("1440×900: %d rows visible, want at least 30", n)
	}
	b.shot("workbench-list-1440x900")

	// j selects the newest call, j again the next, k goes back; the
	// arrows do the same. The selected row has the focus.
	b.do(5*time.Second, chromedp.KeyEvent("j"))
	b.wait(5*time.Second, selection+` === '45/45'`)
	b.do(5*time.Second, chromedp.KeyEvent("j"), chromedp.KeyEvent("j"))
	b.wait(5*time.Second, selection+` === '43/43'`)
	b.do(5*time.Second, chromedp.KeyEvent("k"))
	b.wait(5*time.Second, selection+` === '44/44'`)
	b.do(5*time.Second, chromedp.KeyEvent(kb.ArrowDown))
	b.wait(5*time.Second, selection+` === '43/43'`)
	b.do(5*time.Second, chromedp.KeyEvent(kb.ArrowUp), chromedp.KeyEvent(kb.ArrowUp))
	b.wait(5*time.Second, selection+` === '45/45'`)
	b.do(5*time.Second, chromedp.KeyEvent(kb.ArrowDown))
	b.wait(5*time.Second, selection+` === '44/44'`)

	// Enter opens the selected call beside the list.
	b.do(5*time.Second, chromedp.KeyEvent("\r"))
	b.wait(5*time.Second, `location.hash === '#/call/44' && !!document.querySelector('.detail[data-id="44"]') && document.querySelector('.detail').innerText.includes('"call 44"')`)
	list, detail := b.rect(".list-pane"), b.rect("#detail-pane")
	t.Logf("1440×900 split: list %.0f–%.0f px, detail %.0f–%.0f px wide, both from y=%.0f", list.Left, list.Right, detail.Left, detail.Right, detail.Top)
	if detail.Left < list.Right || detail.Right > 1440 || detail.Width < 600 || list.Width < 500 || detail.Top != list.Top {
		t.Errorf("1440×900: want the list and the detail side by side, got list %+v, detail %+v", list, detail)
	}
	if n := evalAs[int](b, visibleRows); n < 30 {
		t.Errorf("1440×900 with the detail open: %d rows visible, want at least 30", n)
	} else {
		t.Logf("1440×900, list beside the detail: %d rows visible", n)
	}
	b.wait(5*time.Second, selection+` === '44/44'`)
	if got := evalAs[string](b, clippedCells); got != "[]" {
		t.Errorf("1440×900 split: the list cuts %s", got)
	}
	b.shot("workbench-split-1440x900")

	b.eval(`document.documentElement.dataset.theme = 'dark'`)
	b.shot("workbench-split-dark-1440x900")
	b.eval(`localStorage.removeItem('grpctap-theme'); document.documentElement.dataset.theme = 'light'`)

	// With focus in the detail, the arrows scroll it and leave the
	// selection alone.
	b.eval(`document.querySelector('.detail .tabs button').focus()`)
	b.do(5*time.Second, chromedp.KeyEvent(kb.ArrowDown))
	b.wait(5*time.Second, `location.hash === '#/call/44' && document.querySelector('#rows tr.sel').dataset.id === '44'`)
	b.eval(`document.querySelector('#rows tr.sel').focus()`)

	// With a call open, moving the selection shows the next call.
	b.do(5*time.Second, chromedp.KeyEvent("j"))
	b.wait(5*time.Second, `location.hash === '#/call/43' && !!document.querySelector('.detail[data-id="43"]') && document.querySelector('.detail').innerText.includes('"call 43"')`)
	b.do(5*time.Second, chromedp.KeyEvent(kb.ArrowUp))
	b.wait(5*time.Second, `location.hash === '#/call/44' && !!document.querySelector('.detail[data-id="44"]')`)

	// Esc closes the detail; the row stays selected, and Enter opens it again.
	b.do(5*time.Second, chromedp.KeyEvent("\x1b"))
	b.wait(5*time.Second, `location.hash === '#/traffic' && document.getElementById('detail-pane').getBoundingClientRect().width === 0`)
	b.wait(5*time.Second, selection+` === '44/44'`)
	if l := b.rect(".list-pane"); l.Width < 1300 {
		t.Errorf("the list takes %.0f px once the detail is closed, want the whole width", l.Width)
	}
	b.do(5*time.Second, chromedp.KeyEvent("\r"))
	b.wait(5*time.Second, `location.hash === '#/call/44' && !!document.querySelector('.detail[data-id="44"]')`)

	// A click on a row opens it too.
	b.do(5*time.Second, chromedp.Click(chromedp.CSS(`#rows tr[data-id="40"]`)))
	b.wait(5*time.Second, `location.hash === '#/call/40' && !!document.querySelector('.detail[data-id="40"]') && document.querySelector('.detail').innerText.includes('"call 40"')`)
	b.wait(5*time.Second, `document.querySelector('#rows tr.sel').dataset.id === '40'`)

	// Stacked on a laptop: the detail below the list, both the full width.
	b.do(5*time.Second, chromedp.EmulateViewport(1024, 768))
	b.wait(5*time.Second, `document.getElementById('detail-pane').getBoundingClientRect().top > document.querySelector('.list-pane').getBoundingClientRect().bottom`)
	list, detail = b.rect(".list-pane"), b.rect("#detail-pane")
	t.Logf("1024×768 stacked: list y=%.0f–%.0f, detail y=%.0f–%.0f, %.0f px wide", list.Top, list.Bottom, detail.Top, detail.Bottom, detail.Width)
	if detail.Width < 980 || list.Width < 980 || detail.Bottom > 768.5 || detail.Height < 300 {
		t.Errorf("1024×768: want the detail below the list, both full width, got list %+v, detail %+v", list, detail)
	}
	if n := evalAs[int](b, visibleRows); n < 8 {
		t.Errorf("1024×768 stacked: %d rows visible above the detail, want at least 8", n)
	} else {
		t.Logf("1024×768, list above the detail: %d rows visible", n)
	}
	b.do(5*time.Second, chromedp.KeyEvent("j"))
	b.wait(5*time.Second, `location.hash === '#/call/39' && !!document.querySelector('.detail[data-id="39"]')`)
	if got := evalAs[string](b, clippedCells); got != "[]" {
		t.Errorf("1024×768 stacked: the list cuts %s", got)
	}
	b.shot("workbench-stacked-1024x768")
	b.do(5*time.Second, chromedp.KeyEvent("\x1b"))
	b.wait(5*time.Second, `location.hash === '#/traffic' && document.getElementById('detail-pane').getBoundingClientRect().height === 0`)
	b.shot("workbench-list-1024x768")
	b.do(5*time.Second, chromedp.EmulateViewport(1440, 900))

	// Every view reloads to itself: a call with the list's filter…
	b.do(15*time.Second, chromedp.Navigate(e.base+"/#/call/12?method=*Echo&q=call"))
	b.wait(10*time.Second, `!!document.querySelector('.detail[data-id="12"]') && document.querySelector('.detail').innerText.includes('"call 12"') &&
		document.querySelector('input.method').value === '*Echo' && document.getElementById('search').value === 'call' &&
		document.querySelector('#rows tr.sel')?.dataset.id === '12'`)
	b.do(15*time.Second, chromedp.Reload())
	b.wait(10*time.Second, `location.hash === '#/call/12?method=*Echo&q=call' && !!document.querySelector('.detail[data-id="12"]') && document.querySelector('input.method').value === '*Echo'`)
	// …a filter typed on the page, with a call open…
	b.eval(`(() => { const s = document.getElementById('search'); s.value = 'call 1'; s.dispatchEvent(new Event('input')); })()`)
	b.wait(5*time.Second, `location.hash === '#/call/12?method=*Echo&q=call+1' && document.querySelectorAll('#rows tr[data-id]').length === 11`)
	b.do(15*time.Second, chromedp.Reload())
	b.wait(10*time.Second, `!!document.querySelector('.detail[data-id="12"]') && document.getElementById('search').value === 'call 1' && document.querySelectorAll('#rows tr[data-id]').length === 11`)
	// A new call at the top of the list leaves the selection on its call.
	echo(t, e, "call 100")
	b.wait(10*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 12 && document.querySelector('#rows tr[data-id]').dataset.id === '46'`)
	b.wait(5*time.Second, `document.querySelector('#rows tr.sel')?.dataset.id === '12' && location.hash.startsWith('#/call/12?')`)
	// The close button keeps the filters.
	b.eval(`document.querySelector('.detail-head .close').click()`)
	b.wait(5*time.Second, `location.hash === '#/traffic?method=*Echo&q=call+1' && document.getElementById('detail-pane').getBoundingClientRect().width === 0 && document.querySelectorAll('#rows tr[data-id]').length === 12`)
	// …the overview and the composer.
	for _, tc := range []struct{ hash, ready string }{
		{"#/overview?since=1h", `document.querySelector('button[data-since="1h"]')?.getAttribute('aria-pressed') === 'true' && document.getElementById('nav-overview').classList.contains('active')`},
		{"#/composer?method=%2Fgrpctap.demo.v1.DemoService%2FEcho", `document.getElementById('method-title')?.textContent.endsWith('/Echo') && !!document.querySelector('.req-json')`},
		{"#/traffic?status=OK", `document.querySelector('select[aria-label=Status]')?.value === 'OK' && document.querySelectorAll('#rows tr[data-id]').length === 46 && document.getElementById('detail-pane').getBoundingClientRect().width === 0`},
	} {
		b.do(15*time.Second, chromedp.Navigate(e.base+"/"+tc.hash))
		b.wait(10*time.Second, tc.ready)
		b.do(15*time.Second, chromedp.Reload())
		b.wait(10*time.Second, tc.ready+` && location.hash === '`+tc.hash+`'`)
	}
	for _, m := range console() {
		t.Errorf("console: %s", m)
	}
}

// TestBrowserCompactTree: a unary call's request and response sit side by
// side, messages come before the headers, which are folded; a message of
// about 100 bytes takes a few lines; long lists and strings are folded
// until asked for.
func TestBrowserCompactTree(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.client.Echo(ctx, &demopb.EchoRequest{Message: "a compact tree for me, please", Author: &demopb.Author{Name: "ann", Mood: demopb.Mood_MOOD_HAPPY},
		Tags: []string{"red", "green", "blue"}, Labels: map[string]string{"team": "core", "env": "dev"}}); err != nil {
		t.Fatal(err)
	}
	tags := make([]string, 30)
	for i := range tags {
		tags[i] = fmt.Sprintf("tag-%02d", i)
	}
	long := strings.Repeat("long text ", 50)
	if _, err := e.client.Echo(ctx, &demopb.EchoRequest{Message: long, Tags: tags}); err != nil {
		t.Fatal(err)
	}
	calls := e.waitCalls(2)
	small := calls[1]
	t.Logf("the small call's response is %d bytes", small.ResponseBytes)
	if small.ResponseBytes < 90 || small.ResponseBytes > 110 {
		t.Fatalf("the small response is %d bytes, want about 100", small.ResponseBytes)
	}
	b := newBrowser(t)
	b.do(15*time.Second, chromedp.EmulateViewport(1440, 900), chromedp.Navigate(e.base+"/#/call/1"))
	b.wait(10*time.Second, `!!document.querySelector('.detail[data-id="1"] .jt')`)

	// Request and response side by side, at the same height.
	req, resp := b.rect(".pair > details.msg:nth-child(1)"), b.rect(".pair > details.msg:nth-child(2)")
	if resp.Left < req.Right || resp.Top != req.Top || req.Width < 250 {
		t.Errorf("request %+v and response %+v are not side by side", req, resp)
	}
	// Messages first (the first one starts near the top of the screen): the
	// headers and the timeline come after them, folded.
	t.Logf("1440×900: the messages start at y=%.0f", req.Top)
	if req.Top > 200 {
		t.Errorf("the first message starts at y=%.0f, want it near the top (≤ 200)", req.Top)
	}
	b.wait(5*time.Second, `(() => { const m = document.querySelector('.pair').getBoundingClientRect();
		const s = [...document.querySelectorAll('.detail details.section')];
		return s.length === 5 && s.every(d => !d.open && d.getBoundingClientRect().top >= m.bottom) && s.map(d => d.dataset.section).join() === 'call,request-headers,response-headers,trailers,timeline'; })()`)
	respTree := `.pair > details.msg:nth-child(2) .jt`
	h := b.rect(respTree)
	lines := evalAs[string](b, `document.querySelector('`+respTree+`').innerText`)
	nLines := len(strings.Split(strings.TrimSpace(lines), "\n"))
	t.Logf("a %d-byte response takes %d lines, %.0f px:\n%s", small.ResponseBytes, nLines, h.Height, lines)
	if nLines > 6 || h.Height > 6*18+1 {
		t.Errorf("the %d-byte response takes %d lines, %.0f px; want at most 6 lines", small.ResponseBytes, nLines, h.Height)
	}
	for _, want := range []string{`"message": "a compact tree for me, please"`, `"author": {"name": "ann", "mood": "MOOD_HAPPY"}`, `"tags": ["red", "green", "blue"]`} {
		if !strings.Contains(lines, want) {
			t.Errorf("the response's tree has no line %s", want)
		}
	}
	b.shot("detail-compact-1440x900")
	// The headers open on a click, and stay open for the next call.
	b.eval(`document.querySelector('details.section[data-section=request-headers] > summary').click()`)
	b.wait(5*time.Second, `document.querySelector('details.section[data-section=request-headers]').innerText.includes('content-type')`)

	// A long list shows as one folded line, a long string by its start.
	b.eval(`location.hash = '#/call/2'`)
	b.wait(10*time.Second, `!!document.querySelector('.detail[data-id="2"] .jt')`)
	b.wait(5*time.Second, `document.querySelector('details.section[data-section=request-headers]').open`)
	reqTree := `document.querySelector('.pair > details.msg:nth-child(1) .jt')`
	b.wait(5*time.Second, reqTree+`.innerText.includes('"tags": [30 items]') && !`+reqTree+`.innerText.includes('tag-00') && `+reqTree+`.innerText.includes('+340 chars')`)
	if n := len(strings.Split(strings.TrimSpace(evalAs[string](b, reqTree+`.innerText`)), "\n")); n > 3 {
		t.Errorf("a request of a long string and a 30-item list takes %d lines, want 2 or 3", n)
	}
	b.eval(reqTree + `.querySelector('details > summary').click()`)
	b.wait(5*time.Second, reqTree+`.innerText.includes('"tag-29"')`)
	b.eval(reqTree + `.querySelector('.folded button').click()`)
	b.wait(5*time.Second, reqTree+`.innerText.includes('long text long text "')`)
	b.do(5*time.Second, chromedp.EmulateViewport(1024, 768))
	b.shot("detail-compact-1024x768")
}

// TestBrowserReplaySideBySide: a replay shows the recorded answer and the
// replayed one next to each other, the changed field (Echo's receivedAt)
// highlighted on both sides, the others not.
func TestBrowserReplaySideBySide(t *testing.T) {
	e := newEnv(t, envOpts{})
	echo(t, e, "replay me")
	e.waitCalls(1)
	b := newBrowser(t)
	for _, size := range []struct{ w, h int64 }{{1440, 900}, {1024, 768}} {
		b.do(15*time.Second, chromedp.EmulateViewport(size.w, size.h), chromedp.Navigate(e.base+"/#/call/1"))
		b.wait(10*time.Second, `!!document.querySelector('.detail[data-id="1"] .jt')`)
		b.eval(`[...document.querySelectorAll('.detail-head button')].find(x => x.textContent === 'Replay').click()`)
		b.wait(10*time.Second, `!!document.getElementById('replay-sides') && document.getElementById('replay').textContent.includes('mismatch')`)
		rec, got := b.rect(`#replay-sides .rs-msg[data-side=recorded]`), b.rect(`#replay-sides .rs-msg[data-side=replayed]`)
		if got.Left < rec.Right || got.Top != rec.Top || rec.Width < 200 {
			t.Errorf("%dx%d: recorded %+v and replayed %+v are not side by side", size.w, size.h, rec, got)
		}
		// The changed lines, on each side: receivedAt and nothing else.
		changed := evalAs[[]string](b, `[...document.querySelectorAll('#replay-sides .rs-msg')].map(m => [...m.querySelectorAll('.chg')].map(c => c.innerText).join(' | '))`)
		if len(changed) != 2 {
			t.Fatalf("%d response cells, want 2", len(changed))
		}
		for i, c := range changed {
			if !strings.HasPrefix(c, `"receivedAt": "`) || strings.Contains(c, "|") {
				t.Errorf("%dx%d side %d: highlighted %q, want the receivedAt line alone", size.w, size.h, i, c)
			}
		}
		if changed[0] == changed[1] {
			t.Errorf("both sides show %q", changed[0])
		}
		for _, side := range []string{"recorded", "replayed"} {
			txt := evalAs[string](b, fmt.Sprintf(`document.querySelector('#replay-sides .rs-msg[data-side=%s]').innerText`, side))
			// The fields in the message's order, as in the call's view.
			if i, j := strings.Index(txt, `"message": "replay me"`), strings.Index(txt, `"author": {"name": "ann"`); i < 0 || j < i {
				t.Errorf("side %s does not show the message and its author in order: %s", side, txt)
			}
		}
		b.eval(`document.getElementById('replay').scrollIntoView()`)
		b.shot(fmt.Sprintf("replay-side-by-side-%dx%d", size.w, size.h))
	}
}
