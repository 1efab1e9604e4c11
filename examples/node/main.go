// Command node is the smallest allot node: it joins the pool described by
// the ALLOT_* environment and prints one line per assignment change,
//
//	epoch=12 groups=alpha@v3,beta@v1
//
// until SIGTERM or SIGINT, when it leaves the pool (its groups move at once)
// and exits 0.
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
