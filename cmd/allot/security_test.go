package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/internal/yamlguard"
)

// The CLI side of the security review: hostile input files are refused in
// one line, before they are expanded, and write nothing.

// aliasBomb is a YAML document of about size bytes whose aliases expand
// to gigabytes.
func aliasBomb(size int) string {
	var b strings.Builder
	b.WriteString("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\ngroups: [")
	for b.Len() < size-8 {
		b.WriteString("*b,")
	}
	b.WriteString("*b]\n")
	return b.String()
}

func TestHostileInputFiles(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	seedPool(t, url)
	over := strings.Repeat("#", yamlguard.MaxBytes) + "\ngroups: []\n"
	for _, tc := range []struct {
		name, content, want string
		args                []string
		code                int
	}{
		{"import alias", "a: &a {name: zeta}\ngroups: [*a]\n", "line 2: YAML aliases (*name) are not allowed", []string{"import", "--prune"}, exitFailure},
		{"import alias bomb", aliasBomb(yamlguard.MaxBytes), "line 2: YAML aliases (*name) are not allowed", []string{"import", "--prune"}, exitFailure},
		{"import over 8 MiB", over, "larger than the 8 MiB limit", []string{"import", "--prune"}, exitFailure},
		{"group file alias", "k: &k v\nj: *k\n", "line 2: YAML aliases (*name) are not allowed", []string{"group", "add", "zeta", "--from-file"}, exitUsage},
		{"group file over 8 MiB", over, "larger than the 8 MiB limit", []string{"group", "add", "zeta", "--from-file"}, exitFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dumpKeys(t, s.Client(t))
			file := filepath.Join(t.TempDir(), "in.yaml")
			require.NoError(t, os.WriteFile(file, []byte(tc.content), 0o600))
			out, errOut, code := runCLI(t, url, append(tc.args, file)...)
			assert.Equal(t, tc.code, code, "stdout %q", out)
			assert.Contains(t, oneStderrLine(t, errOut), tc.want)
			assert.Equal(t, before, dumpKeys(t, s.Client(t)), "nothing written")

			// The same through stdin.
			out, errOut, code = runCLIContext(t.Context(), url, tc.content, append(tc.args, "-")...)
			assert.Equal(t, tc.code, code, "stdout %q", out)
			assert.Contains(t, oneStderrLine(t, errOut), tc.want)
			assert.Equal(t, before, dumpKeys(t, s.Client(t)), "nothing written")
		})
	}
}

// TestImportBombMemory: `allot import` of an 8 MiB alias bomb is refused
// having allocated little more than the file (the issue measured 700 MB
// for a 1 MB bomb).
func TestImportBombMemory(t *testing.T) {
	s := redistest.Start(t)
	file := filepath.Join(t.TempDir(), "bomb.yaml")
	require.NoError(t, os.WriteFile(file, []byte(aliasBomb(yamlguard.MaxBytes)), 0o600))
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, errOut, code := runCLI(t, s.URL(), "import", file)
	runtime.ReadMemStats(&m1)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "aliases")
	alloc := m1.TotalAlloc - m0.TotalAlloc
	t.Logf("allot import of an 8 MiB alias bomb: %d MiB allocated", alloc>>20)
	assert.Less(t, alloc, uint64(100<<20))
}
