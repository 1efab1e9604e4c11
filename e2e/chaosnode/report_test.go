package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/client"
)

func TestReportAppendsOneJSONLinePerChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.jsonl")
	t.Setenv(envReport, path)
	onChange, closeFn, err := openReport("n1")
	require.NoError(t, err)
	onChange(client.Assignment{}, client.Assignment{Epoch: 3, Groups: []client.Group{{Name: "alpha", Version: 2}, {Name: "beta", Version: 1}}})
	onChange(client.Assignment{}, client.Assignment{Epoch: 4})
	require.NoError(t, closeFn())

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	require.Len(t, lines, 2)
	var first, second reportLine
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	assert.Equal(t, "n1", first.Node)
	assert.Equal(t, int64(3), first.Epoch)
	assert.Equal(t, []string{"alpha@v2", "beta@v1"}, first.Groups)
	assert.Positive(t, first.T)
	assert.Positive(t, first.Goroutines)
	assert.Equal(t, []string{}, second.Groups)
	assert.GreaterOrEqual(t, second.T, first.T)
}

func TestReportOffWithoutEnv(t *testing.T) {
	t.Setenv(envReport, "")
	onChange, closeFn, err := openReport("n1")
	require.NoError(t, err)
	assert.Nil(t, onChange)
	assert.Nil(t, closeFn)
}
