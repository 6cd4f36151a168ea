package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpctap/grpctap/demo/demopb"
	"github.com/grpctap/grpctap/internal/pgtest"
	"github.com/grpctap/grpctap/store"
)

// TestFleetPostgres: three proxy processes, each with its own name, record
// into one PostgreSQL database under load. Every completed call is there
// once, under the name of the proxy it went through; the inspector of a
// fourth process lists the calls of all three, and its live feed tells of
// a call made through another proxy.
func TestFleetPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	db := pgtest.DB(t)
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	backend := demoBackend(t)

	const proxies = 3
	var procs []*proc
	var clients []demopb.DemoServiceClient
	for i := 0; i < proxies; i++ {
		p := startProc(t, bin, "proxy", "--listen", "127.0.0.1:0", "--backend", backend, "--db", db,
			"--name", fmt.Sprint("edge-", i), "--ui", "")
		clients = append(clients, demoClient(t, p.waitFor(t, listeningLine)))
		procs = append(procs, p)
	}
	inspectorProc := startProc(t, bin, "ui", "--db", db, "--ui", "127.0.0.1:0")
	inspector := strings.TrimSuffix(inspectorProc.waitFor(t, inspectorLine), "/")

	var completed [proxies]atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i, client := range clients {
		for c := 0; c < 3; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < 100; n++ {
					if _, err := client.Echo(ctx, &demopb.EchoRequest{Message: fmt.Sprintf("via edge-%d #%d.%d", i, c, n)}); err != nil {
						errs <- err
						return
					}
					completed[i].Add(1)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := countdown(ctx, client, 10); err != nil {
				errs <- err
				return
			}
			completed[i].Add(1)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// The live feed of the fourth process: a call through edge-1 is
	// announced (the page rereads its list), and then listed.
	feed := sseEvents(t, ctx, inspector+"/api/events")
	<-feed // the feed is open: its first batch tells the page to read the list
	sent := time.Now()
	if _, err := clients[1].Echo(ctx, &demopb.EchoRequest{Message: "live through edge-1"}); err != nil {
		t.Fatal(err)
	}
	completed[1].Add(1)
	var seenAfter time.Duration
	for seenAfter == 0 {
		select {
		case ev := <-feed:
			if !strings.Contains(ev, `"refresh":true`) {
				continue
			}
			var page store.Page
			mustGetJSON(t, inspector+"/api/calls?q=live+through&limit=5", &page)
			if len(page.Calls) == 1 && page.Calls[0].Proxy == "edge-1" {
				seenAfter = time.Since(sent)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the inspector's live feed never showed the call made through edge-1")
		}
	}
	t.Logf("a call through edge-1 was listed by the fourth process's inspector %v after it was sent", seenAfter.Round(time.Millisecond))

	for _, p := range procs {
		p.stop(t)
	}
	st, calls := readCapture(t, db)
	per := map[string]int64{}
	for _, c := range calls {
		per[c.Proxy]++
		if c.State != "closed" || c.DroppedEvents != 0 {
			t.Errorf("call %d: %s, %d events dropped", c.ID, c.State, c.DroppedEvents)
		}
	}
	for i := range completed {
		name := fmt.Sprint("edge-", i)
		if per[name] != completed[i].Load() {
			t.Errorf("%s: %d calls recorded, %d completed", name, per[name], completed[i].Load())
		}
	}
	// Each recorded request names the proxy it went through.
	wrong := 0
	for _, c := range calls {
		if !strings.HasSuffix(c.Method, "/Echo") {
			continue
		}
		full, err := st.GetCall(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		body := string(full.Messages[0].Raw)
		if !strings.Contains(body, "via "+c.Proxy+" #") && !strings.Contains(body, "live through "+c.Proxy) {
			wrong++
		}
	}
	if wrong > 0 {
		t.Errorf("%d calls recorded under another proxy's name", wrong)
	}
	// Schemas learned by the proxies (from the backend's reflection)
	// decode the fleet's calls for any reader.
	show, err := exec.Command(bin, "show", "--db", db, "--json", strconv.FormatInt(calls[len(calls)-1].ID, 10)).Output()
	if err != nil {
		t.Fatalf("grpctap show: %v", err)
	}
	var shown struct {
		Messages []struct {
			JSON struct{ Message string } `json:"json"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(show, &shown); err != nil || len(shown.Messages) == 0 || shown.Messages[0].JSON.Message != "live through edge-1" {
		t.Errorf("the call is not decoded with the learned schema (%v):\n%s", err, show)
	}
	var all struct {
		Proxies []string `json:"proxies"`
	}
	mustGetJSON(t, inspector+"/api/info", &all)
	if strings.Join(all.Proxies, ",") != "edge-0,edge-1,edge-2" {
		t.Errorf("the inspector knows proxies %v", all.Proxies)
	}
	for i := 0; i < proxies; i++ {
		var page store.Page
		mustGetJSON(t, fmt.Sprintf("%s/api/calls?proxy=edge-%d&limit=1000", inspector, i), &page)
		if int64(len(page.Calls)) != completed[i].Load() {
			t.Errorf("inspector lists %d calls of edge-%d, want %d", len(page.Calls), i, completed[i].Load())
		}
	}
	inspectorProc.stop(t)
}

// TestFleetPostgresRestart: PostgreSQL stops and starts again while a
// proxy records under load. Forwarding never fails; recording resumes by
// itself; what was lost is counted exactly, and nothing is stored twice.
func TestFleetPostgresRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	srv, err := pgtest.Start()
	if err != nil {
		pgtest.Unavailable(t, err)
	}
	defer srv.Close()
	db, err := srv.CreateDB("restart")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	backend := demoBackend(t)
	p := startProc(t, bin, "proxy", "--listen", "127.0.0.1:0", "--backend", backend, "--db", db, "--name", "solo", "--ui", "")
	client := demoClient(t, p.waitFor(t, listeningLine))

	// Callers run until told to stop (at most 2 minutes); the server is
	// stopped once they have made calls, and started again a second later.
	var completed atomic.Int64
	var stopLoad atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(2 * time.Minute)
			for n := 0; !stopLoad.Load() && time.Now().Before(deadline); n++ {
				if _, err := client.Echo(ctx, &demopb.EchoRequest{Message: fmt.Sprintf("tag %d.%d", c, n)}); err != nil {
					errs <- fmt.Errorf("forwarding failed: %w", err)
					return
				}
				completed.Add(1)
			}
		}()
	}
	waitCount := func(n int64) {
		for completed.Load() < n {
			select {
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	maxID := func() int64 {
		st, err := store.Open(ctx, db, store.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		w, err := st.CurrentWatermark(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return w.MaxID
	}
	waitCount(500)
	beforeStop, recordedBefore := completed.Load(), maxID()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	down := completed.Load()
	waitCount(down + 500) // calls forwarded while the database is down
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	up := completed.Load()
	// Recording resumes by itself: new calls get ids (the backoff is at
	// most 5 s; this waits up to 100 rounds of 50 calls).
	before, resumed := maxID(), false
	for try := 0; try < 100 && !resumed; try++ {
		waitCount(completed.Load() + 50)
		resumed = maxID() > before
	}
	stopLoad.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	p.stop(t)
	reported := int64(0)
	if m := regexp.MustCompile(`some events were not recorded.*dropped=(\d+)`).FindStringSubmatch(p.output()); m != nil {
		reported, _ = strconv.ParseInt(m[1], 10, 64)
	}

	st, calls := readCapture(t, db)
	stored, err := st.DroppedEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]bool{}
	var incomplete, perCallDrops int64
	for _, c := range calls {
		full, err := st.GetCall(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(full.Messages) > 0 {
			tag := string(full.Messages[0].Raw)
			if tags[tag] {
				t.Fatalf("request %q stored twice", tag)
			}
			tags[tag] = true
		}
		if c.State != "closed" {
			t.Errorf("call %d is still open after the outage", c.ID)
		}
		if c.DroppedEvents > 0 {
			incomplete++
			perCallDrops += c.DroppedEvents
		}
	}
	missing := completed.Load() - int64(len(calls))
	t.Logf("%d calls completed (%d before the server was stopped, %d recorded by then; %d while it stopped, %d while down); %d recorded whole, %d incomplete, %d missing; %d events dropped (process said %d)",
		completed.Load(), beforeStop, recordedBefore, down-beforeStop, up-down, int64(len(calls))-incomplete, incomplete, missing, stored, reported)
	if !resumed {
		t.Fatal("recording did not resume after the database came back")
	}
	if stored != reported || stored == 0 {
		t.Errorf("the capture counts %d dropped events, the proxy reported %d", stored, reported)
	}
	// A unary call is five events (start, response headers, request,
	// response, end): the drops are the missing calls' events and those
	// counted on incomplete calls, exactly.
	if want := 5*missing + perCallDrops; stored != want {
		t.Errorf("dropped events %d, want %d (5 × %d missing calls + %d counted on incomplete calls)", stored, want, missing, perCallDrops)
	}
}

// sseEvents reads server-sent events from url until ctx ends; each value
// is one event's data.
func sseEvents(t *testing.T, ctx context.Context, url string) <-chan string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	ch := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				select {
				case ch <- data:
				default:
				}
			}
		}
	}()
	return ch
}

func mustGetJSON(t *testing.T, url string, v any) {
	t.Helper()
	if code := getJSON(t, url, nil, v); code != 200 {
		t.Fatalf("GET %s: %d", url, code)
	}
}
