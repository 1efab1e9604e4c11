package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

func TestGroupSuspendResume(t *testing.T) {
	url := redistest.Start(t).URL()
	mustRun(t, url, "group", "add", "k1", "--secret", "api_key="+secretValue, "--eject-after", "5/30s")
	mustRun(t, url, "group", "add", "k2")

	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "group", "get", "k1", "-o", "json")), &doc))
	assert.Equal(t, "5/30s", doc["eject_after"])
	health, ok := doc["health"].(map[string]any)
	require.True(t, ok, "group JSON has health: %v", doc)
	assert.Equal(t, "active", health["state"])
	assert.Equal(t, 0.0, health["failures"])

	// Bad input: a usage error, nothing written.
	_, errOut, code := runCLI(t, url, "group", "update", "k1", "--eject-after", "often")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "invalid --eject-after")
	_, errOut, code = runCLI(t, url, "group", "suspend", "k1", "--reason", strings.Repeat("r", 201))
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "at most 200")
	_, errOut, code = runCLI(t, url, "group", "suspend", "nope")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, "allot: group \"nope\" not found (see 'allot group list')\n", errOut)

	out := mustRun(t, url, "group", "update", "k2", "--eject-after", "0")
	assert.Contains(t, out, "updated (version 2)")

	out = mustRun(t, url, "group", "suspend", "k1", "--reason", "credit ran out")
	assert.Contains(t, out, `group "k1" suspended`)
	assert.Contains(t, out, "credit ran out")
	assert.NotContains(t, out, secretValue)
	_, errOut, code = runCLI(t, url, "group", "suspend", "k1")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "already suspended")

	out = mustRun(t, url, "group", "list")
	assert.Regexp(t, `(?m)^k1\s+suspended: credit ran out`, out)
	out = mustRun(t, url, "status")
	assert.Regexp(t, `(?m)^k1\s+suspended: credit ran out`, out)
	out = mustRun(t, url, "group", "get", "k1")
	assert.Contains(t, out, "until 'allot group resume'")

	// A document copied from `group get -o yaml` (health and all) still adds.
	mustRun(t, url, "group", "suspend", "k2")
	y := mustRun(t, url, "group", "get", "k2", "-o", "yaml")
	assert.Contains(t, y, "state: suspended")
	_, errOut, code = runCLIContext(t.Context(), url, strings.ReplaceAll(y, "k2", "k3"), "group", "add", "k3", "--from-file", "-")
	assert.Equal(t, 0, code, errOut)
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "group", "get", "k3", "-o", "json")), &doc))
	assert.Equal(t, "active", doc["state"])
	assert.Equal(t, "0", doc["eject_after"])

	out = mustRun(t, url, "group", "resume", "k1")
	assert.Contains(t, out, `group "k1" resumed`)
	out = mustRun(t, url, "group", "list")
	assert.Regexp(t, `(?m)^k1\s+active\s`, out)
}

func TestHealthState(t *testing.T) {
	now := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    *registry.Health
		want string
	}{
		{nil, "active"},
		{&registry.Health{State: registry.Active}, "active"},
		{&registry.Health{State: registry.Active, CoolingUntil: now.Add(12 * time.Second)}, "active (cooling 12s)"},
		{&registry.Health{State: registry.Active, CoolingUntil: now.Add(-time.Second)}, "active"},
		{&registry.Health{State: registry.Suspended, Reason: "HTTP 401 Unauthorized", NextProbe: now.Add(5 * time.Minute)}, "suspended, probe in 5m: HTTP 401 Unauthorized"},
		{&registry.Health{State: registry.Suspended}, "suspended"},
		{&registry.Health{State: registry.Probing}, "probing"},
	} {
		assert.Equal(t, tc.want, healthState("active", tc.h, now))
	}
}

func TestEventLineShowsReason(t *testing.T) {
	ev := registry.Event{Type: registry.EventGroupSuspended, Group: "k1", Node: "n1", By: "node", Version: 2,
		Reason: "HTTP 401 Unauthorized", At: time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)}
	assert.Contains(t, eventLine(ev), ` group=k1 node=n1 version=2 by=node reason="HTTP 401 Unauthorized"`)
}

// TestGroupCoolClear: `group cool --clear` ends the cooldown only; `group
// resume` ends it too.
func TestGroupCoolClear(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	reg := registry.New(s.Client(t))
	mustRun(t, url, "group", "add", "k1")
	mustRun(t, url, "group", "add", "k2")
	cool := func(name string) {
		t.Helper()
		// An operator's cooldown: not capped by max_cooldown.
		_, err := reg.Cool(t.Context(), name, time.Hour, "test")
		require.NoError(t, err)
		h, err := reg.HealthOf(t.Context(), name)
		require.NoError(t, err)
		require.True(t, h.Cooling(time.Now()))
	}
	cool("k1")
	mustRun(t, url, "group", "suspend", "k1")

	_, errOut, code := runCLI(t, url, "group", "cool", "k1")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "give --clear")
	out := mustRun(t, url, "group", "cool", "k1", "--clear")
	assert.Contains(t, out, `group "k1": cooldown cleared`)
	h, err := reg.HealthOf(t.Context(), "k1")
	require.NoError(t, err)
	assert.False(t, h.Cooling(time.Now()))
	assert.Equal(t, registry.Suspended, h.State, "the suspension stays")
	_, errOut, code = runCLI(t, url, "group", "cool", "nope", "--clear")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, `group "nope" not found`)

	cool("k2")
	mustRun(t, url, "group", "resume", "k2")
	h, err = reg.HealthOf(t.Context(), "k2")
	require.NoError(t, err)
	assert.False(t, h.Cooling(time.Now()), "resume clears the cooldown")
}
