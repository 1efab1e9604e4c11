package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/registry"
)

func init() { commandFactories = append(commandFactories, newWatchCommand) }

// Watch tuning.
const (
	watchBlock      = 5 * time.Second // longest wait of one read
	watchBatch      = 100             // most events per read
	watchBackoffMin = 250 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

var streamID = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)

func newWatchCommand(a *app) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Stream the pool's events until interrupted",
		Long: `Watch prints every event of the pool's audit log as it happens, one per line
(-o json: one JSON object per line). It starts with new events, or after the
event ID given by --from (0 = the whole kept log), and survives Redis restarts:
it reconnects with backoff and resumes after the last event it printed.`,
		Example: "  allot watch\n  allot watch --from 0 -o json | jq .type",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from != "" && from != "$" && !streamID.MatchString(from) {
				return usageErrorf("invalid --from %q: want an event ID like 1700000000000-0, 0 for the whole log, or $ for new events only", from)
			}
			ctx, cancel := a.ctx(cmd)
			reg, err := a.registry(ctx)
			if err == nil && (from == "" || from == "$") {
				from, err = reg.LastEventID(ctx)
			}
			cancel()
			if err != nil {
				return err
			}
			return a.watch(cmd.Context(), reg, from)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "start after this event `ID` (0 = the whole kept log; default: new events only)")
	return cmd
}

// readResult is one Events call's outcome.
type readResult struct {
	events []registry.Event
	err    error
}

// watch prints events after ID after until ctx ends. Read errors are
// retried with backoff, resuming after the last printed event.
func (a *app) watch(ctx context.Context, reg *registry.Registry, after string) error {
	backoff := watchBackoffMin
	lost := false
	for {
		res := a.readEvents(ctx, reg, after)
		if ctx.Err() != nil {
			return nil
		}
		if res.err != nil {
			if !lost {
				fmt.Fprintf(a.stderr, "allot: watch: lost redis at %s (%s); reconnecting\n", a.maskedURL(), oneLine(res.err.Error()))
				lost = true
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(2*backoff, watchBackoffMax)
			continue
		}
		if lost {
			fmt.Fprintf(a.stderr, "allot: watch: reconnected to redis at %s\n", a.maskedURL())
			lost, backoff = false, watchBackoffMin
		}
		for _, ev := range res.events {
			if err := a.printEvent(ev); err != nil {
				return err
			}
			after = ev.ID
		}
	}
}

// readEvents makes one blocking read. The read itself cannot be interrupted,
// so on cancellation the client is closed to unblock it, and the read is
// waited for before returning.
func (a *app) readEvents(ctx context.Context, reg *registry.Registry, after string) readResult {
	done := make(chan readResult, 1)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), watchBlock+max(a.timeout, time.Second))
	defer cancel()
	go func() {
		evs, err := reg.Events(rctx, after, watchBatch, watchBlock)
		done <- readResult{evs, err}
	}()
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		a.close()
		return <-done
	}
}

// printEvent writes one event: a line, a JSON line or a YAML document.
func (a *app) printEvent(ev registry.Event) error {
	switch a.output {
	case "json":
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(append(b, '\n'))
		return err
	case "yaml":
		b, err := toYAML(ev)
		if err != nil {
			return err
		}
		_, err = io.WriteString(a.stdout, "---\n"+string(b))
		return err
	}
	_, err := io.WriteString(a.stdout, eventLine(ev)+"\n")
	return err
}

// eventTypes are the event types watch aligns its columns for; a longer,
// unknown type still prints, one space after it.
var eventTypes = []string{
	registry.EventGroupAdded, registry.EventGroupUpdated, registry.EventGroupRolledBack,
	registry.EventGroupRetiring, registry.EventGroupRetired, registry.EventGroupDeleted,
	registry.EventScheduleAdded, registry.EventScheduleCancelled, registry.EventScheduleApplied,
	registry.EventScheduleDropped, registry.EventAssignment, registry.EventNodeJoined,
	registry.EventNodeLeft, registry.EventNodeReaped,
}

// eventTypeWidth is the width of the type column: the longest known type.
var eventTypeWidth = func() int {
	w := 0
	for _, t := range eventTypes {
		w = max(w, len(t))
	}
	return w
}()

// eventLine renders an event for the table output:
// "2026-03-01 09:00:00 group.updated      group=a version=3 by=cli:bob@h".
// Event IDs (for --from) are in the JSON output.
func eventLine(ev registry.Event) string {
	var b strings.Builder
	b.WriteString(ev.At.Local().Format("2006-01-02 15:04:05"))
	b.WriteString(" ")
	b.WriteString(fmt.Sprintf("%-*s", eventTypeWidth, ev.Type))
	fields := []struct{ k, v string }{{"group", ev.Group}, {"node", ev.Node}}
	if ev.Version > 0 {
		fields = append(fields, struct{ k, v string }{"version", strconv.FormatInt(ev.Version, 10)})
	}
	if ev.Epoch > 0 {
		fields = append(fields, struct{ k, v string }{"epoch", strconv.FormatInt(ev.Epoch, 10)})
	}
	fields = append(fields, struct{ k, v string }{"by", ev.By})
	if ev.Reason != "" {
		fields = append(fields, struct{ k, v string }{"reason", strconv.Quote(ev.Reason)})
	}
	for _, f := range fields {
		if f.v != "" {
			b.WriteString(" " + f.k + "=" + f.v)
		}
	}
	return b.String()
}
