package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

// golden compares got with testdata/NAME.golden (rewritten with -update)
// and checks that every line fits 80 columns.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	assert.Equal(t, string(want), got)
	for _, l := range strings.Split(got, "\n") {
		assert.LessOrEqual(t, utf8.RuneCountInString(l), 80, "line too wide: %q", l)
	}
}

func render(t *testing.T, tb table) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, writeTable(&b, tb))
	return b.String()
}

var (
	goldenNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	weight2   = 2.0
	maxNodes1 = 1
	quota     = "1200/m"
)

func goldenGroups() []registry.Group {
	return []registry.Group{
		{
			Name: "openai-1", Version: 7, State: registry.Active, Weight: 2, Quota: "600/m",
			Config:     map[string]string{"api_key": "****wxyz", "model": "gpt-5", "endpoint": "https://api.openai.com/v1"},
			SecretKeys: []string{"api_key"},
			Created:    goldenNow.Add(-72 * time.Hour), Updated: goldenNow.Add(-90 * time.Second), UpdatedBy: "cli:ana@ops-1",
			Lend: true,
		},
		{
			Name: "anthropic-eu.2", Version: 1, State: registry.Draining, Weight: 1, MaxNodes: 1,
			Config:  map[string]string{},
			Created: goldenNow.Add(-3 * time.Hour), Updated: goldenNow.Add(-3 * time.Hour), UpdatedBy: "cli:bo@laptop",
			DrainBy: goldenNow.Add(4 * time.Minute), Lend: true,
		},
	}
}

func TestGoldenTables(t *testing.T) {
	// Tables show times in the local zone; pin it.
	local := time.Local
	time.Local = time.UTC
	defer func() { time.Local = local }()
	groups := goldenGroups()
	views := []allocator.GroupView{
		{Group: groups[1], Nodes: []string{"node-c"}},
		{Group: groups[0], Nodes: []string{"node-a", "node-b"}},
	}
	golden(t, "group_list", render(t, table{header: groupHeader, rows: groupRows(views, goldenNow)}))
	golden(t, "group_get", render(t, table{rows: groupDetailRows(views[1], goldenNow)}))
	golden(t, "group_get_draining", render(t, table{rows: groupDetailRows(views[0], goldenNow)}))

	v6 := groups[0]
	v6.Version, v6.Weight, v6.Quota = 6, 1, ""
	v6.Config = map[string]string{"api_key": "****abcd", "model": "gpt-4o", "old": "x"}
	v6.Updated, v6.UpdatedBy = goldenNow.Add(-26*time.Hour), "cli:ana@ops-1"
	v5 := v6
	v5.Version, v5.SecretKeys = 5, nil
	v5.Updated, v5.UpdatedBy = goldenNow.Add(-50*time.Hour), "rebalancer"
	golden(t, "group_history", render(t, table{header: historyHeader, rows: historyRows([]registry.Group{groups[0], v6, v5}, goldenNow), fit: true}))

	st := allocator.Status{
		Epoch: 42, Balanced: false, Waiting: 1,
		Groups: []allocator.GroupStatus{
			{Name: "anthropic-eu.2", State: "draining", Weight: 1, MaxNodes: 1, Target: 0, Nodes: []string{"node-c"}, Share: 1},
			{Name: "openai-1", State: "active", Weight: 2, Quota: "600/m, 90000 tokens/m", Target: 3, Nodes: []string{"node-a", "node-b"}, Share: 0.5, Used: 0.42,
				Demand: heartbeat.Demand{Calls: 13.5, Tokens: 750}, Wanted: 1.35},
			{Name: "spare", State: "active", Weight: 1, Target: 1, Nodes: []string{}},
		},
		Nodes: []allocator.NodeStatus{
			{ID: "node-a", IP: "10.0.0.1", Groups: []string{"openai-1"}, LastSeen: goldenNow.Add(-1500 * time.Millisecond),
				Demand: &heartbeat.Demand{Calls: 12, Tokens: 600}},
			{ID: "node-b", IP: "10.0.0.2", Groups: []string{"openai-1"}, LastSeen: goldenNow.Add(-400 * time.Millisecond),
				Demand: &heartbeat.Demand{Calls: 1.5, Tokens: 150}},
			{ID: "node-c", IP: "10.0.0.3", Groups: []string{"anthropic-eu.2"}, LastSeen: goldenNow.Add(-5 * time.Second)},
			{ID: "node-d", IP: "", Groups: []string{}, LastSeen: goldenNow.Add(-2 * time.Second), Demand: &heartbeat.Demand{}},
		},
		Standby:       []string{"node-d"},
		SecretsAtRest: registry.AtRestPlaintext,
	}
	golden(t, "status", render(t, statusTable(st)))
	golden(t, "node_list", render(t, table{header: nodeHeader, rows: nodeRows(st.Nodes, goldenNow)}))

	sched := []registry.Scheduled{
		maskSchedule(registry.Scheduled{
			ID: "s-1", At: goldenNow.Add(10 * time.Minute), Group: "openai-1", Op: registry.OpUpdate,
			Change: registry.Change{Set: map[string]string{"model": "gpt-5.1", "api_key": "sk-live-123456789"}, Unset: []string{"old"}, Weight: &weight2, Quota: &quota},
		}, []string{"api_key"}, false),
		{ID: "s-2", At: goldenNow.Add(25 * time.Hour), Group: "openai-1", Op: registry.OpRetire, Drain: 10 * time.Minute},
		{ID: "s-3", At: goldenNow.Add(time.Hour), Group: "anthropic-eu.2", Op: registry.OpUpdate, Change: registry.Change{MaxNodes: &maxNodes1}},
	}
	golden(t, "schedule_list", render(t, table{header: scheduleHeader, rows: scheduleRows(sched), fit: true}))
	golden(t, "event", eventLine(registry.Event{ID: "1772366400000-0", Type: "group.updated", Group: "openai-1", Version: 8, By: "cli:ana@ops-1", At: goldenNow})+"\n"+
		eventLine(registry.Event{ID: "1772366400001-0", Type: "assignment", Epoch: 43, By: "rebalancer", At: goldenNow.Add(time.Millisecond)})+"\n")
	golden(t, "rebalance", strings.Join(rebalanceLines(allocator.Summary{Epoch: 43, Changed: true, Moved: 2, Reaped: []string{"node-x"}, Retired: []string{"old"}, Applied: 1, TookMS: 3.25}), "\n")+"\n")
}

func TestGoldenImportDiff(t *testing.T) {
	have := goldenGroups()
	have[0].Config["api_key"] = "sk-live-000000wxyz"
	f := registry.ExportPool(have, false)
	w := 3.0
	f.Groups[0].Weight = &w
	f.Groups[0].Config["model"] = "gpt-5.1"
	f.Groups[0].Config["region"] = "eu"
	delete(f.Groups[0].Config, "endpoint")
	f.Groups = append(f.Groups[:1], registry.PoolGroup{Name: "mistral-1", Quota: "60/s", Config: map[string]string{"k": "v"}, SecretKeys: []string{"k"}})
	p, err := registry.PlanImport(f, have, true)
	require.NoError(t, err)
	golden(t, "import_diff", strings.Join(importLines(p), "\n")+"\n")
}

func TestYAMLKeepsJSONNamesAndOrder(t *testing.T) {
	v := allocator.GroupView{Group: goldenGroups()[0], Nodes: []string{"n1"}}
	b, err := toYAML(v)
	require.NoError(t, err)
	var n yaml.Node
	require.NoError(t, yaml.Unmarshal(b, &n))
	var keys []string
	for i := 0; i < len(n.Content[0].Content); i += 2 {
		keys = append(keys, n.Content[0].Content[i].Value)
	}
	assert.Equal(t, []string{"name", "version", "state", "weight", "max_nodes", "quota", "limits", "config", "secret_keys",
		"created", "updated", "updated_by", "eject_after", "lend", "nodes"}, keys)
	assert.Contains(t, string(b), "  api_key: '****wxyz'\n")
	assert.Contains(t, string(b), "secret_keys:\n  - api_key\n")
}

// TestEventLineColumns: every known event type keeps the columns aligned.
func TestEventLineColumns(t *testing.T) {
	for _, typ := range eventTypes {
		line := eventLine(registry.Event{Type: typ, Group: "g", At: goldenNow})
		assert.Equal(t, len("2006-01-02 15:04:05 ")+eventTypeWidth+len(" group=g"), len(line), line)
	}
}

func TestParseAt(t *testing.T) {
	now := goldenNow
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{in: "+10m", want: now.Add(10 * time.Minute)},
		{in: "+1h30m", want: now.Add(90 * time.Minute)},
		{in: "2026-03-01T13:00:00+01:00", err: "is in the past"},
		{in: "2026-03-01T14:00:00+01:00", want: now.Add(time.Hour)},
		{in: "2026-03-01T12:00:00Z", err: "is in the past"},
		{in: "+0s", err: "not in the future"},
		{in: "10m", want: now.Add(10 * time.Minute)},
		{in: "+soon", err: "want an RFC 3339 time"},
		{in: "", err: "no time given"},
		{in: "+9000h", err: "more than a year ahead"},
	} {
		got, err := parseAt(tc.in, now)
		if tc.err != "" {
			require.Error(t, err, tc.in)
			assert.Contains(t, err.Error(), tc.err)
			assert.Equal(t, exitUsage, exitCode(err))
			continue
		}
		require.NoError(t, err, tc.in)
		assert.True(t, tc.want.Equal(got), "%s: %v != %v", tc.in, tc.want, got)
	}
}

func TestParseGroupFile(t *testing.T) {
	c, err := parseGroupFile([]byte("a: 1\nb: x y\nc: true\n"), "g")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "1", "b": "x y", "c": "true"}, c.Set)
	assert.Nil(t, c.Weight)

	c, err = parseGroupFile([]byte(`{"name":"g","version":3,"nodes":["n"],"weight":2,"config":{"k":"v"},"secret_keys":["k"],"quota":"5/s"}`), "g")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k": "v"}, c.Set)
	assert.Equal(t, []string{"k"}, c.Secret)
	assert.Equal(t, 2.0, *c.Weight)
	assert.Equal(t, "5/s", *c.Quota)

	for in, want := range map[string]string{
		"a: [1, 2]\n":                   `line 1: config value of "a" must be a string`,
		"- a\n":                         "want a map of config values or a group document",
		"config: {a: b}\nstate: gone\n": `state "gone": a new group is always active`,
		"config: {a: b}\nextra: 1\n":    "line 2: field extra not found",
	} {
		_, err := parseGroupFile([]byte(in), "g")
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), want)
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "now", 500 * time.Millisecond: "now", 59 * time.Second: "59s ago", 61 * time.Minute: "1h ago",
		47 * time.Hour: "47h ago", 72 * time.Hour: "3d ago", -10 * time.Minute: "in 10m",
	} {
		assert.Equal(t, want, age(goldenNow, goldenNow.Add(-d)), d)
	}
	assert.Equal(t, "-", age(goldenNow, time.Time{}))
}

func TestVersionFallsBackToModuleVersion(t *testing.T) {
	installed := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}
	assert.Equal(t, "v1.4.0", versionOf("dev", installed).Version, "go install …@v1.4.0, no ldflags")
	assert.Equal(t, "v2.0.0", versionOf("v2.0.0", installed).Version, "the ldflags stamp wins")
	devel := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}}
	v := versionOf("dev", devel)
	assert.Equal(t, "dev", v.Version)
	assert.Equal(t, "abc123", v.Commit)
	assert.Equal(t, "dev", versionOf("dev", nil).Version)
}
