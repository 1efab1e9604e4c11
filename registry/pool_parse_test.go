package registry_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/yamlguard"
	"github.com/allot-io/allot/registry"
)

func TestParsePool(t *testing.T) {
	doc := "groups:\n  - name: a\n    weight: 2\n\n  - name: b\n    config: {k: v}\nschedules: []\n"
	p, err := registry.ParsePool([]byte(doc))
	require.NoError(t, err)
	require.Len(t, p.Groups, 2)
	assert.Equal(t, "a", p.Groups[0].Name)
	assert.Equal(t, 2.0, *p.Groups[0].Weight)
	assert.Equal(t, map[string]string{"k": "v"}, p.Groups[1].Config)
	assert.Equal(t, []int{2, 5}, registry.PoolGroupLines([]byte(doc)))

	p, err = registry.ParsePool([]byte(`{"groups": []}`))
	require.NoError(t, err, "JSON is YAML")
	assert.Empty(t, p.Groups)

	_, err = registry.ParsePool(nil)
	assert.ErrorIs(t, err, registry.ErrEmptyPool)

	for _, tc := range []struct{ name, doc, want string }{
		{"no groups", "schedules: []\n", `no "groups" list`},
		{"null groups", "groups:\n", `no "groups" list`},
		{"second document", "groups: []\n---\ngroups: []\n", "line 2: a second YAML document"},
		{"unknown field", "groups:\n  - name: a\n    weigth: 2\n", "line 3: field weigth not found"},
		{"wrong type", "groups:\n  - name: a\n    max_nodes: many\n", "line 3: cannot unmarshal !!str `many` into int"},
		{"duplicate key", "groups:\n  - name: a\n    name: b\n", `mapping key "name" already defined`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registry.ParsePool([]byte(tc.doc))
			var de *registry.PoolDocumentError
			require.ErrorAs(t, err, &de)
			assert.ErrorIs(t, err, registry.ErrPoolDocument)
			assert.Contains(t, de.Problem, tc.want)
			assert.NotContains(t, de.Problem, "registry.", "no Go type names")
		})
	}

	_, err = registry.ParsePool([]byte("a: &x [1]\nb: *x\n"))
	assert.ErrorIs(t, err, yamlguard.ErrAlias, "the guard runs before the parser")
}
