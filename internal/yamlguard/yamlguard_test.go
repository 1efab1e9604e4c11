package yamlguard_test

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/yamlguard"
)

func TestCheckRefusesAliases(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		line int
	}{
		{"block list", "a: &x [1, 2]\nb:\n  - *x\n", 3},
		{"map value", "a: &x v\nb: *x\n", 2},
		{"flow list", "a: &x v\nb: [1, *x]\n", 2},
		{"flow map", "{a: &x v, b: *x}", 1},
		{"json-ish", `{"groups": [&g {"name": "a"}, *g]}`, 1},
		{"merge key", "base: &b {weight: 2}\ngroups:\n  - <<: *b\n    name: a\n", 3},
		{"after a block scalar", "a: &x |\n  text\nb: *x\n", 3},
		{"after a comment", "a: &x v # a *comment\nb: *x\n", 2},
		{"second document", "a: 1\n---\nb: &x 1\nc: *x\n", 4},
		// The scanner takes the continuation line for a quoted scalar that
		// never ends; the parse that confirms the scan finds the alias.
		{"misleading quote", "a: &x plain\n  \"start\nb: *x\n", 3},
		{"carriage returns", "a: &x v\rb:\r  *x\r", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := yamlguard.Check([]byte(tt.doc))
			require.ErrorIs(t, err, yamlguard.ErrAlias)
			var e *yamlguard.Error
			require.True(t, errors.As(err, &e))
			assert.Equal(t, tt.line, e.Line, "%v", err)
			assert.Contains(t, err.Error(), "aliases (*name) are not allowed")
		})
	}
}

func TestCheckAcceptsPoolFiles(t *testing.T) {
	docs := []string{
		"",
		"groups: []\n",
		"# Secret values are masked\ngroups:\n  - name: openai-1\n    state: active\n    weight: 2\n    max_nodes: 0\n    quota: 600/m\n    config:\n      api_key: '****cdef'\n      model: gpt-5\n    secret_keys:\n      - api_key\n",
		`{"groups":[{"name":"a","config":{"glob":"*.example.com","k":"a, *b"}}]}`,
		"groups:\n  - name: a\n    config:\n      glob: \"*.example.com\"\n      rule: '*'\n      math: a*b\n      url: http://x/*/y # not *a comment\n",
		"groups:\n  - name: a\n    config:\n      notes: |\n        * one\n        - *two\n        key: *three\n      folded: >-\n        *bold*\n    weight: 1\n",
		"groups:\n- name: a\n  config: {k: 'it''s *', j: \"say \\\"*x\\\"\"}\n",
		"%YAML 1.2\n---\ngroups: []\n...\n",
		"groups:\n  - &anchor-only\n    name: a\n",
	}
	for _, d := range docs {
		assert.NoError(t, yamlguard.Check([]byte(d)), "%q", d)
	}
}

func TestCheckTooLarge(t *testing.T) {
	big := bytes.Repeat([]byte("#"), yamlguard.MaxBytes+1)
	assert.ErrorIs(t, yamlguard.Check(big), yamlguard.ErrTooLarge)
}

func TestCheckTooManyValues(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("groups: [")
	for b.Len() < 4<<20 {
		b.WriteString("a,")
	}
	b.WriteString("a]\n")
	err := yamlguard.Check(b.Bytes())
	assert.ErrorIs(t, err, yamlguard.ErrTooManyValues)
}

// hostile are 8 MiB documents built to exhaust a YAML decoder.
func hostile() map[string][]byte {
	const size = 8<<20 - 64
	bomb := func(head, item, tail string) []byte {
		var b bytes.Buffer
		b.WriteString(head)
		for b.Len()+len(item)+len(tail) < size {
			b.WriteString(item)
		}
		b.WriteString(tail)
		return b.Bytes()
	}
	return map[string][]byte{
		"flow aliases":  bomb("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\ngroups: [", "*b,", "*b]\n"),
		"block aliases": bomb("a: &a {k: [x,x,x,x,x,x,x,x]}\ngroups:\n", "  - *a\n", ""),
		"flat values":   bomb("groups: [", "a,", "a]\n"),
		"quoted stars":  bomb("groups: [\"", "a, *b ", "\"]\n"),
	}
}

// TestCheckMemory: refusing an 8 MiB hostile document costs next to
// nothing (the issue measured 700 MB for a 1 MB alias bomb).
func TestCheckMemory(t *testing.T) {
	for name, doc := range hostile() {
		t.Run(name, func(t *testing.T) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := yamlguard.Check(doc)
			runtime.ReadMemStats(&after)
			require.Error(t, err)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%s: %d MiB in, %d KiB allocated: %v", name, len(doc)>>20, alloc>>10, err)
			assert.Less(t, alloc, uint64(100<<20), "allocated %d MiB", alloc>>20)
			assert.False(t, strings.Contains(err.Error(), "\n"), "one line")
		})
	}
}
