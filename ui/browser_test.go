package ui_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/ui"
)

// The browser tests drive the page in headless Chromium (Debian's
// "chromium" package) against a real proxy, backend and capture, and save
// a screenshot of each view under artifactsDir (run with -v to see where).

func chromiumPath(t *testing.T) string {
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found; install it: apt-get update && apt-get install -y chromium")
	}
	t.Skip("chromium not found; install it to run the browser tests: apt-get update && apt-get install -y chromium")
	return ""
}

// artifactsDir is $GRPCTAP_ARTIFACTS/ui, or test-artifacts/ui at the root
// of the repository (git-ignored).
func artifactsDir(t *testing.T) string {
	dir := filepath.Join("..", "test-artifacts", "ui")
	if d := os.Getenv("GRPCTAP_ARTIFACTS"); d != "" {
		dir = filepath.Join(d, "ui")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		t.Fatal(err)
	}
	return abs
}

type browser struct {
	t   *testing.T
	ctx context.Context
	dir string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1360, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx, dir: artifactsDir(t)}
	t.Logf("screenshots: %s", b.dir)
	return b
}

// do runs steps with a time limit.
func (b *browser) do(limit time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, limit)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failure-" + b.t.Name())
		b.t.Fatal(err)
	}
}

// wait waits until a JavaScript expression is truthy.
func (b *browser) wait(limit time.Duration, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, limit+time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(limit))); err != nil {
		b.shot("failure-" + strings.ReplaceAll(b.t.Name(), "/", "_"))
		b.t.Fatalf("waiting for %s: %v", expr, err)
	}
}

func (b *browser) eval(expr string) {
	b.t.Helper()
	b.do(5*time.Second, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[chromedp.Void](expr)(ctx, t)
		return err
	}))
}

func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("save screenshot: %v", err)
	}
}

// setEditor replaces the text of the i-th request editor as typing would.
func (b *browser) setEditor(i int, text string) {
	b.t.Helper()
	b.eval(fmt.Sprintf(`(() => { const t = document.querySelectorAll('.req-json')[%d]; t.value = %q; t.dispatchEvent(new Event('input')); })()`, i, text))
}

func sampleTraffic(t *testing.T, e *env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	echo(t, e, "warm-up")
	_, _ = e.client.Echo(ctx, &demopb.EchoRequest{Message: "x", Fail: &demopb.FailWith{Code: 9, Message: "the demo fails on purpose"}})
	cd, err := e.client.Countdown(ctx, &demopb.CountdownRequest{Count: 3, Interval: durationpb.New(10 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := cd.Recv(); err != nil {
			break
		}
	}
	sum, err := e.client.Sum(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		_ = sum.Send(&demopb.SumRequest{Value: &demopb.SumRequest_Integer{Integer: int64(i)}})
	}
	if _, err := sum.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
}

func TestBrowserTrafficLiveAndDetail(t *testing.T) {
	e := newEnv(t, envOpts{}) // the UI's default event batching
	sampleTraffic(t, e)
	e.waitCalls(4)
	b := newBrowser(t)
	b.do(15*time.Second, chromedp.Navigate(e.base+"/#/traffic"))
	b.wait(10*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 4 && document.getElementById('live').textContent === 'live'`)

	// A call made through the proxy shows up within a second.
	start := time.Now()
	echo(t, e, "browser needle")
	b.wait(3*time.Second, `(() => { const r = document.querySelector('#rows tr[data-id]'); return document.querySelectorAll('#rows tr[data-id]').length === 5 && r.textContent.includes('Echo') && r.textContent.includes('OK'); })()`)
	if d := time.Since(start); d > time.Second {
		t.Errorf("the call appeared after %v, want within 1s", d)
	} else {
		t.Logf("call appeared in the table %v after it was made", d.Round(time.Millisecond))
	}
	b.shot("traffic")

	// Its detail shows the decoded request field.
	b.do(5*time.Second, chromedp.Click(chromedp.CSS(`#rows tr[data-id]`)))
	b.wait(5*time.Second, `!!document.querySelector('.detail .jt') && document.querySelector('.detail').innerText.includes('"browser needle"') && document.querySelector('.detail').innerText.includes('MOOD_HAPPY')`)
	b.shot("detail")
	// Replay shows the verdict and the differences (Echo's receivedAt).
	b.eval(`[...document.querySelectorAll('.detail-head button')].find(x => x.textContent === 'Replay').click()`)
	b.wait(10*time.Second, `(() => { const r = document.getElementById('replay'); return r && r.textContent.includes('mismatch') && r.textContent.includes('receivedAt'); })()`)
	b.shot("detail-replay")
	// A failed call's status details are decoded.
	b.eval(`location.hash = '#/call/2'`)
	b.wait(5*time.Second, `!!document.querySelector('.detail') && document.querySelector('.detail').textContent.includes('google.rpc.ErrorInfo') && document.querySelector('.detail').textContent.includes('DEMO_REQUESTED_FAILURE')`)
	b.shot("detail-failed")
	// "Copy as grpcurl" copies a runnable command for the recorded call,
	// naming the proxy's gRPC address (TestCopyAsGrpcurlRuns runs them).
	b.eval(`location.hash = '#/call/1'`)
	b.wait(5*time.Second, `!!document.querySelector('.detail') && document.querySelector('.detail').textContent.includes('warm-up')`)
	b.eval(`window.__copied = null; navigator.clipboard.writeText = async t => { window.__copied = t; }; [...document.querySelectorAll('.detail-head button')].find(x => x.textContent === 'Copy as grpcurl').click()`)
	b.wait(5*time.Second, `typeof window.__copied === 'string'`)
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	cmdline, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__copied`))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if want := `grpcurl -plaintext -d '{"message":"warm-up","author":{"name":"ann","mood":"MOOD_HAPPY"}}' ` + e.addr + ` grpctap.demo.v1.DemoService/Echo`; cmdline != want {
		t.Errorf("grpcurl command\n got %s\nwant %s", cmdline, want)
	}
	b.eval(`location.hash = '#/call/5'`)
	b.wait(5*time.Second, `!!document.querySelector('.detail') && document.querySelector('.detail').textContent.includes('browser needle')`)
	b.eval(`document.documentElement.dataset.theme = 'dark'`)
	b.shot("detail-dark")
	b.eval(`location.hash = '#/traffic'`)
	b.wait(5*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 6`)
	b.shot("traffic-dark")
	b.eval(`localStorage.removeItem('grpctap-theme'); document.documentElement.dataset.theme = 'light'`)

	// Laptop width, and the keyboard: j selects, Enter opens, Esc returns.
	b.do(5*time.Second, chromedp.EmulateViewport(1024, 700))
	b.shot("traffic-1024")
	b.do(5*time.Second, chromedp.KeyEvent("j"), chromedp.KeyEvent("\r"))
	b.wait(5*time.Second, `location.hash.startsWith('#/call/') && !!document.querySelector('.detail')`)
	b.shot("detail-1024")
	b.do(5*time.Second, chromedp.KeyEvent("\x1b"))
	b.wait(5*time.Second, `location.hash === '#/traffic' && document.querySelectorAll('#rows tr[data-id]').length === 6`)
	b.do(5*time.Second, chromedp.ResetViewport())

	// An open stream shows as live, and its message count moves.
	streamDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cd, err := e.client.Countdown(ctx, &demopb.CountdownRequest{Count: 3, Interval: durationpb.New(700 * time.Millisecond)})
		if err != nil {
			streamDone <- err
			return
		}
		for {
			if _, err := cd.Recv(); err != nil {
				streamDone <- nil
				return
			}
		}
	}()
	liveRow := `document.querySelector('#rows tr[data-id]')`
	b.wait(3*time.Second, liveRow+`.textContent.includes('Countdown') && !!`+liveRow+`.querySelector('.badge.live')`)
	b.wait(3*time.Second, liveRow+`.querySelector('.msgs').textContent.includes('1↓') && !!`+liveRow+`.querySelector('.badge.live')`)
	b.shot("traffic-live-stream")
	b.wait(5*time.Second, liveRow+`.querySelector('.msgs').textContent.includes('3↓') && `+liveRow+`.textContent.includes('OK')`)
	if err := <-streamDone; err != nil {
		t.Fatal(err)
	}

	// Filters: free text over message bodies.
	b.eval(`(() => { const s = document.getElementById('search'); s.value = 'needle'; s.dispatchEvent(new Event('input')); })()`)
	// (the replay sent the same request again, and is recorded too)
	b.wait(5*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 2`)
}

func TestBrowserComposerUnaryAndServerStreaming(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	b.do(15*time.Second, chromedp.Navigate(e.base+"/#/composer?method="+url.QueryEscape("/grpctap.demo.v1.DemoService/Echo")))
	// The editor starts from the schema's template, a valid request: the
	// fields whose setting means something are hints beside it, added on a
	// click.
	b.wait(10*time.Second, `(() => { const t = document.querySelector('.req-json'); return t && t.value.includes('"message"') && t.value.includes('"labels": {}') && !t.value.includes('"fail"') && !t.value.includes('"author"'); })()`)
	b.wait(5*time.Second, `(() => { const h = document.getElementById('template-hints'); return !!h && h.textContent.includes('fail: {"code":0,"message":""}') && h.textContent.includes('author: {"name":"","mood":"MOOD_UNSPECIFIED"}'); })()`)
	b.shot("composer-template")
	b.do(5*time.Second, chromedp.Click(chromedp.CSS(`#template-hints button[data-field="author"]`)))
	b.wait(5*time.Second, `(() => { const t = document.querySelector('.req-json'); return t.value.includes('"author"') && t.value.includes('"mood": "MOOD_UNSPECIFIED"') && !t.value.includes('"fail"'); })()`)
	b.setEditor(0, `{"message": "composed in chromium", "author": {"name": "ann", "mood": "MOOD_CURIOUS"}}`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("send")))
	b.wait(10*time.Second, `(() => { const s = document.getElementById('resp-status'); const m = document.getElementById('resp-messages'); return s && s.textContent === 'OK (0)' && m.innerText.includes('composed in chromium') && !!document.querySelector('#response a[href^="#/call/"]'); })()`)
	b.shot("composer-unary")

	b.eval(`location.hash = '#/composer?method=' + encodeURIComponent('/grpctap.demo.v1.DemoService/Countdown')`)
	b.wait(10*time.Second, `document.getElementById('method-title')?.textContent.endsWith('/Countdown') && !!document.querySelector('.req-json')`)
	b.setEditor(0, `{"count": 3, "interval": "0.3s"}`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("send")))
	// Responses appear as they arrive, before the call ends...
	b.wait(5*time.Second, `document.querySelectorAll('#response .resp-msg').length >= 1 && !!document.querySelector('#response .badge.live')`)
	b.shot("composer-streaming")
	// ...and the finished call replaces them.
	b.wait(10*time.Second, `(() => { const s = document.getElementById('resp-status'); return s && s.textContent === 'OK (0)' && document.querySelectorAll('#resp-messages .resp-msg').length === 3; })()`)
	b.shot("composer-stream-done")

	// Both calls are in the capture, marked as the composer's.
	calls := e.waitCalls(2)
	for _, c := range calls {
		if got := c.RequestHeaders[ui.OriginHeader]; len(got) != 1 || got[0] != ui.OriginComposer {
			t.Errorf("call %d %s: origin %v", c.ID, c.Method, got)
		}
	}
}

func TestBrowserCollectionSurvivesReload(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	b.do(15*time.Second, chromedp.Navigate(e.base+"/#/composer?method="+url.QueryEscape("/grpctap.demo.v1.DemoService/Echo")))
	b.wait(10*time.Second, `!!document.querySelector('.req-json')`)
	b.setEditor(0, `{"message": "keep me"}`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("send")))
	b.wait(10*time.Second, `(() => { const s = document.getElementById('resp-status'); return s && s.textContent === 'OK (0)'; })()`)
	b.do(5*time.Second, chromedp.Click(chromedp.ID("save-btn")))
	b.wait(5*time.Second, `!!document.getElementById('save-new')`)
	b.eval(`(() => { document.getElementById('save-new').value = 'Smoke tests'; document.getElementById('save-name').value = 'Echo keep me'; })()`)
	b.shot("collection-save-dialog")
	b.do(5*time.Second, chromedp.Click(chromedp.ID("save-ok")))
	b.wait(5*time.Second, `!!document.querySelector('[data-collection="Smoke tests"]')`)

	b.do(15*time.Second, chromedp.Reload())
	b.wait(10*time.Second, `!!document.querySelector('[data-collection="Smoke tests"]') && document.getElementById('collections').innerText.includes('Echo keep me')`)
	// Opening the saved request restores it and its example response.
	b.eval(`[...document.querySelectorAll('#collections a')].find(a => a.textContent.startsWith('Echo keep me')).click()`)
	b.wait(5*time.Second, `document.querySelector('.req-json').value.includes('keep me') && document.getElementById('response').textContent.includes('Saved example')`)
	b.shot("collections")

	var list struct{ Collections []ui.Collection }
	e.do("GET", "/api/collections", nil, &list)
	if len(list.Collections) != 1 || len(list.Collections[0].Requests) != 1 || len(list.Collections[0].Requests[0].Examples) != 1 {
		t.Errorf("stored collections %+v", list.Collections)
	}
}

// TestBrowserLargeCallOpensQuickly: a call of two 4 MiB messages without a
// schema (a packed field of 4 million numbers each) opens in the inspector
// within 2 seconds, showing the first numbers, how many there are and that
// the view is shortened; more and the raw bytes come on request.
func TestBrowserLargeCallOpensQuickly(t *testing.T) {
	e := newEnv(t, envOpts{blobEcho: true})
	id := e.blobCall(packedMessage(4 << 20))
	b := newBrowser(t)
	b.do(15*time.Second, chromedp.Navigate(e.base+"/#/traffic"))
	b.wait(10*time.Second, fmt.Sprintf(`!!document.querySelector('#rows tr[data-id="%d"]')`, id))

	start := time.Now()
	b.eval(fmt.Sprintf(`location.hash = '#/call/%d'`, id))
	shown := `(() => { const d = document.querySelector('.detail'); if (!d) return false;
		const msgs = d.querySelectorAll('details.msg');
		return msgs.length === 2 && [...msgs].every(m => m.innerText.includes('"packed_count": 4194299') && m.innerText.includes('This view is shortened')); })()`
	b.wait(2*time.Second, shown)
	t.Logf("the call of two 4 MiB messages was shown %v after it was opened", time.Since(start).Round(time.Millisecond))
	b.shot("detail-large")

	// More on request: ten times as many numbers in the first message, a
	// list folded until opened.
	b.eval(`document.querySelector('details.msg .shortened button').click()`)
	b.wait(5*time.Second, `document.querySelector('details.msg').innerText.includes('"packed_varints": [2000 items]')`)
	b.eval(`document.querySelector('details.msg .jt details:not([open]) > summary').click()`)
	b.wait(5*time.Second, `document.querySelector('details.msg').innerText.includes('show 200 more of 1800')`)
	// The Hex tab fetches the body and shows its start.
	b.eval(`[...document.querySelectorAll('details.msg')[1].querySelectorAll('.tabs button')].find(x => x.textContent === 'Hex').click()`)
	b.wait(5*time.Second, `(() => { const m = document.querySelectorAll('details.msg')[1]; return m.innerText.includes('First 64.0 KiB of 4.0 MiB shown') && m.innerText.includes('000000  0a fb ff ff 01 01 02 03'); })()`)
	b.shot("detail-large-hex")
}

// TestBrowserReadOnlyCannotSend: on a read-only inspector, and with the
// read-only link of a full one, the page says it is read-only, and the
// composer's Send and Save and a call's Replay are disabled with the reason
// as their tooltip. The traffic and the call are still shown.
func TestBrowserReadOnlyCannotSend(t *testing.T) {
	b := newBrowser(t)
	for _, tc := range []struct {
		name  string
		opts  envOpts
		query string
	}{
		{"read-only inspector", envOpts{readOnly: true}, ""},
		{"read-only token", envOpts{token: "full-s3cret", readOnlyToken: "look-only"}, "?token=look-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.t = t
			e := newEnv(t, tc.opts)
			echo(t, e, "seen, not sent")
			b.do(15*time.Second, chromedp.Navigate(e.base+"/"+tc.query+"#/traffic"))
			b.wait(10*time.Second, `document.querySelectorAll('#rows tr[data-id]').length === 1 && !!document.getElementById('read-only')`)

			disabledWithReason := func(sel string) string {
				return fmt.Sprintf(`(() => { const b = document.querySelector(%q); return !!b && b.disabled && b.title.includes('read-only') && b.parentElement.title.includes('read-only'); })()`, sel)
			}
			b.eval(`location.hash = '#/call/1'`)
			b.wait(5*time.Second, `!!document.querySelector('.detail') && document.querySelector('.detail').innerText.includes('seen, not sent')`)
			b.wait(5*time.Second, `(() => { const r = [...document.querySelectorAll('.detail-head button')].find(x => x.textContent === 'Replay'); return !!r && r.disabled && r.title.includes('read-only'); })()`)
			b.wait(5*time.Second, disabledWithReason("#save-to-collection"))

			b.eval(`location.hash = '#/composer?method=' + encodeURIComponent('/grpctap.demo.v1.DemoService/Echo')`)
			b.wait(10*time.Second, `!!document.querySelector('.req-json') && document.querySelector('.req-json').value.includes('"message"')`)
			b.wait(5*time.Second, disabledWithReason("#send")+` && `+disabledWithReason("#save-btn"))
			b.shot("composer-read-only-" + strings.ReplaceAll(tc.name, " ", "-"))
		})
	}
}

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
