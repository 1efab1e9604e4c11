package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
)

// Where the browser tests leave pictures of the UI (gitignored by
// **/testdata/artifacts/): TestBrowserUI's last page, and the page at a wait
// that timed out.
const (
	screenshotPath  = "testdata/artifacts/ui.png"
	failureShotPath = "testdata/artifacts/ui-failure.png"
)

// browserWait bounds every wait of the browser tests.
const browserWait = 15 * time.Second

// devRedisLine is how `serve --dev` names its in-memory Redis on stdout.
var devRedisLine = regexp.MustCompile(`export ALLOT_REDIS_URL=(redis://\S+)`)

// devRedis is a client of the in-memory Redis the latest startServe
// --dev printed, closed when the test ends.
func devRedis(t *testing.T) *redis.Client {
	t.Helper()
	m := devRedisLine.FindStringSubmatch(lastStdout.String())
	require.NotNil(t, m, "serve --dev did not print its Redis URL: %s", lastStdout.String())
	opts, err := redis.ParseURL(m[1])
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

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

// page is a headless Chromium tab with deadline-bound helpers.
type page struct {
	t   *testing.T
	ctx context.Context

	mu        sync.Mutex
	consoleEs []string
}

// newPage starts headless Chromium with a fresh profile and records console
// errors and uncaught exceptions (CSP violations show up there). The browser
// is stopped, and waited for, when the test ends, before the profile is
// removed.
func newPage(t *testing.T) *page {
	t.Helper()
	bin := chromium(t)
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
	p := &page{t: t, ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				p.mu.Lock()
				p.consoleEs = append(p.consoleEs, m.String())
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// consoleErrors returns the console errors seen so far.
func (p *page) consoleErrors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.consoleEs)
}

// testid selects the element with that data-testid.
func testid(id string) chromedp.CSS { return chromedp.CSS(`[data-testid="` + id + `"]`) }

// until polls a JS predicate in the page until it holds or the deadline passes.
func (p *page) until(what, js string) {
	p.t.Helper()
	_, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](js,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		p.screenshot(failureShotPath)
	}
	require.NoError(p.t, err, "waiting for %s (page: %s)", what, failureShotPath)
}

// screenshot saves a full-page PNG of the page at path.
func (p *page) screenshot(path string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(p.t, err, "screenshot")
	require.NoError(p.t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(p.t, os.WriteFile(path, shot, 0o644))
}

// do runs browser steps with a deadline.
func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	require.NoError(p.t, chromedp.Do(ctx, steps...), what)
}

// click clicks a button, again if a re-render replaced it in between.
func (p *page) click(what string, sel chromedp.CSS) {
	p.t.Helper()
	deadline := time.Now().Add(browserWait)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, time.Until(deadline))
		err := chromedp.Do(ctx, chromedp.Click(sel))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "find node") || time.Now().After(deadline) {
			require.NoError(p.t, err, "click %s", what)
			return
		}
	}
}

// text returns the text content of the element with that data-testid.
func (p *page) text(id string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.TextContent(testid(id)))
	require.NoError(p.t, err, "text of %s", id)
	return s
}

// eval evaluates a JS expression in the page.
func eval[T any](p *page, js string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](js))
	require.NoError(p.t, err, "evaluate %s", js)
	return v
}

// chips is a JS expression listing the node IDs holding a group, as its
// map cell names them.
func chips(group string) string {
	return `((document.querySelector('[data-testid="map-cell-` + group + `"]') || {dataset: {}}).dataset.holders || '').split(',').filter(Boolean)`
}

// onMap is a JS expression: whether any map cell names node id.
func onMap(id string) string {
	return `[...document.querySelectorAll('.cell[data-holders]')].some(c => c.dataset.holders.split(',').includes('` + id + `'))`
}

// groupAction opens a group's row menu and picks one of its actions
// (edit, history, suspend, resume, retire, delete).
func (p *page) groupAction(group, action string) {
	p.t.Helper()
	p.click("menu of "+group, testid("group-menu-"+group))
	p.click(action+" "+group, testid("group-"+action+"-"+group))
}

// devRegistry opens the registry of the in-memory Redis a `serve --dev`
// printed on stdout, to check what the UI wrote.
func devRegistry(t *testing.T, stdout string) *registry.Registry {
	t.Helper()
	m := devRedisLine.FindStringSubmatch(stdout)
	require.NotNil(t, m, "serve --dev did not print its Redis URL: %s", stdout)
	opts, err := redis.ParseURL(m[1])
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return registry.New(rdb)
}

// TestBrowserUI drives the web UI in headless Chromium against the real
// `allot serve --dev` (in-memory Redis, sample groups, six demo nodes that
// are real clients): add a group (secret masked), edit it keeping the
// secret, roll back, preview an import, stop the demo node holding the new
// group and see the group move to a highlighted node, retire the group, and
// keep a screenshot. Any console error or CSP violation fails it.
func TestBrowserUI(t *testing.T) {
	p := newPage(t)
	url, _, stop := startServe(t, testEnv, "--dev", "--listen", "127.0.0.1:0", "--demo-nodes", "6")
	reg := devRegistry(t, lastStdout.String())
	ctx := t.Context()

	// Load: live events, the dev panel, the sample groups on the map. Six
	// nodes over search-a (w1), search-b (w2), llm-exclusive (max 1) and
	// maps-a (w1): one each, the two left to search-b.
	p.do("load", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url+"/"))
	p.until("live event stream", `document.querySelector('[data-testid="live"]').dataset.live === "true"`)
	p.until("dev panel with 6 running nodes", `!document.querySelector('[data-testid="dev-panel"]').hidden &&
		document.querySelectorAll('[data-testid^="dev-node-"][data-running="true"]').length === 6`)
	p.until("sample groups held 1/3/1/1", chips("search-a")+`.length === 1 && `+chips("search-b")+`.length === 3 && `+
		chips("llm-exclusive")+`.length === 1 && `+chips("maps-a")+`.length === 1`)
	p.until("secrets at rest said plainly", `document.querySelector('[data-testid="secrets-at-rest"]').textContent === "plain text in Redis"`)

	// Add a group through the dialog: it takes one node from search-b.
	p.do("add group",
		chromedp.Click(testid("btn-add-group")),
		chromedp.SendKeys(testid("f-name"), "alpha"),
		chromedp.SendKeys(testid("f-quota"), "600/m"),
		chromedp.SetValue(testid("f-config"), "api_key=sk-live-0123456789abcdef\nregion=eu"),
		chromedp.SendKeys(testid("f-secrets"), "api_key"),
		chromedp.Click(testid("dlg-group-submit")))
	p.until("alpha on 1 node, search-b down to 2", chips("alpha")+`.length === 1 && `+chips("search-b")+`.length === 2`)
	p.until("alpha row", `!!document.querySelector('[data-testid="group-row-alpha"]')`)
	row := p.text("group-row-alpha")
	assert.Contains(t, row, "api_key=****cdef", "secret shown masked")
	assert.NotContains(t, row, "sk-live", "secret value reached the page")
	assert.Contains(t, row, "600/m", "alpha's one node has its whole quota")
	assert.Contains(t, p.text("group-row-search-b"), "100/s", "per-node share of 200/s over 2 nodes")

	// Edit alpha keeping the masked secret line as it is: the real value stays.
	p.groupAction("alpha", "edit")
	p.do("edit alpha",
		chromedp.SetValue(testid("f-config"), "api_key=****cdef\nregion=us"),
		chromedp.Click(testid("dlg-group-submit")))
	p.until("alpha v2 in the table", `/region=us/.test(document.querySelector('[data-testid="group-row-alpha"]').textContent)`)
	g, err := reg.Get(ctx, "alpha")
	require.NoError(t, err)
	assert.Equal(t, int64(2), g.Version)
	assert.Equal(t, map[string]string{"api_key": "sk-live-0123456789abcdef", "region": "us"}, g.Config)

	// Roll back to v1 from the history dialog.
	p.groupAction("alpha", "history")
	p.until("history rows", `!!document.querySelector('[data-testid="rollback-v1"]')`)
	p.click("rollback", testid("rollback-v1"))
	p.until("v3 current", `!!document.querySelector('[data-testid="history-v3"].current')`)
	p.do("close history", chromedp.Click(chromedp.CSS(`[data-testid="dlg-history"] [data-close]`)))
	g, err = reg.Get(ctx, "alpha")
	require.NoError(t, err)
	assert.Equal(t, int64(3), g.Version)
	assert.Equal(t, map[string]string{"api_key": "sk-live-0123456789abcdef", "region": "eu"}, g.Config)

	// Import preview (dry run) shows the diff and writes nothing.
	p.do("import preview",
		chromedp.Click(testid("btn-import")),
		chromedp.SetValue(testid("import-text"), "groups:\n  - name: gamma\n    weight: 2\n"),
		chromedp.Click(testid("import-preview")))
	p.until("diff", `/add gamma/.test((document.querySelector('[data-testid="diff-gamma"]') || {}).textContent || '')`)
	p.do("close import", chromedp.Click(chromedp.CSS(`[data-testid="dlg-import"] [data-close]`)))
	_, err = reg.Get(ctx, "gamma")
	require.ErrorIs(t, err, registry.ErrNotFound, "a dry run wrote gamma")

	// Stop the demo node holding alpha, as a crash: once its TTL runs out it
	// is reaped and one of search-b's two nodes moves to alpha, highlighted.
	victim := eval[string](p, chips("alpha")+`[0]`)
	searchB := eval[[]string](p, chips("search-b"))
	p.click("stop "+victim, testid("dev-stop-"+victim))
	p.until("stopped badge", `document.querySelector('[data-testid="dev-node-`+victim+`"]').dataset.running === "false"`)
	p.until(victim+" gone from the map, alpha on a highlighted node from search-b",
		`(() => { const a = `+chips("alpha")+`, b = `+chips("search-b")+`;
		return !`+onMap(victim)+` && a.length === 1 && b.length === 1 &&
			document.querySelector('[data-testid="map-cell-alpha"]').dataset.moved === "true"; })()`)
	moved := eval[string](p, chips("alpha")+`[0]`)
	assert.Contains(t, searchB, moved, "alpha moved to a node that held search-b")

	// Retire alpha: confirm, then it drains to retired and leaves the map;
	// search-b gets its second node back.
	p.groupAction("alpha", "retire")
	p.click("confirm", testid("confirm-ok"))
	p.until("alpha retired", `(document.querySelector('[data-testid="group-row-alpha"] [data-testid="state"]') || {}).textContent === "retired"`)
	p.until("alpha off the map, search-b on 2 nodes", `!document.querySelector('[data-testid="map-cell-alpha"]') && `+chips("search-b")+`.length === 2`)
	g, err = reg.Get(ctx, "alpha")
	require.NoError(t, err)
	assert.Equal(t, registry.Retired, g.State)

	p.screenshot(screenshotPath)
	assert.Empty(t, p.consoleErrors(), "browser console errors (CSP violations show up here)")

	// Every write above went through the browser-safety checks (same
	// origin, JSON or YAML). They are on: the same page sending text/plain
	// is refused.
	assert.Equal(t, 415, evalAsync[int](p, `fetch('/v1/rebalance', {method: 'POST', body: '{}', headers: {'Content-Type': 'text/plain'}}).then(r => r.status)`))
	assert.Equal(t, 200, evalAsync[int](p, `fetch('/v1/rebalance', {method: 'POST', body: '{}', headers: {'Content-Type': 'application/json'}}).then(r => r.status)`))

	// A page of another origin fires what a form or a no-cors fetch can
	// send without a preflight: a text/plain import with prune, a scheduled
	// delete. The pool is untouched.
	before, err := reg.List(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, before)
	attackPage(t, p, url)
	after, err := reg.List(ctx)
	require.NoError(t, err)
	assert.Len(t, after, len(before), "a page of another origin changed the pool")
	sched, err := reg.Schedules(ctx)
	require.NoError(t, err)
	assert.Empty(t, sched, "a page of another origin scheduled a change")

	assert.Equal(t, exitOK, stop())
}

// evalAsync evaluates a JS expression that yields a promise and returns
// what it resolves to.
func evalAsync[T any](p *page, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	require.NoError(p.t, err, "evaluate %s", js)
	return v
}

// attackPage loads, in p, a page of another origin that sends the writes a
// hostile web site would send to the allot server at target, and waits
// until they have been answered.
func attackPage(t *testing.T, p *page, target string) {
	t.Helper()
	page := `<!doctype html><title>attack</title><script>
const t = ` + strconv.Quote(target) + `;
Promise.allSettled([
  fetch(t + '/v1/import?prune=true', {method: 'POST', mode: 'no-cors', body: '{"groups":[]}'}),
  fetch(t + '/v1/import?prune=true', {method: 'POST', mode: 'no-cors', body: '{"groups":[]}', headers: {'Content-Type': 'text/plain'}}),
  fetch(t + '/v1/schedule', {method: 'POST', mode: 'no-cors', body: '{"group":"search-a","op":"delete","at":"1s"}'}),
  fetch(t + '/v1/groups/search-a', {method: 'DELETE', mode: 'no-cors'}),
]).then(() => { document.title = 'done'; });
</script>`
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, page)
	}))
	t.Cleanup(evil.Close)
	p.do("attack page", chromedp.Navigate(evil.URL+"/"))
	p.until("attack sent", `document.title === 'done'`)
}

// TestBrowserToken checks the token flow on `allot serve --dev` with
// ALLOT_ADMIN_TOKEN set: the API answers 401, the UI asks for the token
// once, keeps it for the tab and goes live.
func TestBrowserToken(t *testing.T) {
	const token = "admin-secret-0123456789"
	p := newPage(t)
	getenv := func(k string) string {
		if k == "ALLOT_ADMIN_TOKEN" {
			return token
		}
		return testEnv(k)
	}
	url, _, stop := startServe(t, getenv, "--dev", "--listen", "127.0.0.1:0", "--demo-nodes", "0")
	assert.Equal(t, 401, getJSON(t, url+"/v1/status", nil))

	p.do("load", chromedp.Navigate(url+"/"))
	p.until("token dialog", `document.querySelector('[data-testid="dlg-token"]').open`)
	p.do("enter token",
		chromedp.SendKeys(testid("f-token"), token),
		chromedp.Click(chromedp.CSS(`#form-token button[type="submit"]`)))
	p.until("live with the token", `document.querySelector('[data-testid="live"]').dataset.live === "true" &&
		!!document.querySelector('[data-testid="group-row-search-a"]') && !document.querySelector('[data-testid="dlg-token"]').open`)
	assert.Equal(t, token, eval[string](p, `sessionStorage.getItem("allot.token")`))
	// The calls made before the token was given fail with 401, which
	// Chromium logs; nothing else may.
	errs := slices.DeleteFunc(p.consoleErrors(), func(s string) bool { return strings.Contains(s, "status of 401") })
	assert.Empty(t, errs, "browser console errors (CSP violations show up here)")
	assert.Equal(t, exitOK, stop())
}
