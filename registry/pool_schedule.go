package registry

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// PoolSchedule is one pending scheduled change in a Pool: `allot export`
// writes every pending one, `allot import` restores those not pending
// already (the same group, op, time and change). Changes due by the time of
// the import are skipped (reported as expired), not applied late.
type PoolSchedule struct {
	Group string    `json:"group" yaml:"group"`
	Op    Op        `json:"op" yaml:"op"`
	At    time.Time `json:"at" yaml:"at"`
	// Change is the edit of an update (nil for retire and delete).
	Change *Change `json:"change,omitempty" yaml:"change,omitempty"`
	// DrainTimeout is a retire's drain timeout, a Go duration ("" = default).
	DrainTimeout string `json:"drain_timeout,omitempty" yaml:"drain_timeout,omitempty"`
}

// ScheduleImport is the part of the import report about scheduled changes.
type ScheduleImport struct {
	// Added counts the scheduled changes the import adds.
	Added int `json:"added" yaml:"added"`
	// Pending counts those already pending, left as they are.
	Pending int `json:"pending" yaml:"pending"`
	// Expired counts those due by now, skipped.
	Expired int `json:"expired" yaml:"expired"`
}

// Masked is s with the values its update sets masked for the keys that are
// secret: in groupSecrets (the group's secret keys now) or made secret by the
// change itself. The CLI and the API show scheduled changes through it.
func (s Scheduled) Masked(groupSecrets []string) Scheduled {
	if len(s.Change.Set) == 0 {
		return s
	}
	set := maps.Clone(s.Change.Set)
	for k, v := range set {
		if slices.Contains(groupSecrets, k) || slices.Contains(s.Change.Secret, k) || IsSealed(v) {
			set[k] = maskValue(v)
		}
	}
	s.Change.Set = set
	return s
}

// ExportSchedules is the pending items as a Pool lists them, masked unless
// reveal (with the secret keys of groups).
func ExportSchedules(items []Scheduled, groups []Group, reveal bool) []PoolSchedule {
	secrets := make(map[string][]string, len(groups))
	for _, g := range groups {
		secrets[g.Name] = g.SecretKeys
	}
	var out []PoolSchedule
	for _, s := range items {
		if s.Op == OpFinishRetire {
			continue // internal: the drain timeout of a retire, re-made by the retire
		}
		if !reveal {
			s = s.Masked(secrets[s.Group])
		}
		ps := PoolSchedule{Group: s.Group, Op: s.Op, At: s.At.UTC()}
		if s.Change.Edits() {
			c := s.Change
			c.IfVersion = 0
			ps.Change = &c
		}
		if s.Drain > 0 {
			ps.DrainTimeout = s.Drain.String()
		}
		out = append(out, ps)
	}
	return out
}

// PlanOption configures PlanImport.
type PlanOption func(*planConfig)

type planConfig struct {
	pending []Scheduled
	now     time.Time
}

// WithPending gives PlanImport the pending scheduled changes and the time
// now, so the document's scheduled changes that are pending already or due
// are not added. Without it every scheduled change of the document counts
// as new and now is time.Now().
func WithPending(items []Scheduled, now time.Time) PlanOption {
	return func(c *planConfig) { c.pending, c.now = items, now }
}

// planSchedules checks the document's scheduled changes and decides which
// to add. known reports whether a group will exist after the import, and
// secrets its secret keys.
func (plan *ImportPlan) planSchedules(items []PoolSchedule, cfg planConfig, known func(string) bool, secrets func(string) []string) error {
	for i, ps := range items {
		s, err := ps.scheduled()
		if err == nil {
			err = checkPlainValues(s.Change.Set)
		}
		if err == nil && !known(s.Group) {
			err = fmt.Errorf("%w: group %q is not in the pool", ErrInvalidSchedule, s.Group)
		}
		if err != nil {
			return fmt.Errorf("schedules[%d]: %w", i, err)
		}
		if !s.At.After(cfg.now) {
			plan.Schedules.Expired++
			continue
		}
		if slices.ContainsFunc(cfg.pending, func(p Scheduled) bool { return sameSchedule(p, s, secrets(s.Group)) }) {
			plan.Schedules.Pending++
			continue
		}
		for k, v := range s.Change.Set {
			if strings.HasPrefix(v, MaskPrefix) && (slices.Contains(secrets(s.Group), k) || slices.Contains(s.Change.Secret, k)) {
				return fmt.Errorf("schedules[%d]: %w: group %q key %q (export with --reveal to carry secret values)", i, ErrMaskedSecret, s.Group, k)
			}
		}
		plan.Schedules.Added++
		plan.schedules = append(plan.schedules, s)
	}
	return nil
}

// scheduled validates ps and turns it into a Scheduled (no ID, no author).
func (ps PoolSchedule) scheduled() (Scheduled, error) {
	s := Scheduled{Group: ps.Group, Op: ps.Op, At: ps.At}
	if err := ValidateName(ps.Group); err != nil {
		return s, err
	}
	if ps.At.IsZero() {
		return s, fmt.Errorf("%w: group %q: no time", ErrInvalidSchedule, ps.Group)
	}
	switch ps.Op {
	case OpUpdate:
		if ps.Change == nil || !ps.Change.Edits() {
			return s, fmt.Errorf("%w: group %q: an update needs a change", ErrInvalidSchedule, ps.Group)
		}
		s.Change = *ps.Change
		s.Change.IfVersion = 0
	case OpRetire, OpDelete:
		if ps.Change != nil && !ps.Change.IsZero() {
			return s, fmt.Errorf("%w: group %q: %s takes no change", ErrInvalidSchedule, ps.Group, ps.Op)
		}
	default:
		return s, fmt.Errorf("%w: group %q: op %q (want update, retire or delete)", ErrInvalidSchedule, ps.Group, ps.Op)
	}
	if ps.DrainTimeout != "" {
		d, err := time.ParseDuration(ps.DrainTimeout)
		if err != nil || d <= 0 || ps.Op != OpRetire {
			return s, fmt.Errorf("%w: group %q: drain_timeout %q: want a positive duration on a retire", ErrInvalidSchedule, ps.Group, ps.DrainTimeout)
		}
		s.Drain = d
	}
	return s, nil
}

// sameSchedule reports whether pending item p is the change s describes; s
// may carry masked values where p has the secret.
func sameSchedule(p, s Scheduled, secrets []string) bool {
	if p.Group != s.Group || p.Op != s.Op || !p.At.Equal(s.At) || p.Drain != s.Drain {
		return false
	}
	pc, sc := p.Change, s.Change
	pc.IfVersion, sc.IfVersion = 0, 0
	if !maps.Equal(pc.Set, sc.Set) {
		pc.Set = p.Masked(secrets).Change.Set
	}
	return maps.Equal(pc.Set, sc.Set) && slices.Equal(pc.Unset, sc.Unset) && slices.Equal(pc.Secret, sc.Secret) &&
		ptrEqual(pc.Weight, sc.Weight) && ptrEqual(pc.MaxNodes, sc.MaxNodes) && ptrEqual(pc.Quota, sc.Quota)
}

func ptrEqual[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// scheduleFailure is a scheduled change Apply could not add.
type scheduleFailure struct {
	group string
	err   error
}

// addSchedules adds scheds after the group writes; on a failure it cancels
// the ones it added.
func (p ImportPlan) addSchedules(ctx context.Context, reg *Registry, by string, scheds []Scheduled) *scheduleFailure {
	var added []string
	for _, s := range scheds {
		s.By = by
		got, err := reg.Schedule(ctx, s)
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultUndoTimeout)
			defer cancel()
			for _, id := range added {
				_ = reg.CancelSchedule(cctx, id)
			}
			return &scheduleFailure{group: s.Group, err: err}
		}
		added = append(added, got.ID)
	}
	return nil
}
