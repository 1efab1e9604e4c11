// Command chaosnode is the node the chaos suite (e2e/) runs dozens of: the
// example node (examples/node) plus a report of every assignment change,
// appended to the file ALLOT_REPORT names (see report.go), from which the
// suite checks who held what when. It joins the pool described by the ALLOT_*
// environment, prints one line per assignment change, and leaves on SIGTERM
// or SIGINT.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/allot-io/allot/client"
)

func main() {
	os.Exit(run())
}

func run() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := client.FromEnv(client.WithLogger(log))
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 1
	}
	// Registered before Start, so the first assignment is printed too.
	c.OnChange(func(_, now client.Assignment) { fmt.Println(now) })
	report, closeReport, err := openReport(c.NodeID())
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 1
	}
	if report != nil {
		c.OnChange(report)
		defer closeReport()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := c.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 1
	}
	<-ctx.Done()

	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(closeCtx); err != nil {
		fmt.Fprintln(os.Stderr, "node: leave:", err)
		return 1
	}
	return 0
}
