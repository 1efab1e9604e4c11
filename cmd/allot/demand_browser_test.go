package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// TestBrowserDemand: a node's demand shows in the nodes table, and the
// group it holds shows its holders' summed demand against its quota.
func TestBrowserDemand(t *testing.T) {
	p := newPage(t)
	url, _, stop := startServe(t, testEnv, "--dev", "--listen", "127.0.0.1:0", "--demo-nodes", "0")
	rdb := devRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	// g alone: the dev samples would share the node's demand with it.
	reg := registry.New(rdb)
	samples, err := reg.List(ctx)
	require.NoError(t, err)
	for _, g := range samples {
		require.NoError(t, reg.Delete(ctx, g.Name, "test"))
	}
	q := "600/m"
	_, err = reg.Add(ctx, "g", registry.Change{Quota: &q}, "test")
	require.NoError(t, err)

	cfg, _, err := heartbeat.LoadConfig(ctx, rdb, "")
	require.NoError(t, err)
	tr, err := heartbeat.New(rdb, "", cfg)
	require.NoError(t, err)
	beat := heartbeat.Beat{Node: "hot", Session: heartbeat.NewSession(), IP: "10.0.0.1", Demand: &heartbeat.Demand{Calls: 12.5, Tokens: 300}}
	_, err = tr.Beat(ctx, beat)
	require.NoError(t, err)
	var beating sync.WaitGroup
	beating.Go(func() { // the node stays live while the page looks
		tk := time.NewTicker(cfg.Interval / 2)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				_, _ = tr.Beat(ctx, beat)
			}
		}
	})
	t.Cleanup(func() { cancel(); beating.Wait() })

	p.do("load", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url+"/"))
	p.until("the node's demand", `(() => { const r = document.querySelector('[data-testid="node-row-hot"] [data-testid="node-demand"]');
		return !!r && r.textContent === "12.5/s · 300 tok/s"; })()`)
	p.until("the group's demand against its quota", `(() => { const d = document.querySelector('[data-testid="group-row-g"] [data-testid="group-demand"]');
		return !!d && d.textContent.includes("12.5/s · 300 tok/s (125%)") && d.classList.contains("over"); })()`)
	assert.Empty(t, p.consoleErrors(), "browser console errors")
	assert.Equal(t, exitOK, stop())
}

// TestBrowserNoLendMark: a group marked lend: false says so in its row of
// the groups table; a lendable one does not.
func TestBrowserNoLendMark(t *testing.T) {
	p := newPage(t)
	url, _, stop := startServe(t, testEnv, "--dev", "--listen", "127.0.0.1:0", "--demo-nodes", "0")
	rdb := devRedis(t)
	reg := registry.New(rdb)
	samples, err := reg.List(t.Context())
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(samples), 2)
	kept, lent := samples[0].Name, samples[1].Name
	no := false
	_, err = reg.Update(t.Context(), kept, registry.Change{Lend: &no}, "test")
	require.NoError(t, err)

	p.do("load", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url+"/"))
	p.until("the no-lend mark", `(() => { const r = document.querySelector('[data-testid="group-row-`+kept+`"] [data-testid="group-no-lend"]');
		return !!r && r.textContent === "no lend"; })()`)
	p.until("no mark on a lendable group", `(() => { const r = document.querySelector('[data-testid="group-row-`+lent+`"]');
		return !!r && !r.querySelector('[data-testid="group-no-lend"]'); })()`)
	assert.Empty(t, p.consoleErrors(), "browser console errors")
	assert.Equal(t, exitOK, stop())
}
