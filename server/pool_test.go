package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// importReport is the answer of POST /v1/import.
type importReport struct {
	DryRun  bool     `json:"dry_run"`
	Added   []string `json:"added"`
	Changed []struct {
		Name   string `json:"name"`
		Fields []struct {
			Field string  `json:"field"`
			Old   *string `json:"old"`
			New   *string `json:"new"`
		} `json:"fields"`
	} `json:"changed"`
	Removed   []string `json:"removed"`
	Unchanged int      `json:"unchanged"`
	Kept      []string `json:"kept"`
}

func TestExport(t *testing.T) {
	a := newAPI(t)
	a.addGroup("search-a", registry.Change{Set: map[string]string{"api_key": "sk-abcdefghijkl9876", "region": "eu"},
		Secret: []string{"api_key"}, Quota: new("600/m")})

	r := a.do("GET", "/v1/export", "", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	assert.Equal(t, "application/yaml", r.header.Get("Content-Type"))
	assert.Contains(t, string(r.body), "groups:\n  - name: search-a\n")
	assert.Contains(t, string(r.body), "api_key: '****9876'")
	assert.NotContains(t, string(r.body), "sk-abcdefghijkl9876")

	r = a.do("GET", "/v1/export?format=json&reveal=true", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	var p server.Pool
	r.json(t, &p)
	require.Len(t, p.Groups, 1)
	g := p.Groups[0]
	assert.Equal(t, "sk-abcdefghijkl9876", g.Config["api_key"])
	assert.Equal(t, "600/m", g.Quota)
	assert.Equal(t, "active", g.State)
	assert.Equal(t, []string{"api_key"}, g.SecretKeys)

	req, err := http.NewRequest("GET", a.ts.URL+"/v1/export", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/json")
	res, err := a.ts.Client().Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
}

func TestImport(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	a.addGroup("keep", registry.Change{Set: map[string]string{"api_key": "keep-secret-000011", "region": "eu"}, Secret: []string{"api_key"}})
	a.addGroup("old", registry.Change{})

	// A masked export re-imports over the same pool and keeps the secret.
	r := a.do("GET", "/v1/export", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	masked := string(r.body)
	r = a.do("POST", "/v1/import", "", masked)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var rep importReport
	r.json(t, &rep)
	assert.Equal(t, 2, rep.Unchanged)
	assert.Empty(t, rep.Changed)

	doc := `groups:
  - name: keep
    weight: 2
    config: {api_key: "****0011", region: us}
    secret_keys: [api_key]
  - name: fresh
    quota: 10/s
    config: {url: "https://x"}
`
	// Dry run: the diff, nothing written.
	r = a.do("POST", "/v1/import?dry_run=true&prune=true", "", doc)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &rep)
	assert.True(t, rep.DryRun)
	assert.Equal(t, []string{"fresh"}, rep.Added)
	assert.Equal(t, []string{"old"}, rep.Removed)
	require.Len(t, rep.Changed, 1)
	var fields []string
	for _, f := range rep.Changed[0].Fields {
		fields = append(fields, f.Field+":"+deref(f.Old)+"->"+deref(f.New))
	}
	assert.Equal(t, []string{"weight:1->2", `config.region:eu->us`}, fields)
	_, err := a.reg.Get(ctx, "fresh")
	assert.ErrorIs(t, err, registry.ErrNotFound)

	// For real, as JSON this time.
	r = a.do("POST", "/v1/import?prune=true", "", doc)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &rep)
	assert.False(t, rep.DryRun)
	keep, err := a.reg.Get(ctx, "keep")
	require.NoError(t, err)
	assert.Equal(t, "keep-secret-000011", keep.Config["api_key"], "a masked value keeps the stored secret")
	assert.Equal(t, "us", keep.Config["region"])
	assert.Equal(t, 2.0, keep.Weight)
	fresh, err := a.reg.Get(ctx, "fresh")
	require.NoError(t, err)
	assert.Equal(t, "10/s", fresh.Quota)
	_, err = a.reg.Get(ctx, "old")
	assert.ErrorIs(t, err, registry.ErrNotFound)

	// One bad group rejects the whole document, naming every problem.
	bad := `{"groups":[{"name":"another"},{"name":"Bad!"},{"name":"keep","weight":-1},
	  {"name":"nosecret","config":{"k":"****"},"secret_keys":["k"]}]}`
	r = a.do("POST", "/v1/import", "", bad)
	assert.Equal(t, http.StatusUnprocessableEntity, r.status, "%s", r.body)
	assert.Equal(t, "invalid", r.code())
	for _, want := range []string{"Bad!", "invalid weight", "masked secret"} {
		assert.Contains(t, string(r.body), want)
	}
	_, err = a.reg.Get(ctx, "another")
	assert.ErrorIs(t, err, registry.ErrNotFound, "nothing written")

	for _, tt := range []struct{ name, body, code string }{
		{"empty", "", "bad_request"},
		{"not yaml", "groups: [", "bad_request"},
		{"unknown field", "groups: []\nextra: 1\n", "bad_request"},
		{"no groups", "{}", "bad_request"},
		{"too large", "groups: []\n#" + strings.Repeat("x", server.MaxImportBytes), "too_large"},
	} {
		r = a.do("POST", "/v1/import", "", tt.body)
		assert.Equal(t, tt.code, r.code(), "%s: %s", tt.name, r.body)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
