package main

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
)

// TestBrowserHealth drives the key health parts of the web UI against
// `allot serve --dev`: a throttled group shows its cooldown counting down, a
// group suspended with the button leaves the map with its reason shown, and
// Resume brings it back.
func TestBrowserHealth(t *testing.T) {
	p := newPage(t)
	url, _, stop := startServe(t, testEnv, "--dev", "--listen", "127.0.0.1:0", "--demo-nodes", "6")
	reg := devRegistry(t, lastStdout.String())
	ctx := t.Context()

	p.do("load", chromedpLoad(url)...)
	p.until("maps-a held by one node", chips("maps-a")+`.length === 1`)

	// A 429 reported for search-a: the row counts the shared cooldown down.
	_, err := reg.Cool(ctx, "search-a", 90*time.Second, "test")
	require.NoError(t, err)
	p.until("cooling countdown", `/cooling 1m[23]\ds/.test((document.querySelector('[data-testid="group-row-search-a"] [data-testid="group-cooling"]') || {}).textContent || '')`)

	// Suspend maps-a with the button: red badge, reason, off the map.
	p.groupAction("maps-a", "suspend")
	p.click("confirm", testid("confirm-ok"))
	p.until("maps-a suspended", `(document.querySelector('[data-testid="group-row-maps-a"] [data-testid="state"]') || {}).textContent === "suspended"`)
	p.until("nobody holds maps-a", chips("maps-a")+`.length === 0`)
	assert.Contains(t, p.text("group-row-maps-a"), "suspended in the web UI")
	assert.Contains(t, p.text("group-row-maps-a"), "until resumed")
	h, err := reg.HealthOf(ctx, "maps-a")
	require.NoError(t, err)
	assert.Equal(t, registry.Suspended, h.State)

	p.groupAction("maps-a", "resume")
	p.until("maps-a active again", `(document.querySelector('[data-testid="group-row-maps-a"] [data-testid="state"]') || {}).textContent === "active"`)
	p.until("maps-a held again", chips("maps-a")+`.length === 1`)

	assert.Empty(t, p.consoleErrors(), "browser console errors (CSP violations show up here)")
	assert.Equal(t, exitOK, stop())
}

func chromedpLoad(url string) []chromedp.Action[chromedp.Void] {
	return []chromedp.Action[chromedp.Void]{chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url + "/")}
}
