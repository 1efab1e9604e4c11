package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// uiBeat makes demo nodes beat, die and move fast enough for a browser test.
var uiBeat = heartbeat.Config{Interval: 150 * time.Millisecond, TTL: 600 * time.Millisecond}

// screenshotPath is where TestBrowserUI leaves a picture of the UI (gitignored).
const screenshotPath = "testdata/artifacts/ui.png"

// chromium finds the browser binary; a missing browser is a failure, never a skip.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("browser test needs Chromium: apt-get install -y --no-install-recommends chromium")
	return ""
}

// TestBrowserUI drives the embedded UI in headless Chromium against a server
// with demo nodes: add a group (secret masked), see it on the map, stop a
// demo node and see the map follow, retire the group, and keep a screenshot.
func TestBrowserUI(t *testing.T) {
	bin := chromium(t)
	demo := &demoNodes{}
	srv, ts := startAPI(t, server.WithHeartbeat(uiBeat), server.WithDev(demo))
	demo.hb, demo.reg = srv.Tracker(), srv.Registry()
	t.Cleanup(demo.close)
	ctx := context.Background()
	_, err := srv.Registry().Add(ctx, "beta", registry.Change{Set: map[string]string{"region": "us"}}, "test")
	require.NoError(t, err)
	for range 4 {
		_, err := demo.Add(ctx)
		require.NoError(t, err)
	}

	browser := newBrowser(t, bin)
	var consoleMu sync.Mutex
	var consoleErrs []string
	messages := chromedp.Console(browser)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				consoleMu.Lock()
				consoleErrs = append(consoleErrs, m.String())
				consoleMu.Unlock()
			}
		}
	}()

	css := func(testid string) chromedp.CSS { return chromedp.CSS(`[data-testid="` + testid + `"]`) }
	// until polls a JS predicate in the page with a deadline.
	until := func(what, js string) {
		t.Helper()
		_, err := chromedp.Run(browser, chromedp.Poll[chromedp.Void](js,
			chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
		require.NoError(t, err, "waiting for %s", what)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		stepCtx, cancel := context.WithTimeout(browser, 15*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(stepCtx, steps...), what)
	}
	// click clicks a button, again if a re-render replaced it in between.
	click := func(what string, sel chromedp.CSS) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			stepCtx, cancel := context.WithTimeout(browser, time.Until(deadline))
			err := chromedp.Do(stepCtx, chromedp.Click(sel))
			cancel()
			if err == nil || !strings.Contains(err.Error(), "find node") || time.Now().After(deadline) {
				require.NoError(t, err, "click %s", what)
				return
			}
		}
	}
	colChips := func(group string) string {
		return `[...document.querySelectorAll('[data-testid="map-col-` + group + `"] .chip')].map(c => c.dataset.node)`
	}

	// Load: live events, dev panel, the seeded group on the map.
	do("load", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(ts.URL+"/"))
	until("live event stream", `document.querySelector('[data-testid="live"]').dataset.live === "true"`)
	until("dev panel with 4 running nodes", `!document.querySelector('[data-testid="dev-panel"]').hidden &&
		document.querySelectorAll('[data-testid^="dev-node-"][data-running="true"]').length === 4`)
	until("beta held by all 4 nodes", colChips("beta")+`.length === 4`)

	// Add a group through the dialog.
	do("add group",
		chromedp.Click(css("btn-add-group")),
		chromedp.SendKeys(css("f-name"), "alpha"),
		chromedp.SendKeys(css("f-quota"), "600/m"),
		chromedp.SetValue(css("f-config"), "api_key=sk-live-0123456789abcdef\nregion=eu"),
		chromedp.SendKeys(css("f-secrets"), "api_key"),
		chromedp.Click(css("dlg-group-submit")))
	until("alpha and beta with 2 nodes each", colChips("alpha")+`.length === 2 && `+colChips("beta")+`.length === 2`)
	until("alpha row", `!!document.querySelector('[data-testid="group-row-alpha"]')`)
	row, err := chromedp.Run(browser, chromedp.TextContent(css("group-row-alpha")))
	require.NoError(t, err)
	assert.Contains(t, row, "api_key=****cdef", "secret shown masked")
	assert.NotContains(t, row, "sk-live", "secret value reached the page")
	assert.Contains(t, row, "300/m", "per-node share of 600/m over 2 nodes")

	// Edit alpha keeping the masked secret line as it is: the real value stays.
	click("edit alpha", css("group-edit-alpha"))
	do("edit alpha",
		chromedp.SetValue(css("f-config"), "api_key=****cdef\nregion=us"),
		chromedp.Click(css("dlg-group-submit")))
	until("alpha v2 in the table", `/region=us/.test(document.querySelector('[data-testid="group-row-alpha"]').textContent)`)
	g, err := srv.Registry().Get(ctx, "alpha")
	require.NoError(t, err)
	assert.Equal(t, int64(2), g.Version)
	assert.Equal(t, map[string]string{"api_key": "sk-live-0123456789abcdef", "region": "us"}, g.Config)

	// Roll back to v1 from the history dialog.
	click("history", css("group-history-alpha"))
	until("history rows", `!!document.querySelector('[data-testid="rollback-v1"]')`)
	click("rollback", css("rollback-v1"))
	until("v3 current", `!!document.querySelector('[data-testid="history-v3"].current')`)
	do("close history", chromedp.Click(chromedp.CSS(`[data-testid="dlg-history"] [data-close]`)))
	g, err = srv.Registry().Get(ctx, "alpha")
	require.NoError(t, err)
	assert.Equal(t, "eu", g.Config["region"])

	// Import preview (dry run) shows the diff and writes nothing.
	do("import preview",
		chromedp.Click(css("btn-import")),
		chromedp.SetValue(css("import-text"), "groups:\n  - name: gamma\n    weight: 2\n"),
		chromedp.Click(css("import-preview")))
	until("diff", `/add gamma/.test((document.querySelector('[data-testid="diff-gamma"]') || {}).textContent || '')`)
	do("close import", chromedp.Click(chromedp.CSS(`[data-testid="dlg-import"] [data-close]`)))
	_, err = srv.Registry().Get(ctx, "gamma")
	require.ErrorIs(t, err, registry.ErrNotFound, "a dry run wrote gamma")

	// Stop a node holding alpha: it is reaped and the map rebalances without it.
	victim, err := chromedp.Run(browser, chromedp.Evaluate[string](colChips("alpha")+`[0]`))
	require.NoError(t, err)
	click("stop "+victim, css("dev-stop-"+victim))
	until("stopped badge", `document.querySelector('[data-testid="dev-node-`+victim+`"]').dataset.running === "false"`)
	until(victim+" gone from the map and alpha back to 2 nodes",
		`!document.querySelector('[data-testid="chip-`+victim+`"]') && `+colChips("alpha")+`.length === 2 && `+colChips("beta")+`.length === 1`)
	moved, err := chromedp.Run(browser, chromedp.Evaluate[int](
		`document.querySelectorAll('.map .chip[data-moved="true"]').length`))
	require.NoError(t, err)
	assert.Positive(t, moved, "the node that moved from beta to alpha is highlighted")

	// Retire alpha: confirm, then it drains to retired and leaves the map.
	click("retire alpha", css("group-retire-alpha"))
	click("confirm", css("confirm-ok"))
	until("alpha retired", `(document.querySelector('[data-testid="group-row-alpha"] [data-testid="state"]') || {}).textContent === "retired"`)
	until("alpha off the map, beta on all 3 live nodes", `!document.querySelector('[data-testid="map-col-alpha"]') && `+colChips("beta")+`.length === 3`)

	shot, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(screenshotPath), 0o755))
	require.NoError(t, os.WriteFile(screenshotPath, shot, 0o644))

	consoleMu.Lock()
	defer consoleMu.Unlock()
	assert.Empty(t, consoleErrs, "browser console errors (CSP violations show up here)")
}

// newBrowser starts headless Chromium with a fresh profile; it is stopped
// (and waited for) when the test ends, before the profile is removed.
func newBrowser(t *testing.T, bin string) context.Context {
	t.Helper()
	profile := t.TempDir()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(io.Discard),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx), "start %s", bin)
	return ctx
}

// TestWebAssets checks how the UI is served: content types, the strict CSP,
// 404 for unknown files, and that nothing is loaded from elsewhere.
func TestWebAssets(t *testing.T) {
	_, ts := startAPI(t, server.WithTokens(server.Tokens{Admin: "admin-secret"}))
	for path, typ := range map[string]string{
		"/":            "text/html; charset=utf-8",
		"/index.html":  "text/html; charset=utf-8",
		"/app.js":      "text/javascript; charset=utf-8",
		"/style.css":   "text/css; charset=utf-8",
		"/favicon.svg": "image/svg+xml",
	} {
		t.Run(path, func(t *testing.T) {
			res, err := http.Get(ts.URL + path) // no token: the UI itself is public
			require.NoError(t, err)
			body, err := io.ReadAll(res.Body)
			require.NoError(t, res.Body.Close())
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, res.StatusCode)
			assert.Equal(t, typ, res.Header.Get("Content-Type"))
			assert.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'self'")
			assert.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
			assert.NotEmpty(t, res.Header.Get("ETag"))
			text := strings.ReplaceAll(string(body), `xmlns="http://www.w3.org/2000/svg"`, "")
			for _, external := range []string{"http://", "https://", "//fonts.", "cdn."} {
				assert.False(t, strings.Contains(text, external), "%s refers to %q: the UI must work offline", path, external)
			}
			for _, sink := range []string{".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
				assert.False(t, strings.Contains(text, sink), "%s uses %s: build the DOM from text nodes", path, sink)
			}
		})
	}
	res, err := http.Get(ts.URL + "/nope.js")
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
}

// demoNodes is a DevController of simulated nodes beating through the
// heartbeat tracker, like the demo nodes of `allot serve --dev`.
type demoNodes struct {
	hb  *heartbeat.Tracker
	reg *registry.Registry

	mu    sync.Mutex
	nodes map[string]*demoNode
	order []string
	wg    sync.WaitGroup
}

type demoNode struct {
	id, ip string
	stop   context.CancelFunc // nil when stopped
	epoch  int64
	groups []string
}

func (d *demoNodes) Nodes() []server.DevNode {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]server.DevNode, 0, len(d.order))
	for _, id := range d.order {
		n := d.nodes[id]
		out = append(out, server.DevNode{ID: n.id, IP: n.ip, Running: n.stop != nil, Epoch: n.epoch,
			Groups: append([]string{}, n.groups...)})
	}
	return out
}

func (d *demoNodes) Add(ctx context.Context) (server.DevNode, error) {
	d.mu.Lock()
	if d.nodes == nil {
		d.nodes = map[string]*demoNode{}
	}
	i := len(d.order) + 1
	n := &demoNode{id: fmt.Sprintf("demo-%d", i), ip: fmt.Sprintf("10.0.0.%d", i)}
	d.nodes[n.id] = n
	d.order = append(d.order, n.id)
	d.mu.Unlock()
	if err := d.Start(ctx, n.id); err != nil {
		return server.DevNode{}, err
	}
	return server.DevNode{ID: n.id, IP: n.ip, Running: true}, nil
}

func (d *demoNodes) Start(_ context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.nodes[id]
	if !ok {
		return server.ErrDevNodeNotFound
	}
	if n.stop != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	d.wg.Add(1)
	go d.run(ctx, n)
	return nil
}

func (d *demoNodes) Stop(ctx context.Context, id string, graceful bool) error {
	d.mu.Lock()
	n, ok := d.nodes[id]
	if !ok {
		d.mu.Unlock()
		return server.ErrDevNodeNotFound
	}
	if n.stop != nil {
		n.stop()
		n.stop = nil
	}
	d.mu.Unlock()
	if graceful {
		return d.hb.Leave(ctx, id)
	}
	return nil
}

// run beats every interval, reporting the groups it holds, and reads its
// assignment whenever the epoch moves.
func (d *demoNodes) run(ctx context.Context, n *demoNode) {
	defer d.wg.Done()
	tick := time.NewTicker(d.hb.Config().Interval)
	defer tick.Stop()
	for {
		d.mu.Lock()
		beat := heartbeat.Beat{Node: n.id, IP: n.ip, Held: append([]string{}, n.groups...), Ack: n.epoch}
		d.mu.Unlock()
		rep, err := d.hb.Beat(ctx, beat)
		if err == nil && rep.Epoch != beat.Ack {
			view, err := d.reg.NodeAssignment(ctx, n.id)
			if err == nil {
				epoch := view.Epoch
				names := make([]string, 0, len(view.Groups))
				for _, g := range view.Groups {
					names = append(names, g.Name)
				}
				d.mu.Lock()
				n.epoch, n.groups = epoch, names
				d.mu.Unlock()
			}
		}
		if err != nil && errors.Is(err, context.Canceled) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// close stops every node and waits for their loops.
func (d *demoNodes) close() {
	d.mu.Lock()
	for _, n := range d.nodes {
		if n.stop != nil {
			n.stop()
			n.stop = nil
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// TestBrowserToken checks the token flow: a server with tokens answers 401,
// the UI asks for the token once, keeps it for the tab and goes live.
func TestBrowserToken(t *testing.T) {
	bin := chromium(t)
	srv, ts := startAPI(t, server.WithHeartbeat(uiBeat), server.WithTokens(server.Tokens{Admin: "admin-secret"}))
	_, err := srv.Registry().Add(context.Background(), "beta", registry.Change{}, "test")
	require.NoError(t, err)
	browser := newBrowser(t, bin)
	poll := func(what, js string) {
		t.Helper()
		_, err := chromedp.Run(browser, chromedp.Poll[chromedp.Void](js,
			chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
		require.NoError(t, err, "waiting for %s", what)
	}
	ctx, cancel := context.WithTimeout(browser, 20*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/")))
	poll("token dialog", `document.querySelector('[data-testid="dlg-token"]').open`)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`[data-testid="f-token"]`), "admin-secret"),
		chromedp.Click(chromedp.CSS(`#form-token button[type="submit"]`))))
	poll("live with the token", `document.querySelector('[data-testid="live"]').dataset.live === "true" &&
		!!document.querySelector('[data-testid="group-row-beta"]') && !document.querySelector('[data-testid="dlg-token"]').open`)
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("allot.token")`))
	require.NoError(t, err)
	assert.Equal(t, "admin-secret", stored)
}
