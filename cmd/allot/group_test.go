package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

const secretValue = "sk-0123456789abcdef"

func TestGroupLifecycle(t *testing.T) {
	url := redistest.Start(t).URL()

	out := mustRun(t, url, "group", "add", "openai-1", "--set", "model=gpt,4o", "--secret", "api_key="+secretValue,
		"--quota", "600/m", "--weight", "2", "--max-nodes", "3")
	assert.Equal(t, "group \"openai-1\" added (version 1)\n", out)

	// get: masked by default, in every format.
	for _, format := range []string{"table", "json", "yaml"} {
		out = mustRun(t, url, "group", "get", "openai-1", "-o", format)
		assert.NotContains(t, out, secretValue, format)
		assert.Contains(t, out, "****cdef", format)
		assert.Contains(t, out, "gpt,4o", format) // --set keeps commas
	}
	out = mustRun(t, url, "group", "get", "openai-1", "--reveal")
	assert.Contains(t, out, secretValue)

	// JSON and YAML carry exactly the contract's field names.
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "group", "get", "openai-1", "-o", "json")), &doc))
	for _, k := range []string{"name", "version", "state", "weight", "max_nodes", "quota", "config", "secret_keys", "nodes", "updated"} {
		assert.Contains(t, doc, k)
	}
	assert.Equal(t, "openai-1", doc["name"])
	assert.Equal(t, 2.0, doc["weight"])
	assert.Equal(t, 3.0, doc["max_nodes"])
	assert.Equal(t, "600/m", doc["quota"])
	assert.Equal(t, []any{"api_key"}, doc["secret_keys"])
	assert.Equal(t, []any{}, doc["nodes"])
	assert.Equal(t, "cli:tester@"+hostname(t), doc["updated_by"])
	var ydoc map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(mustRun(t, url, "group", "get", "openai-1", "-o", "yaml")), &ydoc))
	assert.ElementsMatch(t, keysOf(doc), keysOf(ydoc))

	// update, list, history.
	out = mustRun(t, url, "group", "update", "openai-1", "--set", "model=gpt-5", "--weight", "3", "--quota", "")
	assert.Equal(t, "group \"openai-1\" updated (version 2)\n", out)
	mustRun(t, url, "group", "add", "anthropic-1")
	out = mustRun(t, url, "group", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Regexp(t, `^NAME\s+STATE\s+VER`, lines[0])
	assert.Regexp(t, `^anthropic-1\s+active\s+1\s+1\s`, lines[1])
	assert.Regexp(t, `^openai-1\s+active\s+2\s+3\s+3\s+-\s+0\s`, lines[2])

	out = mustRun(t, url, "group", "history", "openai-1")
	assert.Contains(t, out, "weight 2→3, quota 600/m→-, ~config.model")
	assert.Contains(t, out, "created")

	// rollback restores version 1's settings as version 3.
	out = mustRun(t, url, "group", "rollback", "openai-1", "--to", "1")
	assert.Contains(t, out, "now version 3")
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "group", "get", "openai-1", "-o", "json")), &doc))
	assert.Equal(t, 2.0, doc["weight"])
	assert.Equal(t, "600/m", doc["quota"])

	_, errOut, code := runCLI(t, url, "group", "rollback", "openai-1", "--to", "99")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, "allot: group \"openai-1\" has no version 99 (see 'allot group history openai-1')\n", errOut)

	// add twice, delete, get a deleted group.
	_, errOut, code = runCLI(t, url, "group", "add", "openai-1")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, `group "openai-1" already exists`)
	assert.Equal(t, "group \"openai-1\" deleted\n", mustRun(t, url, "group", "delete", "openai-1"))
	_, errOut, code = runCLI(t, url, "group", "get", "openai-1")
	assert.Equal(t, exitFailure, code)
	assert.Equal(t, "allot: group \"openai-1\" not found (see 'allot group list')\n", errOut)
	_, _, code = runCLI(t, url, "group", "delete", "openai-1")
	assert.Equal(t, exitFailure, code)
}

func TestGroupAddFromFile(t *testing.T) {
	url := redistest.Start(t).URL()
	dir := t.TempDir()

	// A plain map of config values; flags override it.
	cfg := filepath.Join(dir, "cfg.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("endpoint: https://api.example.com\nport: 8080\nmodel: a\n"), 0o600))
	mustRun(t, url, "group", "add", "g1", "--from-file", cfg, "--set", "model=b")
	g := getGroup(t, url, "g1", true)
	assert.Equal(t, map[string]string{"endpoint": "https://api.example.com", "port": "8080", "model": "b"}, g.Config)

	// A group document, as `group get -o yaml --reveal` writes it, copied to a new name.
	mustRun(t, url, "group", "update", "g1", "--secret", "token="+secretValue, "--weight", "4", "--max-nodes", "1", "--quota", "10/s")
	doc := filepath.Join(dir, "doc.yaml")
	revealed := mustRun(t, url, "group", "get", "g1", "-o", "yaml", "--reveal")
	require.NoError(t, os.WriteFile(doc, []byte(strings.Replace(revealed, "name: g1", "name: g2", 1)), 0o600))
	mustRun(t, url, "group", "add", "g2", "--from-file", doc)
	g2 := getGroup(t, url, "g2", true)
	assert.Equal(t, 4.0, g2.Weight)
	assert.Equal(t, 1, g2.MaxNodes)
	assert.Equal(t, "10/s", g2.Quota)
	assert.Equal(t, []string{"token"}, g2.SecretKeys)
	assert.Equal(t, secretValue, g2.Config["token"])

	// JSON from stdin works too.
	_, errOut, code := runCLIContext(t.Context(), url, `{"a": "1", "b": true}`, "group", "add", "g3", "--from-file", "-")
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, map[string]string{"a": "1", "b": "true"}, getGroup(t, url, "g3", true).Config)

	// A masked document cannot create a group: the secret is not in it.
	masked := filepath.Join(dir, "masked.yaml")
	require.NoError(t, os.WriteFile(masked, []byte(mustRun(t, url, "group", "get", "g1", "-o", "yaml")), 0o600))
	_, errOut, code = runCLI(t, url, "group", "add", "g1", "--from-file", masked)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `config key "token" holds a masked secret value`)
	// ... nor a document of another group, nor one with unknown fields.
	_, errOut, code = runCLI(t, url, "group", "add", "g4", "--from-file", doc)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `the document is group "g2", not "g4"`)
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("config:\n  a: b\nweigth: 2\n"), 0o600))
	_, errOut, code = runCLI(t, url, "group", "add", "g4", "--from-file", bad)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "line 3: field weigth not found")
	_, _, code = runCLI(t, url, "group", "get", "g4")
	assert.Equal(t, exitFailure, code, "nothing was added")
}

func TestGroupUsageErrors(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	mustRun(t, url, "group", "add", "g")
	before := dumpKeys(t, s.Client(t))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"group", "add"}, "missing NAME"},
		{[]string{"group", "add", "a", "b"}, `unexpected argument "b"`},
		{[]string{"group", "add", "Bad_Name"}, `invalid group name "Bad_Name"`},
		{[]string{"group", "add", "x", "--set", "novalue"}, `invalid --set "novalue": want key=value`},
		{[]string{"group", "add", "x", "--quota", "lots"}, `invalid --quota "lots"`},
		{[]string{"group", "add", "x", "--max-nodes", "-1"}, "max_nodes must be >= 0"},
		{[]string{"group", "add", "x", "--weight", "0"}, "weight must be a finite number > 0"},
		{[]string{"group", "update", "g"}, "nothing to change"},
		{[]string{"group", "update", "g", "--set", "a=1", "--unset", "a"}, `config key "a" is both set and unset`},
		{[]string{"group", "update", "g", "--set", "a=1", "--at", "tomorrow"}, `invalid --at "tomorrow"`},
		{[]string{"group", "update", "g", "--set", "a=1", "--at", "+-5m"}, "not in the future"},
		{[]string{"group", "update", "g", "--secret", "nope"}, `secret key "nope" is not a config key`},
		{[]string{"group", "update", "g", "--lend", "--no-lend"}, "--lend and --no-lend together"},
		{[]string{"group", "rollback", "g"}, "missing --to VERSION"},
		{[]string{"group", "retire", "g", "--at", "+1h", "--wait"}, "--wait cannot be combined with --at"},
		{[]string{"group", "retire", "g", "--drain-timeout", "0s"}, "invalid --drain-timeout"},
		{[]string{"--namespace", "bad ns", "group", "list"}, `invalid --namespace "bad ns"`},
		{[]string{"-o", "xml", "group", "list"}, `invalid --output "xml"`},
		{[]string{"watch", "--from", "yesterday"}, `invalid --from "yesterday"`},
		{[]string{"schedule", "cancel"}, "missing ID"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := runCLI(t, url, tc.args...)
			assert.Equal(t, exitUsage, code, "stdout %q stderr %q", out, errOut)
			assert.Contains(t, errOut, tc.want)
			assert.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
			// Package prefixes name the code, not the problem.
			assert.NotContains(t, errOut, "registry:")
			assert.NotContains(t, errOut, "update group")
		})
	}
	assert.Equal(t, before, dumpKeys(t, s.Client(t)), "usage errors write nothing")
}

// TestGroupOperatorSurprises: a no-op update says nothing changed, deleting
// a held group needs --yes, unknown commands get one clean suggestion line.
func TestGroupOperatorSurprises(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	mustRun(t, url, "group", "add", "g", "--set", "a=1")
	assert.Equal(t, "group \"g\" updated (version 2)\n", mustRun(t, url, "group", "update", "g", "--set", "a=2"))
	assert.Equal(t, "group \"g\" unchanged: it already had these settings (version 2)\n", mustRun(t, url, "group", "update", "g", "--set", "a=2"))

	beatNodes(t, s, nil, "n1")
	mustRun(t, url, "rebalance")
	_, errOut, code := runCLI(t, url, "group", "delete", "g")
	assert.Equal(t, exitUsage, code)
	assert.Equal(t, "allot: group \"g\" is held by 1 node(s) (n1); nothing deleted: add --yes to delete it now, or retire it to drain it first\n", errOut)
	assert.Equal(t, registry.Active, getGroup(t, url, "g", false).State)
	assert.Equal(t, "group \"g\" deleted\n", mustRun(t, url, "group", "delete", "g", "--yes"))

	_, errOut, code = runCLI(t, url, "stauts")
	assert.Equal(t, exitUsage, code)
	assert.Equal(t, "allot: unknown command \"stauts\" for \"allot\"; did you mean status? (see 'allot --help')\n", errOut)
	_, errOut, code = runCLI(t, url, "group", "lsit")
	assert.Equal(t, exitUsage, code)
	assert.Equal(t, "allot: unknown command \"lsit\" for \"allot group\"; did you mean list? (see 'allot group --help')\n", errOut)

	out := mustRun(t, url, "--version")
	assert.Regexp(t, `^allot \S+ \(go`, out)
	assert.Equal(t, out, mustRun(t, url, "version"))
}

func TestScheduleAtListCancel(t *testing.T) {
	url := redistest.Start(t).URL()
	mustRun(t, url, "group", "add", "g", "--secret", "token="+secretValue)

	out := mustRun(t, url, "group", "update", "g", "--set", "model=b", "--secret", "token=sk-new-value-123456", "--at", "+1h")
	assert.Contains(t, out, `scheduled update of group "g" at `)
	assert.NotContains(t, out, "sk-new-value")
	at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	mustRun(t, url, "group", "retire", "g", "--at", at.Format(time.RFC3339), "--drain-timeout", "2m")

	var items []registry.Scheduled
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "schedule", "list", "-o", "json")), &items))
	require.Len(t, items, 2)
	assert.Equal(t, registry.OpUpdate, items[0].Op)
	assert.Equal(t, "b", items[0].Change.Set["model"])
	// Masked as everywhere else: the prefix, plus the last 4 of a long value.
	assert.True(t, strings.HasPrefix(items[0].Change.Set["token"], registry.MaskPrefix), "secret values are masked")
	assert.Less(t, len(items[0].Change.Set["token"]), 9, "secret values are masked")
	assert.WithinDuration(t, time.Now().Add(time.Hour), items[0].At, time.Minute)
	assert.Equal(t, registry.OpRetire, items[1].Op)
	assert.True(t, at.Equal(items[1].At), "%v != %v", at, items[1].At)
	assert.Equal(t, 2*time.Minute, items[1].Drain)

	table := mustRun(t, url, "schedule", "list")
	assert.Contains(t, table, "model=b token=****")
	assert.Contains(t, table, "drain 2m0s")
	assert.Contains(t, table, at.Local().Format("2006-01-02 15:04"))
	assert.Contains(t, mustRun(t, url, "schedule", "list", "--reveal", "-o", "yaml"), "token: sk-new-value-123456")

	assert.Equal(t, "scheduled change "+items[0].ID+" cancelled\n", mustRun(t, url, "schedule", "cancel", items[0].ID))
	_, errOut, code := runCLI(t, url, "schedule", "cancel", items[0].ID)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "not found")
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "schedule", "list", "-o", "json")), &items))
	require.Len(t, items, 1)
	assert.Equal(t, registry.OpRetire, items[0].Op)

	// Nothing was applied: the group is unchanged.
	g := getGroup(t, url, "g", true)
	assert.Equal(t, int64(1), g.Version)
	assert.Equal(t, registry.Active, g.State)

	// Scheduling against a missing group fails.
	_, errOut, code = runCLI(t, url, "group", "update", "nope", "--set", "a=b", "--at", "+1h")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, `group "nope" not found`)
}

func TestGroupRetireWait(t *testing.T) {
	url := redistest.Start(t).URL()
	mustRun(t, url, "group", "add", "g")
	mustRun(t, url, "group", "add", "h")

	out := mustRun(t, url, "group", "retire", "h")
	assert.Contains(t, out, `group "h" is draining`)
	assert.Equal(t, registry.Draining, getGroup(t, url, "h", false).State)
	_, errOut, code := runCLI(t, url, "group", "retire", "h")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, `group "h" is already draining`)

	// No node holds g: --wait returns as soon as a rebalance finishes the drain.
	out = mustRun(t, url, "group", "retire", "g", "--wait")
	assert.Equal(t, "group \"g\" retired (version 3)\n", out)
	assert.Equal(t, registry.Retired, getGroup(t, url, "g", false).State)
	// That rebalance also finished h's drain; --wait on it is satisfied at once.
	assert.Equal(t, registry.Retired, getGroup(t, url, "h", false).State)
	out = mustRun(t, url, "group", "retire", "h", "--wait")
	assert.Contains(t, out, `group "h" retired`)
	_, errOut, code = runCLI(t, url, "group", "retire", "h")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, `group "h" is already retired`)
}

// getGroup reads a group through the CLI's JSON output.
func getGroup(t *testing.T, url, name string, reveal bool) registry.Group {
	t.Helper()
	args := []string{"group", "get", name, "-o", "json"}
	if reveal {
		args = append(args, "--reveal")
	}
	var g registry.Group
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, args...)), &g))
	return g
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	require.NoError(t, err)
	return h
}

// TestGroupLendFlags: --no-lend and --lend set the mark (a version each),
// get and -o json show it, export carries it and import sets it back.
func TestGroupLendFlags(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	out := mustRun(t, url, "group", "add", "g", "--no-lend")
	assert.Contains(t, out, "added")
	var g map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "-o", "json", "group", "get", "g")), &g))
	assert.Equal(t, false, g["lend"])
	assert.Contains(t, mustRun(t, url, "group", "get", "g"), "lend:         no (--no-lend)")
	exported := mustRun(t, url, "export")
	assert.Contains(t, exported, "lend: false")

	mustRun(t, url, "group", "update", "g", "--lend")
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "-o", "json", "group", "get", "g")), &g))
	assert.Equal(t, true, g["lend"])
	assert.Equal(t, 2.0, g["version"])
	assert.Contains(t, mustRun(t, url, "group", "update", "g", "--lend"), "unchanged")

	f := filepath.Join(t.TempDir(), "pool.yaml")
	require.NoError(t, os.WriteFile(f, []byte(exported), 0o600))
	out = mustRun(t, url, "import", f)
	assert.Contains(t, out, "lend")
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, url, "-o", "json", "group", "get", "g")), &g))
	assert.Equal(t, false, g["lend"], "import carries the mark")
}
