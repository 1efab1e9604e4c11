package server_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/server"
)

// TestPythonClient runs the tests of the Python package clients/python with
// unittest (any python3 has it: no pytest needed) against a real server on
// a real redis-server: the unit tests against their fake server, and the
// integration tests (test_*_integration.py) against this one, which they
// find in ALLOT_TEST_* variables (see clients/python/tests/realserver.py).
func TestPythonClient(t *testing.T) {
	python := pythonInterpreter(t)
	tokens := server.Tokens{
		Admin: "admin-secret-py-0123",
		Node:  "node-secret-py-0123",
		Nodes: []server.NodeToken{{Token: "py-bound-secret-0123", Pattern: "py-*"}},
	}
	_, ts := startAPI(t, server.WithTokens(tokens),
		server.WithHeartbeat(heartbeat.Config{Interval: 200 * time.Millisecond, TTL: time.Minute}))

	dir, err := filepath.Abs("../clients/python")
	require.NoError(t, err)
	files, err := filepath.Glob(filepath.Join(dir, "tests", "test_*.py"))
	require.NoError(t, err)
	var modules []string
	for _, f := range files {
		modules = append(modules, strings.TrimSuffix(filepath.Base(f), ".py"))
	}
	require.Contains(t, modules, "test_node_integration")
	require.Contains(t, modules, "test_leases_integration")
	slices.Sort(modules)

	total := 0
	for _, m := range modules {
		t.Run(m, func(t *testing.T) {
			cmd := exec.Command(python, "-B", "-m", "unittest", "-v", m)
			cmd.Dir = filepath.Join(dir, "tests")
			cmd.Env = append(os.Environ(),
				"PYTHONPATH="+filepath.Join(dir, "src"),
				"PYTHONDONTWRITEBYTECODE=1",
				"ALLOT_TEST_URL="+ts.URL,
				"ALLOT_TEST_ADMIN_TOKEN="+tokens.Admin,
				"ALLOT_TEST_NODE_TOKEN="+tokens.Node,
				"ALLOT_TEST_PY_TOKEN="+tokens.Nodes[0].Token,
			)
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "python -m unittest %s:\n%s", m, out)
			// unittest exits 0 when every test ran and passed; make sure
			// they ran, and that none was skipped.
			ran := regexp.MustCompile(`(?m)^Ran (\d+) tests? in`).FindSubmatch(out)
			require.NotNil(t, ran, "no unittest summary:\n%s", out)
			n, err := strconv.Atoi(string(ran[1]))
			require.NoError(t, err)
			assert.Positive(t, n, "%s ran no test", m)
			assert.NotContains(t, string(out), "skipped", "a Python test skipped:\n%s", out)
			total += n
		})
	}
	assert.GreaterOrEqual(t, total, 66, "fewer Python tests ran than are written")
}
