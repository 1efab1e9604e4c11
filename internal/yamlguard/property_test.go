package yamlguard_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/allot-io/allot/internal/yamlguard"
)

// tricky are the characters that make YAML quote, block or escape a value.
var tricky = []string{"*", "&", "!", "|", ">", "#", ":", "-", "?", ",", "[", "]", "{", "}",
	"'", "\"", "\\", "\n", "\t", " ", "%", "@", "`", "é", "✓", "a", "b", "0", "*a", ": *b", "- *c", "\n*d", "  "}

func randomText(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(12) {
		b.WriteString(tricky[r.IntN(len(tricky))])
	}
	return b.String()
}

type poolGroup struct {
	Name       string            `json:"name" yaml:"name"`
	Config     map[string]string `json:"config,omitempty" yaml:"config,omitempty"`
	SecretKeys []string          `json:"secret_keys,omitempty" yaml:"secret_keys,omitempty"`
}

// TestExportedFilesPass: whatever values a pool holds, the file export
// writes (YAML, indented as `allot export` does, or JSON) passes Check, so
// an export always imports again.
func TestExportedFilesPass(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		var pool struct {
			Groups []poolGroup `json:"groups" yaml:"groups"`
		}
		for range 1 + r.IntN(3) {
			g := poolGroup{Name: "g", Config: map[string]string{}}
			for range r.IntN(4) {
				k := randomText(r)
				g.Config[k] = randomText(r)
				if r.IntN(2) == 0 {
					g.SecretKeys = append(g.SecretKeys, k)
				}
			}
			pool.Groups = append(pool.Groups, g)
		}
		var y bytes.Buffer
		enc := yaml.NewEncoder(&y)
		enc.SetIndent(2 + i%3)
		require.NoError(t, enc.Encode(pool))
		require.NoError(t, yamlguard.Check(y.Bytes()), "yaml:\n%s", y.String())
		j, err := json.MarshalIndent(pool, "", strings.Repeat(" ", i%4))
		require.NoError(t, err)
		require.NoError(t, yamlguard.Check(j), "json:\n%s", j)
	}
}

// FuzzCheck: Check never panics, and what it accepts has no alias.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"a: &x 1\nb: *x\n", "groups: []\n", "k: |\n  *x\n", `{"a": [1, *b]}`, "- \"a\n*b\"\n", "a: 'x\n  *y'\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if yamlguard.Check(data) != nil {
			return
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var n yaml.Node
			if dec.Decode(&n) != nil {
				return
			}
			if hasAlias(&n) {
				t.Fatalf("accepted a document with an alias: %q", data)
			}
		}
	})
}

func hasAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		return true
	}
	for _, c := range n.Content {
		if hasAlias(c) {
			return true
		}
	}
	return false
}
