package registry

import (
	"context"
	"time"
)

// Op is the operation of a scheduled change.
type Op string

// Scheduled operations.
const (
	// OpUpdate applies the Change.
	OpUpdate Op = "update"
	// OpRetire retires the group.
	OpRetire Op = "retire"
	// OpDelete deletes the group.
	OpDelete Op = "delete"
	// OpFinishRetire retires a draining group when its drain timeout is up.
	// It is scheduled by Retire, not by users.
	OpFinishRetire Op = "finish-retire"
)

// Scheduled is a change to apply to a group at a future time.
type Scheduled struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Group  string    `json:"group"`
	Op     Op        `json:"op"`
	Change Change    `json:"change,omitzero"`
	By     string    `json:"by"`
	// Drain is the drain timeout of a scheduled retire (0 = registry default).
	Drain   time.Duration `json:"drain,omitempty"`
	Created time.Time     `json:"created"`
}

// Schedule validates s now (the group must exist and an update must be valid
// against the current version) and stores it; the ID and Created are assigned.
func (r *Registry) Schedule(ctx context.Context, s Scheduled) (Scheduled, error) {
	return Scheduled{}, errNotImplemented
}

// Schedules returns the pending scheduled changes, soonest first.
func (r *Registry) Schedules(ctx context.Context) ([]Scheduled, error) {
	return nil, errNotImplemented
}

// CancelSchedule removes a pending scheduled change (ErrNotFound if it is not
// pending).
func (r *Registry) CancelSchedule(ctx context.Context, id string) error {
	return errNotImplemented
}

// ApplyDue applies every scheduled change that is due by Redis server time and
// returns those this call applied. Each item is claimed and applied in one
// script, so concurrent callers never apply an item twice and never lose one.
func (r *Registry) ApplyDue(ctx context.Context) ([]Scheduled, error) {
	return nil, errNotImplemented
}
