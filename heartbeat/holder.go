package heartbeat

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Holding is who holds a node ID, as Holder read it.
type Holding struct {
	// Registered is true when the node has a record and a last beat: live,
	// or past its TTL and not yet reaped.
	Registered bool
	// Session is the session of the record ("" without one).
	Session string
	// Live is true when the node's last beat is within the TTL (Redis
	// server time): a beat from another session would be refused with
	// ErrNodeIDInUse.
	Live bool
}

// Holds reports whether session holds the ID: a beat from it continues the
// node (Beat does not join it) — live, or expired and not yet reaped.
func (h Holding) Holds(session string) bool { return h.Registered && h.Session == session }

// Holder reads who holds node id, read only, in one round trip: a caller
// that must tell a join from a continuing beat before it beats (allot
// serve limits joins and picks the session of every join itself). What it
// reads may change before a later Beat; Beat alone decides.
func (t *Tracker) Holder(ctx context.Context, id string) (Holding, error) {
	if err := ValidateNodeID(id); err != nil {
		return Holding{}, err
	}
	var (
		now  *redis.TimeCmd
		rec  *redis.StringCmd
		seen *redis.FloatCmd
	)
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		now = p.Time(ctx)
		rec = p.HGet(ctx, t.members, id)
		seen = p.ZScore(ctx, t.nodes, id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Holding{}, fmt.Errorf("heartbeat: holder of %q: %w", id, err)
	}
	r, err := rec.Result()
	if errors.Is(err, redis.Nil) {
		return Holding{}, nil
	}
	if err != nil {
		return Holding{}, fmt.Errorf("heartbeat: holder of %q: %w", id, err)
	}
	s, err := seen.Result()
	if errors.Is(err, redis.Nil) {
		return Holding{}, nil // a record without a beat: the next beat joins
	}
	if err != nil {
		return Holding{}, fmt.Errorf("heartbeat: holder of %q: %w", id, err)
	}
	h := Holding{Registered: true, Session: recordSession(r)}
	h.Live = int64(s) >= now.Val().UnixMilli()-t.ttl
	return h, nil
}

// Validate reports what Beat would refuse in b before any round trip
// (ErrInvalidNode): a caller that writes something of its own before the
// beat (allot serve's join limit) checks the input first, so bad input
// changes nothing.
func (b Beat) Validate() error {
	_, err := b.validate()
	return err
}
