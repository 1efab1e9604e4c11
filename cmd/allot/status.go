package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
)

func init() { commandFactories = append(commandFactories, newStatusCommand) }

func newStatusCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show each group's target and actual nodes, shares, standby nodes",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			st, err := a.inspect(ctx)
			if err != nil {
				return err
			}
			reg, err := a.registry(ctx)
			if err != nil {
				return err
			}
			if err := st.ReadUsage(ctx, registry.NewUsageReader(reg)); err != nil {
				return err
			}
			return a.print(st, func() table { return statusTable(st) })
		},
	}
}

var statusHeader = []string{"GROUP", "STATE", "WEIGHT", "MAX", "NODES", "USED", "ASKS", "SHARE"}

// statusTable is the table of `allot status`.
func statusTable(st allocator.Status) table {
	t := table{
		title: []string{fmt.Sprintf("epoch %d  balanced %s  nodes %d  standby %d",
			st.Epoch, yesNo(st.Balanced), len(st.Nodes), len(st.Standby))},
		header: statusHeader,
		rows:   statusRows(st),
		fit:    true, // a share of several limits can be long
	}
	if st.Waiting > 0 {
		t.title = append(t.title, fmt.Sprintf("waiting: %d capped-group grants until a holder releases", st.Waiting))
	}
	if n := len(st.Unserved); n > 0 {
		why := "no node holds them yet"
		if len(st.Nodes) == 0 {
			why = "no live nodes: start one, see 'allot node list'"
		}
		t.title = append(t.title, fmt.Sprintf("unserved: %d active group(s) held by no node (%s): %s", n, why, list(st.Unserved)))
	}
	if len(st.Groups) == 0 {
		t.header, t.rows = nil, nil
		t.footer = append(t.footer, "no groups (add one with 'allot group add NAME')")
	}
	if len(st.Standby) > 0 {
		t.footer = append(t.footer, "standby: "+list(st.Standby))
	}
	switch st.SecretsAtRest {
	case registry.AtRestPlaintext:
		t.footer = append(t.footer, "secrets: stored in plain text in Redis (ALLOT_SECRET_KEYS encrypts them)")
	case registry.AtRestEncrypted:
		t.footer = append(t.footer, "secrets: encrypted at rest (see 'allot secrets status')")
	}
	return t
}

// statusRows is one row per group: the nodes holding it of the count the
// planner wants, what its limits used and its holders ask of them, and the
// share of each holder (its quota rate when the group has one, else a
// fraction).
func statusRows(st allocator.Status) [][]string {
	rows := make([][]string, 0, len(st.Groups))
	for _, g := range st.Groups {
		maxNodes := "-"
		if g.MaxNodes > 0 {
			maxNodes = strconv.Itoa(g.MaxNodes)
		}
		rows = append(rows, []string{
			g.Name, healthState(g.State, g.Health, time.Now()), num(g.Weight), maxNodes,
			strconv.Itoa(len(g.Nodes)) + "/" + strconv.Itoa(g.Target), used(g), asks(g), share(g),
		})
	}
	return rows
}

// share renders what each holder of g gets: "150/m" of a quota, or "1/4".
func share(g allocator.GroupStatus) string {
	n := len(g.Nodes)
	if n == 0 {
		return "-"
	}
	if g.Quota != "" {
		if q, err := registry.ParseQuota(g.Quota); err == nil {
			return q.Share(n)
		}
	}
	return "1/" + strconv.Itoa(n)
}

// demandText renders a demand a second, "20/s" or "20/s 1500 tok/s"; "-"
// for a node that reports none.
func demandText(d *heartbeat.Demand) string {
	if d == nil {
		return "-"
	}
	s := strconv.FormatFloat(d.Calls, 'f', -1, 64) + "/s"
	if d.Tokens > 0 {
		s += " " + strconv.FormatFloat(d.Tokens, 'f', -1, 64) + " tok/s"
	}
	return s
}

// asks renders the fraction of the quota the holders' demand asks for,
// "135%"; "-" without a quota.
func asks(g allocator.GroupStatus) string {
	if g.Quota == "" {
		return "-"
	}
	return strconv.FormatFloat(g.Wanted*100, 'f', 0, 64) + "%"
}

// used renders the highest fraction of any limit used in the last full
// minute, "42%"; "-" without a quota.
func used(g allocator.GroupStatus) string {
	if g.Quota == "" {
		return "-"
	}
	return strconv.FormatFloat(g.Used*100, 'f', 0, 64) + "%"
}
