package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
)

// seedPool adds a few groups covering every field.
func seedPool(t *testing.T, url string) {
	t.Helper()
	mustRun(t, url, "group", "add", "alpha", "--set", "endpoint=https://a.example.com", "--set", "port=8080",
		"--secret", "token="+secretValue, "--secret", "short=abc", "--quota", "100/s burst 20", "--weight", "2.5")
	mustRun(t, url, "group", "add", "beta", "--max-nodes", "1", "--set", "empty=")
	mustRun(t, url, "group", "add", "gamma", "--set", "x=1")
	mustRun(t, url, "group", "retire", "gamma")
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pool.yaml")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestExportImportIdentity(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	seedPool(t, url)

	out, errOut, code := runCLI(t, url, "export")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, errOut, "secret values are masked")
	assert.NotContains(t, out, secretValue)
	assert.Contains(t, out, "groups:\n  - name: alpha\n    state: active\n    weight: 2.5\n")
	assert.Contains(t, out, "port: \"8080\"")

	for _, tc := range []struct{ name, file string }{
		{"masked yaml", out},
		{"revealed yaml", mustRun(t, url, "export", "--reveal")},
		{"masked json", mustRun(t, url, "export", "-o", "json")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dumpKeys(t, s.Client(t))
			got := mustRun(t, url, "import", writeFile(t, tc.file))
			assert.Equal(t, "no changes (3 groups unchanged)\n", got)
			assert.Equal(t, before, dumpKeys(t, s.Client(t)), "an identity import writes nothing")
		})
	}
	assert.Contains(t, mustRun(t, url, "export", "--reveal"), secretValue)
}

func TestImportAppliesAndPrunes(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	seedPool(t, url)
	file := writeFile(t, `# edited export
groups:
  - name: alpha
    weight: 3
    quota: 100/s burst 20
    config:
      endpoint: https://a2.example.com
      token: "****cdef"
      short: "****"
      added: yes
    secret_keys: [short, token]
  - name: beta
    max_nodes: 2
    state: draining
    config:
      empty: ""
  - name: delta
    quota: 600/m
    config:
      key: new-secret
    secret_keys: [key]
`)
	// Dry run: the diff, and nothing written.
	before := dumpKeys(t, s.Client(t))
	out, errOut, code := runCLI(t, url, "import", file, "--dry-run", "--prune")
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, `+ delta (weight 1, quota 600/m, 1 config keys, 1 secret)
~ alpha
    weight: 2.5 → 3
    config.added: added "yes"
    config.endpoint: "https://a.example.com" → "https://a2.example.com"
    config.port: removed
~ beta
    state: active → draining
    max_nodes: 1 → 2
- gamma
1 added, 2 changed, 1 removed, 0 unchanged
dry run: nothing written
`, out)
	assert.Equal(t, before, dumpKeys(t, s.Client(t)), "a dry run writes nothing")

	var plan importReport
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "import", file, "--dry-run", "-o", "json")), &plan))
	assert.True(t, plan.DryRun)
	assert.Equal(t, []string{"delta"}, plan.Added)
	assert.Equal(t, []string{"gamma"}, plan.Kept)
	assert.Empty(t, plan.Removed)
	require.Len(t, plan.Changed, 2)
	assert.Equal(t, "config.added", plan.Changed[0].Fields[1].Field)
	assert.Nil(t, plan.Changed[0].Fields[1].Old)
	assert.Equal(t, "yes", *plan.Changed[0].Fields[1].New)

	// Without --prune gamma is kept, with a note on stderr.
	out, errOut, code = runCLI(t, url, "import", file)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, errOut, "1 groups not in "+file+" are kept (use --prune to delete them): gamma")
	assert.True(t, strings.HasSuffix(out, "applied\n"), out)

	alpha := getGroup(t, url, "alpha", true)
	assert.Equal(t, 3.0, alpha.Weight)
	assert.Equal(t, map[string]string{"endpoint": "https://a2.example.com", "token": secretValue, "short": "abc", "added": "yes"}, alpha.Config)
	assert.Equal(t, "cli:tester@"+hostname(t), alpha.UpdatedBy)
	beta := getGroup(t, url, "beta", false)
	assert.Equal(t, registry.Draining, beta.State)
	assert.Equal(t, 2, beta.MaxNodes)
	delta := getGroup(t, url, "delta", true)
	assert.Equal(t, "new-secret", delta.Config["key"])
	assert.Equal(t, []string{"key"}, delta.SecretKeys)

	// Applying again changes nothing; --prune then deletes gamma.
	assert.Equal(t, "no changes (3 groups unchanged)\n", mustRun(t, url, "import", file))
	out = mustRun(t, url, "import", file, "--prune")
	assert.Equal(t, "- gamma\n0 added, 0 changed, 1 removed, 3 unchanged\napplied\n", out)
	_, _, code = runCLI(t, url, "group", "get", "gamma")
	assert.Equal(t, exitFailure, code)

	// An empty pool file with --prune empties the pool.
	mustRun(t, url, "import", writeFile(t, "groups: []\n"), "--prune")
	assert.Equal(t, "[]\n", mustRun(t, url, "group", "list", "-o", "json"))
}

func TestImportInvalidWritesNothing(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	seedPool(t, url)
	valid := "  - name: zeta\n    config: {a: b}\n"
	for _, tc := range []struct {
		name, file, want string
	}{
		{"unknown field", "groups:\n" + valid + "  - name: eta\n    weigth: 2\n", "line 5: field weigth not found; nothing written"},
		{"wrong type", "groups:\n" + valid + "  - name: eta\n    max_nodes: many\n", "line 5: cannot unmarshal !!str `many` into int"},
		{"bad yaml", "groups:\n  - name: [\n", "did not find expected node content"},
		{"no groups", "pools: []\n", "field pools not found"},
		{"empty", "", "the file is empty"},
		{"null groups", "groups:\n", `no "groups" list`},
		{"two documents", "groups: []\n---\ngroups: []\n", "line 2: a second YAML document"},
		{"duplicate key", "groups:\n  - name: a\n    name: b\n", `mapping key "name" already defined`},
		{"bad name", "groups:\n" + valid + "  - name: Bad\n", `line 4: group "Bad": invalid name`},
		{"duplicate group", "groups:\n" + valid + "  - name: zeta\n", `line 4: group "zeta": listed twice (first at line 2)`},
		{"bad weight", "groups:\n" + valid + "  - name: eta\n    weight: -2\n", `group "eta": invalid weight -2`},
		{"bad max_nodes", "groups:\n" + valid + "  - name: eta\n    max_nodes: -1\n", "invalid max_nodes -1"},
		{"bad quota", "groups:\n" + valid + "  - name: eta\n    quota: fast\n", `invalid quota "fast"`},
		{"bad state", "groups:\n" + valid + "  - name: eta\n    state: paused\n", `invalid state "paused"`},
		{"secret not in config", "groups:\n" + valid + "  - name: eta\n    secret_keys: [k]\n", `secret key "k" is not a config key`},
		{"masked secret of a new group", "groups:\n" + valid + "  - name: eta\n    config: {k: '****'}\n    secret_keys: [k]\n", `config.k holds a masked secret`},
		{"masked secret that matches nothing", "groups:\n" + valid + "  - name: alpha\n    config: {token: '****zzzz'}\n    secret_keys: [token]\n", `config.token holds a masked secret ("****zzzz")`},
		{"un-secret", "groups:\n" + valid + "  - name: alpha\n    config: {token: x}\n", "config.token is secret in the pool and import cannot un-mark it"},
		{"retired back to active", "groups:\n" + valid + "  - name: gamma\n    state: active\n    config: {x: '1'}\n", "state draining cannot become active"},
		{"config too large", "groups:\n" + valid + "  - name: eta\n    config: {k: " + strings.Repeat("x", 70000) + "}\n", "config is 70008 bytes encoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dumpKeys(t, s.Client(t))
			file := writeFile(t, tc.file)
			out, errOut, code := runCLI(t, url, "import", file, "--prune")
			assert.Equal(t, exitFailure, code, "stdout %q", out)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tc.want)
			assert.True(t, strings.HasPrefix(errOut, "allot: "+file+": "), errOut)
			assert.True(t, strings.HasSuffix(errOut, "nothing written\n"), errOut)
			assert.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
			assert.Equal(t, before, dumpKeys(t, s.Client(t)), "nothing written")
		})
	}

	_, errOut, code := runCLI(t, url, "import", filepath.Join(t.TempDir(), "missing.yaml"))
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "missing.yaml: no such file or directory")
	assert.NotContains(t, errOut, "redis")
	// The file is read before Redis is needed: a missing file is named even
	// when Redis is away.
	_, errOut, code = runCLI(t, "redis://127.0.0.1:1", "import", "nofile.yaml")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, "allot: read nofile.yaml: no such file or directory\n", errOut)
}

func TestImportUndoesPartialWrites(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	mustRun(t, url, "group", "add", "kept", "--set", "a=1")
	mustRun(t, url, "group", "add", "raced", "--set", "a=1")

	a := newApp(env{stdout: &testlog.Buffer{}, stderr: &testlog.Buffer{}, getenv: testEnv})
	a.redisURL, a.namespace, a.timeout = url, "default", defaultTimeout
	defer a.close()
	reg, err := a.registry(t.Context())
	require.NoError(t, err)
	have, err := reg.List(t.Context())
	require.NoError(t, err)
	f := registry.Pool{Groups: []registry.PoolGroup{
		{Name: "added", Config: map[string]string{"a": "1"}},
		{Name: "kept", Config: map[string]string{"a": "2"}},
		{Name: "raced", Config: map[string]string{"a": "2"}},
	}}
	plan, err := registry.PlanImport(f, have, false)
	require.NoError(t, err)
	require.Equal(t, 3, plan.Writes())

	// Someone changes "raced" after the plan was made: its IfVersion write fails.
	mustRun(t, url, "group", "update", "raced", "--set", "b=2")
	err = a.applyImport(t.Context(), reg, plan)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `import stopped at group "raced": group "raced" was changed by someone else meanwhile`)
	assert.Contains(t, err.Error(), "the 2 writes before it were undone, the pool is as it was")

	_, _, code := runCLI(t, url, "group", "get", "added")
	assert.Equal(t, exitFailure, code, "the added group is deleted again")
	kept := getGroup(t, url, "kept", false)
	assert.Equal(t, "1", kept.Config["a"], "the updated group is rolled back")
	assert.Equal(t, int64(3), kept.Version)
	raced := getGroup(t, url, "raced", false)
	assert.Equal(t, map[string]string{"a": "1", "b": "2"}, raced.Config, "the concurrent change stands")
}

// TestImportProblemLines: every problem names the line of its group, and
// the CLI's way out. (The plan itself is tested in registry.)
func TestImportProblemLines(t *testing.T) {
	have := []registry.Group{
		{Name: "act", Version: 4, State: registry.Active, Weight: 1, Config: map[string]string{"k": "v"}, SecretKeys: []string{"k"}},
		{Name: "dra", Version: 2, State: registry.Draining, Weight: 1, Config: map[string]string{}},
	}
	f := registry.Pool{Groups: []registry.PoolGroup{{Name: "dra", State: "active"}}}
	_, err := registry.PlanImport(f, have, false)
	var pe *registry.PoolError
	require.ErrorAs(t, err, &pe)
	assert.EqualError(t, poolProblems(f, []int{7}, pe), `line 7: group "dra": state draining cannot become active (a retired or draining group never becomes active again; delete it and add it anew)`)

	f = registry.Pool{Groups: []registry.PoolGroup{
		{Name: "act", Config: map[string]string{"k": "v"}},
		{Name: "new", Config: map[string]string{"k": "****zzzz"}, SecretKeys: []string{"k"}},
		{Name: "act"},
	}}
	_, err = registry.PlanImport(f, have, false)
	require.ErrorAs(t, err, &pe)
	assert.EqualError(t, poolProblems(f, []int{2, 5, 9}, pe), `line 2: group "act": config.k is secret in the pool and import cannot un-mark it (run 'allot group update act --unset k' first, then import); `+
		`line 5: group "new": config.k holds a masked secret ("****zzzz") that matches no stored value; export with --reveal, or put the real value in the file; `+
		`line 9: group "act": listed twice (first at line 2)`)
}

// TestExportImportSchedules: export carries pending scheduled changes and
// import restores them, once.
func TestExportImportSchedules(t *testing.T) {
	src := redistest.Start(t).URL()
	mustRun(t, src, "group", "add", "g", "--secret", "api_key="+secretValue)
	mustRun(t, src, "group", "update", "g", "--set", "region=eu", "--at", "+1h")
	mustRun(t, src, "group", "retire", "g", "--at", "+2h", "--drain-timeout", "3m")
	exported := mustRun(t, src, "export")
	assert.Contains(t, exported, "schedules:")
	assert.Contains(t, exported, "region: eu")
	assert.Contains(t, exported, "drain_timeout: 3m0s")

	// Re-importing over the same pool adds nothing.
	out := mustRun(t, src, "import", writeFile(t, exported))
	assert.Contains(t, out, "scheduled changes: 0 added, 2 already pending, 0 expired (skipped)")
	assert.Len(t, listSchedules(t, src), 2)

	// Into an empty pool (secrets revealed, so the group can be created),
	// both come back.
	dst := redistest.Start(t).URL()
	out = mustRun(t, dst, "import", writeFile(t, mustRun(t, src, "export", "--reveal")))
	assert.Contains(t, out, "scheduled changes: 2 added, 0 already pending, 0 expired (skipped)")
	got := listSchedules(t, dst)
	require.Len(t, got, 2)
	assert.Equal(t, registry.OpUpdate, got[0].Op)
	assert.Equal(t, "eu", got[0].Change.Set["region"])
	assert.Equal(t, registry.OpRetire, got[1].Op)
	assert.Equal(t, 3*time.Minute, got[1].Drain)
}

func listSchedules(t *testing.T, url string) []registry.Scheduled {
	t.Helper()
	var items []registry.Scheduled
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "schedule", "list", "-o", "json", "--reveal")), &items))
	return items
}
