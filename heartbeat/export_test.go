package heartbeat

import "context"

// RawBeat runs beat.lua with b's fields and held exactly as given, without
// Beat's checks: the tests of the script as the trust boundary.
func (t *Tracker) RawBeat(ctx context.Context, b Beat, held string) error {
	return beatScript.Run(ctx, t.rdb,
		[]string{t.nodes, t.state, t.members, t.logKey, t.schedule, t.revoked, t.keys.Assign(), t.keys.Holders(), t.settings},
		b.Node, b.IP, b.Preferred, held, b.Ack, t.ttl, t.events, nodeLogMaxLen, b.Session, t.iv, b.Rev,
		MaxHeld, MaxNodeIDLen, MaxIPLen, MaxSessionLen, DefaultMaxLiveNodes,
	).Err()
}

// RawLeave runs leave.lua without Leave's checks.
func (t *Tracker) RawLeave(ctx context.Context, id, session string) error {
	return leaveScript.Run(ctx, t.rdb, t.leaveKeys(), id, t.events, nodeLogMaxLen, session, "0").Err()
}
