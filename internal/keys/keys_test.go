package keys_test

import (
	"go/build"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
)

func TestValidGroupName(t *testing.T) {
	for _, ok := range []string{"a", "0", "key-4", "a.b_c", strings.Repeat("k", keys.MaxGroupNameLen)} {
		assert.True(t, keys.ValidGroupName(ok), ok)
	}
	for _, bad := range []string{"", "A", "-a", ".a", "a b", "a,b", "a\tb", "é", strings.Repeat("k", keys.MaxGroupNameLen+1)} {
		assert.False(t, keys.ValidGroupName(bad), bad)
	}
}

// TestLayers pins docs/design.md's Layout: registry and heartbeat never
// import each other (the group-name rule both need lives here).
func TestLayers(t *testing.T) {
	const module = "github.com/allot-io/allot/"
	for pkg, never := range map[string]string{"heartbeat": "registry", "registry": "heartbeat"} {
		p, err := build.ImportDir("../../"+pkg, 0)
		require.NoError(t, err)
		assert.False(t, slices.Contains(p.Imports, module+never), "%s imports %s: %v", pkg, never, p.Imports)
	}
}

func TestNodeLogApartFromLog(t *testing.T) {
	k := keys.New("ns")
	assert.Equal(t, "{allot:ns}:log", k.Log())
	assert.Equal(t, "{allot:ns}:log:nodes", k.NodeLog())
}
