package client

import (
	"log/slog"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/allot-io/allot/internal/testlog"
	"github.com/allot-io/allot/registry"
)

// TestMassCloseWarnsNothing: when many nodes close at once most of their
// after-leave plans lose the race to another leaver's plan, which already
// covers them. That is normal and logged at debug; a warning is for a real
// failure. (Closing 1,000 nodes used to log over a hundred warnings.)
func TestMassCloseWarnsNothing(t *testing.T) {
	p := newPool(t)
	for _, g := range []string{"g1", "g2", "g3"} {
		p.addGroup(g, registry.Change{Set: set("k", g)})
	}
	var logs testlog.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cs := p.startClients("n", 64, WithLogger(log))
	closeAll(cs)
	// A real failure (a timeout on a loaded machine) may still warn; a lost
	// race may not.
	l := regexp.MustCompile(`rebalance after leave failed.*stale epoch`)
	assert.Empty(t, l.FindAllString(logs.String(), -1))
}
