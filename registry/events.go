package registry

import (
	"context"
	"time"
)

// Event types.
const (
	EventGroupAdded        = "group.added"
	EventGroupUpdated      = "group.updated"
	EventGroupRolledBack   = "group.rolledback"
	EventGroupRetiring     = "group.retiring"
	EventGroupRetired      = "group.retired"
	EventGroupDeleted      = "group.deleted"
	EventScheduleAdded     = "schedule.added"
	EventScheduleCancelled = "schedule.cancelled"
	EventScheduleApplied   = "schedule.applied"
	EventScheduleDropped   = "schedule.dropped"
	EventAssignment        = "assignment"
	EventNodeJoined        = "node.joined"
	EventNodeLeft          = "node.left"
	EventNodeReaped        = "node.reaped"
)

// Event is one entry of the event log; the same fields are published on the
// events channel. JSON: id, type, group, node, by, epoch, version, at (Unix ms).
type Event struct {
	ID, Type, Group, Node, By string
	Epoch, Version            int64
	At                        time.Time
}

// Events reads up to count events after stream ID after ("" = from the start,
// "$" = only new ones), waiting up to block for one when block > 0.
func (r *Registry) Events(ctx context.Context, after string, count int64, block time.Duration) ([]Event, error) {
	return nil, errNotImplemented
}

// ParseEvent decodes a pub/sub payload of the events channel.
func ParseEvent(payload string) (Event, error) { return Event{}, errNotImplemented }
