package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

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

// TestSecretHistoryCLI: `group history` (any output) never shows a value
// stored before its key was marked; rollback keeps the mark; only
// `group update --unsecret` removes it, as a new version.
func TestSecretHistoryCLI(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	mustRun(t, url, "group", "add", "late", "--set", "api_key="+secretValue)
	mustRun(t, url, "group", "update", "late", "--secret", "api_key")
	for _, o := range []string{"table", "json", "yaml"} {
		out := mustRun(t, url, "group", "history", "late", "-o", o)
		assert.NotContains(t, out, secretValue, "-o %s", o)
		assert.NotContains(t, out, "0123456789ab", "-o %s", o)
	}
	mustRun(t, url, "group", "rollback", "late", "--to", "1")
	out := mustRun(t, url, "group", "get", "late", "-o", "json")
	assert.NotContains(t, out, secretValue, "rollback dropped the mark")

	_, errOut, code := runCLI(t, url, "group", "update", "late", "--unsecret", "api_key", "--secret", "api_key")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, oneStderrLine(t, errOut), "both --secret and --unsecret")
	out = mustRun(t, url, "group", "update", "late", "--unsecret", "api_key", "-o", "json")
	assert.Contains(t, out, secretValue, "unsecret shows the value from now on")
	out = mustRun(t, url, "group", "history", "late")
	assert.Contains(t, out, "secret_keys api_key→-", "the unsecret is a version of its own")
	out = mustRun(t, url, "group", "history", "late", "-o", "json")
	assert.NotContains(t, out, secretValue, "a kept version had the mark: the history masks the key in all of them")
}

// TestTableEscapesControls: a stored value cannot forge table lines or
// send escape sequences to the terminal; JSON keeps the value as it is.
func TestTableEscapesControls(t *testing.T) {
	s := redistest.Start(t)
	url := s.URL()
	evil := "ok\nforged-row  active  1\x1b[2J\x1b]0;pwned\x07\u202etxt.exe\tcol"
	mustRun(t, url, "group", "add", "evil", "--set", "note="+evil)
	out := mustRun(t, url, "group", "get", "evil")
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, "\x07")
	assert.NotContains(t, out, "\u202e")
	assert.NotContains(t, out, "\nforged-row")
	assert.Contains(t, out, `ok\nforged-row  active  1\x1b[2J\x1b]0;pwned\x07\u202etxt.exe\tcol`)
	js := mustRun(t, url, "group", "get", "evil", "-o", "json")
	assert.Contains(t, js, "\"note\": \"ok\\nforged-row  active  1\\u001b[2J\\u001b]0;pwned\\u0007\u202etxt.exe\\tcol\"", "JSON keeps the value, escaped as JSON")

	_, errOut, code := runCLI(t, url, "group", "update", "evil", "--set", "bad=\xff")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, oneStderrLine(t, errOut), "not valid UTF-8")
}

func TestEscapeControl(t *testing.T) {
	for in, want := range map[string]string{
		"plain value ✓": "plain value ✓",
		"a\nb":          `a\nb`,
		"\x1b[31mred":   `\x1b[31mred`,
		"\x9bC1":        `\x9bC1`, // an invalid byte on its own
		"\u009bC1":      `\u009bC1`,
		"\u202eabc":     `\u202eabc`,
		"tab\there":     `tab\there`,
		"del\x7f":       `del\x7f`,
	} {
		assert.Equal(t, want, escapeControl(in), "%q", in)
	}
}

// TestTLSToPlainPort: `--redis rediss://` naming a plain port fails within
// the dial timeout, in one line saying why, even with --timeout 0.
func TestTLSToPlainPort(t *testing.T) {
	plain := redistest.Start(t)
	url := strings.Replace(plain.URL(), "redis://", "rediss://", 1) + "?dial_timeout=1s"
	start := time.Now()
	_, errOut, code := runCLI(t, url, "--timeout", "0", "group", "list")
	took := time.Since(start)
	assert.Equal(t, exitFailure, code)
	line := oneStderrLine(t, errOut)
	assert.Contains(t, line, "cannot reach redis at rediss://")
	assert.Contains(t, line, "TLS handshake failed (is that a TLS port? rediss:// needs one)")
	assert.Less(t, took, 3*time.Second)
}

// TestErrorsEscapeControls: an error quoting what was typed (cobra's
// "unknown flag") cannot drive the terminal either.
func TestErrorsEscapeControls(t *testing.T) {
	_, errOut, code := runCLI(t, "redis://127.0.0.1:1", "status", "--\x1b]0;pwned\x07")
	assert.Equal(t, exitUsage, code)
	line := oneStderrLine(t, errOut)
	assert.NotContains(t, line, "\x1b")
	assert.Contains(t, line, `unknown flag: --\x1b]0;pwned\x07`)
}

// TestRedisPasswordNotPrinted: a --redis password holding '#', '?', '/' or
// '@' written raw was printed whole in the parse error (issue 21). Neither
// a bad URL nor an unreachable one shows any part of it, for a command or
// for serve.
func TestRedisPasswordNotPrinted(t *testing.T) {
	for i, pw := range []string{"Lefty#?/@Righty", "Lefty#Righty", "Lefty?Righty", "Lefty/Righty", "Lefty@Righty", "Lefty%Righty"} {
		cases := []struct {
			url  string
			args []string
		}{
			{"redis://app:" + pw + "@127.0.0.1:notaport", []string{"group", "list"}},
			{"redis://app:" + pw + "@127.0.0.1:6379/x", []string{"serve"}},
		}
		if i == 0 { // unreachable: each takes a dial timeout
			cases = append(cases, []struct {
				url  string
				args []string
			}{
				{"redis://app:" + pw + "@127.0.0.1:1?dial_timeout=1s", []string{"status"}},
				{"redis://app:" + pw + "@127.0.0.1:1?dial_timeout=1s", []string{"serve"}},
			}...)
		}
		for _, tc := range cases {
			out, errOut, code := runCLI(t, tc.url, append(tc.args, "--timeout", "2s")...)
			assert.NotEqual(t, exitOK, code, "%s %v", tc.url, tc.args)
			for _, part := range []string{"Lefty", "Righty"} {
				assert.NotContains(t, out+errOut, part, "%s %v printed the password", tc.url, tc.args)
			}
			assert.Contains(t, errOut, "app:xxxxx@127.0.0.1", "%s %v", tc.url, tc.args)
		}
	}
}
