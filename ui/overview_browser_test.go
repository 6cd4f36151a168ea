package ui_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/grpctap/grpctap/store"
)

// TestBrowserOverview: the overview counts the calls of each method in the
// chosen window as they were made, sorts by a clicked header and keeps the
// sort and the window in the URL, draws a bar or a point per time bucket,
// follows new calls, and leads to the traffic of a method; with no console
// error and no CSP violation on the way.
func TestBrowserOverview(t *testing.T) {
	e := newEnv(t, envOpts{})
	// Through the proxy: Echo twice, once failing; Countdown and Sum once.
	sampleTraffic(t, e)
	e.waitCalls(4)
	// Half an hour ago: two more Echo calls, one failing, and two of Countdown.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old := time.Now().Add(-30 * time.Minute)
	imported := func(method string, code int) store.CallWithMessages {
		end := old.Add(3 * time.Millisecond)
		return store.CallWithMessages{Call: store.Call{Method: method, Protocol: "grpc", Start: old, End: &end, Status: &store.Status{Code: code}}}
	}
	if _, err := e.st.Import(ctx, []store.CallWithMessages{
		imported("/grpctap.demo.v1.DemoService/Echo", 0),
		imported("/grpctap.demo.v1.DemoService/Echo", 13),
		imported("/grpctap.demo.v1.DemoService/Countdown", 0),
		imported("/grpctap.demo.v1.DemoService/Countdown", 0),
	}); err != nil {
		t.Fatal(err)
	}

	b := newBrowser(t)
	console := b.watchConsole()
	b.do(15*time.Second, chromedp.EmulateViewport(1440, 900), chromedp.Navigate(e.base+"/#/overview"))

	// rows is the table as a user reads it: method, calls, errors per row.
	const rows = `[...document.querySelectorAll('#ov-rows tr[data-method]')].map(r => r.querySelector('.meth').textContent + ' ' +
		r.querySelector('[data-col=calls]').textContent + ' ' + r.querySelector('[data-col=errors]').textContent).join(', ')`
	// The default window of a live proxy is the last 15 minutes: the
	// imported calls are not in it.
	b.wait(10*time.Second, rows+` === 'Echo 2 1, Countdown 1 0, Sum 1 0'`)
	b.wait(5*time.Second, `location.hash === '#/overview?since=15m' && document.getElementById('ov-window').textContent.startsWith('Last 15 min:') && document.getElementById('ov-window').textContent.endsWith('60 buckets of 15 s')`)
	b.wait(5*time.Second, `document.querySelector('#ov-rows tr[data-method$="/Echo"] [data-col=error_rate]').textContent === '50.0 %'`)
	// Three charts with titles, each with a column per bucket: the calls
	// and errors as bars, latency as points where calls finished.
	b.wait(5*time.Second, `(() => { const c = [...document.querySelectorAll('#ov-charts svg')];
		return c.length === 3 && c.every(s => s.querySelectorAll('g.bucket').length === 60 && s.querySelector('title').textContent.includes('60 buckets of 15 s'));
	})()`)
	b.wait(5*time.Second, `document.querySelectorAll('svg.calls rect.bar').length === 60 && document.querySelectorAll('svg.errors rect.bar').length === 60`)
	// Hovering a bucket tells its calls; together they are the four calls.
	sumOf := func(chart, word string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('svg.%s g.bucket > title')].reduce((n, t) => n + +(t.textContent.match(/: (\d+) %s/) || [0, 0])[1], 0)`, chart, word)
	}
	b.wait(5*time.Second, sumOf("calls", "call")+` === 4 && `+sumOf("errors", "error")+` === 1`)
	b.wait(5*time.Second, `(() => { const s = document.querySelector('svg.lines');
		const filled = [...s.querySelectorAll('g.bucket > title')].filter(t => !t.textContent.endsWith('no finished calls')).length;
		return filled >= 1 && ['p50', 'p95', 'p99'].every(p => s.querySelectorAll('circle.pt.' + p).length === filled); })()`)
	b.shot("overview")

	// Sorting: a click on Calls sorts ascending (ties by method), and the
	// URL keeps it through a reload; a second click on Method sorts it
	// descending.
	b.eval(`document.querySelector('button[data-sort=calls]').click()`)
	b.wait(5*time.Second, rows+` === 'Countdown 1 0, Sum 1 0, Echo 2 1' && location.hash.includes('sort=calls') && location.hash.includes('order=asc')`)
	b.do(15*time.Second, chromedp.Reload())
	b.wait(10*time.Second, rows+` === 'Countdown 1 0, Sum 1 0, Echo 2 1' && document.querySelector('button[data-sort=calls]').parentElement.getAttribute('aria-sort') === 'ascending'`)
	b.eval(`document.querySelector('button[data-sort=method]').click()`)
	b.wait(5*time.Second, rows+` === 'Countdown 1 0, Echo 2 1, Sum 1 0'`)
	b.eval(`document.querySelector('button[data-sort=method]').click()`)
	b.wait(5*time.Second, rows+` === 'Sum 1 0, Echo 2 1, Countdown 1 0' && location.hash.includes('sort=method') && location.hash.includes('order=desc')`)

	// The last hour holds the imported calls too.
	b.eval(`document.querySelector('button[data-since="1h"]').click()`)
	b.wait(10*time.Second, rows+` === 'Sum 1 0, Echo 4 2, Countdown 3 0' && location.hash.includes('since=1h') && document.getElementById('ov-window').textContent.endsWith('60 buckets of 1 min')`)
	b.wait(5*time.Second, `[...document.querySelectorAll('#ov-totals .tile')].slice(0, 2).map(t => t.innerText.replace(/\s+/g, ' ')).join(', ').toLowerCase() === 'calls 8, errors 2' && document.querySelector('button[data-since="1h"]').getAttribute('aria-pressed') === 'true'`)
	b.wait(5*time.Second, sumOf("calls", "call")+` === 8 && `+sumOf("errors", "error")+` === 2`)
	b.shot("overview-1h")

	// A method glob narrows the table, and the URL keeps it.
	b.eval(`(() => { const m = document.getElementById('ov-method'); m.value = '*Echo'; m.dispatchEvent(new Event('input')); })()`)
	b.wait(10*time.Second, rows+` === 'Echo 4 2' && location.hash.includes('method=*Echo')`)

	// Calls made while the page is open show up without a reload.
	echo(t, e, "three")
	b.wait(10*time.Second, rows+` === 'Echo 5 2'`)

	// A method opens the traffic list filtered to it.
	b.eval(`document.querySelector('#ov-rows tr[data-method$="/Echo"] a').click()`)
	b.wait(10*time.Second, `location.hash.startsWith('#/traffic?') && document.querySelector('input.method').value === '/grpctap.demo.v1.DemoService/Echo' &&
		document.querySelectorAll('#rows tr[data-id]').length === 5 && [...document.querySelectorAll('#rows tr[data-id]')].every(r => r.textContent.includes('Echo'))`)
	// The navigation comes back to the window and filter last chosen.
	b.eval(`document.getElementById('nav-overview').click()`)
	b.wait(10*time.Second, rows+` === 'Echo 5 2' && location.hash.includes('since=1h') && location.hash.includes('method=*Echo')`)

	// Dark, and a laptop's screen.
	b.eval(`document.getElementById('ov-method').value = ''; document.getElementById('ov-method').dispatchEvent(new Event('input'))`)
	b.wait(10*time.Second, `document.querySelectorAll('#ov-rows tr[data-method]').length === 3`)
	b.eval(`document.documentElement.dataset.theme = 'dark'`)
	b.shot("overview-dark")
	b.eval(`localStorage.removeItem('grpctap-theme'); document.documentElement.dataset.theme = 'light'`)
	b.do(5*time.Second, chromedp.EmulateViewport(1024, 768))
	b.shot("overview-1024")
	b.do(5*time.Second, chromedp.ResetViewport())

	for _, m := range console() {
		t.Errorf("console: %s", m)
	}
}

// watchConsole collects, from now on, the page's console errors, uncaught
// exceptions and Content-Security-Policy violations; the func it returns
// lists them.
func (b *browser) watchConsole() func() []string {
	b.t.Helper()
	ctx, cancel := context.WithCancel(b.ctx)
	var mu sync.Mutex
	var got []string
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				got = append(got, m.String())
				mu.Unlock()
			}
		}
	}()
	b.t.Cleanup(func() { cancel(); <-done })
	// The page reports a violation as an event too, whatever the console
	// says of it.
	b.do(5*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
			Source: `window.__csp = []; document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`,
		})
		return err
	}))
	return func() []string {
		b.t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		csp, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__csp || ['no violation listener']`))
		if err != nil {
			b.t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		out := append([]string(nil), got...)
		for _, v := range csp {
			out = append(out, "CSP violation: "+strings.TrimSpace(v))
		}
		return out
	}
}
