package registry

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	// OpProbe turns a suspended group probing when its probe wait is up. It
	// is scheduled by a suspension, not by users; cancelling it keeps the
	// group suspended until resumed.
	OpProbe Op = "probe"
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

// maxDuePerCall bounds how many due items one ApplyDue reads at once.
const maxDuePerCall = 100

// scheduledBody is the stored JSON of a Scheduled minus the fields the
// scripts stamp with server time (created; at for a drain timeout).
type scheduledBody struct {
	ID     string        `json:"id"`
	At     *time.Time    `json:"at,omitempty"`
	Group  string        `json:"group"`
	Op     Op            `json:"op"`
	Change Change        `json:"change,omitzero"`
	By     string        `json:"by"`
	Drain  time.Duration `json:"drain,omitempty"`
}

func encodeScheduled(s Scheduled, withAt bool) (string, error) {
	b := scheduledBody{ID: s.ID, Group: s.Group, Op: s.Op, Change: s.Change, By: s.By, Drain: s.Drain}
	if withAt {
		at := s.At.UTC()
		b.At = &at
	}
	out, err := json.Marshal(b)
	return string(out), err
}

// parseScheduled decodes a stored scheduled change without opening its
// sealed values (Registry.decodeScheduled opens them).
func parseScheduled(s string) (Scheduled, error) {
	var out Scheduled
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return Scheduled{}, fmt.Errorf("registry: decode scheduled change: %w", err)
	}
	return out, nil
}

func newScheduleID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Schedule validates s now (the group must exist, an update must be valid
// against the current version, a retire needs an active group) and stores
// it; ID and Created are assigned. Only OpUpdate, OpRetire and OpDelete can
// be scheduled; Change is only allowed with OpUpdate.
func (r *Registry) Schedule(ctx context.Context, s Scheduled) (Scheduled, error) {
	out, err := r.schedule(ctx, s)
	return out, wrap(err, "schedule %s of group %q", s.Op, s.Group)
}

func (r *Registry) schedule(ctx context.Context, s Scheduled) (Scheduled, error) {
	if err := ValidateName(s.Group); err != nil {
		return Scheduled{}, err
	}
	if s.At.IsZero() {
		return Scheduled{}, fmt.Errorf("%w: no time given", ErrInvalidSchedule)
	}
	if s.Drain < 0 {
		return Scheduled{}, fmt.Errorf("%w: negative drain timeout", ErrInvalidSchedule)
	}
	if err := checkPlainValues(s.Change.Set); err != nil {
		return Scheduled{}, err
	}
	switch s.Op {
	case OpUpdate:
		if !s.Change.Edits() {
			return Scheduled{}, fmt.Errorf("%w: update changes nothing", ErrInvalidSchedule)
		}
	case OpRetire, OpDelete:
		if !s.Change.IsZero() {
			return Scheduled{}, fmt.Errorf("%w: %s takes no change", ErrInvalidSchedule, s.Op)
		}
	default:
		return Scheduled{}, fmt.Errorf("%w: op %q (want update, retire or delete)", ErrInvalidSchedule, s.Op)
	}
	cur, err := r.get(ctx, s.Group)
	if err != nil {
		return Scheduled{}, err
	}
	switch s.Op {
	case OpUpdate:
		if s.Change.IfVersion != 0 && s.Change.IfVersion != cur.Version {
			return Scheduled{}, fmt.Errorf("%w: current version is %d, not %d", ErrVersionMismatch, cur.Version, s.Change.IfVersion)
		}
		if _, err := s.Change.apply(cur); err != nil {
			return Scheduled{}, err
		}
	case OpRetire:
		if cur.State != Active {
			return Scheduled{}, fmt.Errorf("%w: group is %s, not active", ErrInvalidState, cur.State)
		}
	}
	s.ID = newScheduleID()
	sealed, err := r.sealSchedule(s)
	if err != nil {
		return Scheduled{}, err
	}
	body, err := encodeScheduled(sealed, true)
	if err != nil {
		return Scheduled{}, err
	}
	k := r.keys
	res, err := scheduleAddScript.Run(ctx, r.rdb,
		[]string{k.Schedule(), k.ScheduleItems(), k.Log(), k.Group(s.Group)},
		s.ID, s.At.UnixMilli(), body, k.Events(), s.Group, s.By, LogMaxLen,
	).StringSlice()
	if err != nil {
		return Scheduled{}, err
	}
	switch {
	case len(res) == 2 && res[0] == "ok":
		return r.decodeScheduled(res[1])
	case len(res) > 0 && res[0] == "missing":
		return Scheduled{}, ErrNotFound
	}
	return Scheduled{}, fmt.Errorf("registry: unexpected schedule reply %q", res)
}

// Schedules returns the pending scheduled changes, soonest first (then by ID).
func (r *Registry) Schedules(ctx context.Context) ([]Scheduled, error) {
	items, err := r.rdb.HGetAll(ctx, r.keys.ScheduleItems()).Result()
	if err != nil {
		return nil, wrap(err, "list schedules")
	}
	out := make([]Scheduled, 0, len(items))
	for _, v := range items {
		s, err := r.decodeScheduled(v)
		if err != nil {
			return nil, wrap(err, "list schedules")
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Scheduled) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// CancelSchedule removes a pending scheduled change (ErrNotFound if it is not
// pending: unknown, already applied or cancelled).
func (r *Registry) CancelSchedule(ctx context.Context, id string) error {
	k := r.keys
	n, err := scheduleCancelScript.Run(ctx, r.rdb,
		[]string{k.Schedule(), k.ScheduleItems(), k.Log()}, id, k.Events(), "", LogMaxLen).Int()
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	return wrap(err, "cancel schedule %q", id)
}

// ApplyDue applies every scheduled change that is due by Redis server time and
// returns those this call applied. Each item is claimed and applied in one
// script (with a version check on the group), so concurrent callers never
// apply an item twice and never lose one. An item that can no longer apply
// (its group is gone, its IfVersion is stale, a retire of a group that is no
// longer active) is removed with a schedule.dropped event.
func (r *Registry) ApplyDue(ctx context.Context) ([]Scheduled, error) {
	applied := []Scheduled{}
	for {
		items, err := scheduleDueScript.Run(ctx, r.rdb,
			[]string{r.keys.Schedule(), r.keys.ScheduleItems()}, maxDuePerCall).StringSlice()
		if err != nil {
			return applied, wrap(err, "apply due schedules")
		}
		progress := false
		for _, raw := range items {
			s, err := r.decodeScheduled(raw)
			if err != nil {
				r.log.Warn("dropping undecodable scheduled change", "err", err)
				if err := r.dropItem(ctx, s, raw); err != nil {
					return applied, wrap(err, "apply due schedules")
				}
				continue
			}
			ok, err := r.applyItem(ctx, s)
			if err != nil {
				return applied, wrap(err, "apply scheduled change %q to group %q", s.ID, s.Group)
			}
			if ok {
				applied = append(applied, s)
			}
			progress = true
		}
		if len(items) < maxDuePerCall || !progress {
			return applied, nil
		}
	}
}

// applyItem applies one due item; false when another caller claimed it first
// or it was dropped.
func (r *Registry) applyItem(ctx context.Context, s Scheduled) (bool, error) {
	cl := claim{id: s.ID, by: s.By}
	var err error
	switch s.Op {
	case OpUpdate:
		_, err = r.update(ctx, s.Group, s.Change, s.By, cl)
	case OpRetire:
		_, err = r.retire(ctx, s.Group, s.Drain, s.By, cl)
	case OpDelete:
		_, err = r.delete(ctx, s.Group, s.By, cl)
	case OpFinishRetire:
		_, err = r.finishRetire(ctx, s.Group, s.By, cl)
	case OpProbe:
		var probed bool
		if probed, err = r.probe(ctx, s.Group, s.By); err == nil && !probed {
			return false, nil // no longer suspended: the item is gone
		}
	default:
		err = ErrInvalidSchedule
	}
	switch {
	case err == nil:
		r.log.Info("applied scheduled change", "group", s.Group, "op", string(s.Op), "id", s.ID)
		return true, nil
	case errors.Is(err, errClaimed):
		return false, nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalidState), errors.Is(err, ErrVersionMismatch),
		errors.Is(err, ErrInvalidSchedule), isValidation(err):
		r.log.Info("dropped scheduled change", "group", s.Group, "op", string(s.Op), "id", s.ID, "err", err)
		return false, r.dropItem(ctx, s, "")
	}
	return false, err
}

func isValidation(err error) bool {
	for _, e := range []error{ErrInvalidName, ErrInvalidWeight, ErrInvalidMaxNodes, ErrInvalidQuota, ErrNoQuota, ErrConfigTooLarge, ErrInvalidConfig} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// dropItem removes a pending item without applying it (schedule.dropped).
func (r *Registry) dropItem(ctx context.Context, s Scheduled, raw string) error {
	id := s.ID
	if id == "" {
		// Undecodable: find its ID by value is not possible; remove by scanning.
		items, err := r.rdb.HGetAll(ctx, r.keys.ScheduleItems()).Result()
		if err != nil {
			return err
		}
		for k, v := range items {
			if v == raw {
				id = k
			}
		}
		if id == "" {
			return nil
		}
	}
	_, err := r.runWrite(ctx, write{mode: "drop", name: s.Group, claim: claim{id: id, by: s.By}})
	return err
}
