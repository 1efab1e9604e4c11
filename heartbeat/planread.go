package heartbeat

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// PlanRead is the heartbeat's part of a planner's read, queued on a
// MULTI/EXEC that the caller runs (QueuePlanRead). It holds the reap of the
// expired nodes and, after it, every node record.
type PlanRead struct {
	t       *Tracker
	reap    *redis.Cmd
	members *redis.MapStringStringCmd
}

// QueuePlanRead queues on tx (a TxPipeline of this Tracker's client) a reap
// of the nodes past their TTL, then a read of every node record. Inside one
// transaction the records read are exactly the live nodes: every writer of
// :members writes :nodes in the same script, and the reap just removed
// every node whose last beat is older than the TTL. So the planner gets them
// without Live's scan of :nodes and its scores.
//
// The reap goes by EVAL, not EVALSHA: a transaction cannot fall back from a
// NOSCRIPT (a restarted server) the way a single call does, and the script
// text costs a few kilobytes, nothing beside the records read with it.
func (t *Tracker) QueuePlanRead(ctx context.Context, tx redis.Pipeliner) *PlanRead {
	return &PlanRead{
		t:       t,
		reap:    reapScript.Eval(ctx, tx, t.reapKeys(), t.ttl, t.events, nodeLogMaxLen),
		members: tx.HGetAll(ctx, t.members),
	}
}

// Result returns, once the transaction ran, the nodes the reap removed
// (sorted) and the live nodes sorted by ID. LastSeen is not read: it is
// zero in every node returned.
func (pr *PlanRead) Result() (reaped []string, live []Node, err error) {
	reaped, err = pr.reap.StringSlice()
	if err != nil && err != redis.Nil {
		return nil, nil, fmt.Errorf("heartbeat: reap: %w", err)
	}
	if len(reaped) > 0 {
		slices.Sort(reaped)
		pr.t.log.Info("nodes reaped", "nodes", reaped)
	}
	records, err := pr.members.Result()
	if err != nil {
		return nil, nil, fmt.Errorf("heartbeat: read nodes: %w", err)
	}
	// Sort the IDs, not the Nodes built from them.
	ids := make([]string, 0, len(records))
	for id := range records {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	live = make([]Node, len(ids))
	for i, id := range ids {
		live[i] = parseRecord(records[id])
		live[i].ID = id
	}
	return reaped, live, nil
}
