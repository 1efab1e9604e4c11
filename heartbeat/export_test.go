package heartbeat

import "context"

// RawBeat runs beat.lua with b's fields and held exactly as given, without
// Beat's checks: the tests of the script as the trust boundary.
func (t *Tracker) RawBeat(ctx context.Context, b Beat, held string) error {
	calls, tokens := demandArgs(b.Demand)
	return t.RawDemandBeat(ctx, b, held, calls, tokens)
}

// RawDemandBeat is RawBeat with the two demand ARGV exactly as given.
func (t *Tracker) RawDemandBeat(ctx context.Context, b Beat, held, calls, tokens string) error {
	return beatScript.Run(ctx, t.rdb, t.beatKeys(), t.beatArgs(b, held, calls, tokens)...).Err()
}

// RawLeave runs leave.lua without Leave's checks.
func (t *Tracker) RawLeave(ctx context.Context, id, session string) error {
	return leaveScript.Run(ctx, t.rdb, t.leaveKeys(), id, t.events, nodeLogMaxLen, session, "0").Err()
}
