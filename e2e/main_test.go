package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"
)

// nodeBin is the e2e/chaosnode binary TestMain builds.
var nodeBin string

// TestMain builds e2e/chaosnode once, without -race: the library's race
// freedom is covered by its unit tests, and a race build of dozens of
// processes would starve a 2-core machine.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// The suite's own clients see every outage it causes; go-redis would
	// log each failed dial.
	redis.SetLogger(quiet{})
	dir, err := os.MkdirTemp("", "allot-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	nodeBin = filepath.Join(dir, "node")
	cmd := exec.Command("go", "build", "-o", nodeBin, "github.com/allot-io/allot/e2e/chaosnode")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build e2e/chaosnode:", err)
		return 1
	}
	return m.Run()
}

// quiet is a go-redis logger that drops everything.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
