package registry

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlanImportSchedules(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	have := []Group{{Name: "g", State: Active, Weight: 1, Config: map[string]string{"api_key": "sk-live-0123456789"}, SecretKeys: []string{"api_key"}}}
	pool := func(s ...PoolSchedule) Pool {
		return Pool{Groups: ExportPool(have, true).Groups, Schedules: s}
	}
	later := now.Add(time.Hour)
	upd := &Change{Set: map[string]string{"region": "eu"}}
	pending := []Scheduled{{ID: "1", Group: "g", Op: OpUpdate, At: later, Change: Change{Set: map[string]string{"api_key": "sk-live-9999999999"}}}}

	p, err := PlanImport(pool(
		PoolSchedule{Group: "g", Op: OpUpdate, At: later, Change: upd},
		PoolSchedule{Group: "g", Op: OpRetire, At: now.Add(-time.Minute)},
		// The pending one, as an export without --reveal shows it.
		PoolSchedule{Group: "g", Op: OpUpdate, At: later, Change: &Change{Set: map[string]string{"api_key": "****9999"}}},
	), have, false, WithPending(pending, now))
	require.NoError(t, err)
	assert.Equal(t, ScheduleImport{Added: 1, Pending: 1, Expired: 1}, p.Schedules)
	assert.Equal(t, 1, p.Writes())

	for name, tc := range map[string]struct {
		s    PoolSchedule
		want error
	}{
		"unknown op":      {PoolSchedule{Group: "g", Op: "explode", At: later}, ErrInvalidSchedule},
		"update, no edit": {PoolSchedule{Group: "g", Op: OpUpdate, At: later}, ErrInvalidSchedule},
		"delete, change":  {PoolSchedule{Group: "g", Op: OpDelete, At: later, Change: upd}, ErrInvalidSchedule},
		"unknown group":   {PoolSchedule{Group: "nope", Op: OpDelete, At: later}, ErrInvalidSchedule},
		"no time":         {PoolSchedule{Group: "g", Op: OpDelete}, ErrInvalidSchedule},
		"bad drain":       {PoolSchedule{Group: "g", Op: OpRetire, At: later, DrainTimeout: "soon"}, ErrInvalidSchedule},
		"masked secret":   {PoolSchedule{Group: "g", Op: OpUpdate, At: later, Change: &Change{Set: map[string]string{"api_key": "****1234"}}}, ErrMaskedSecret},
	} {
		_, err := PlanImport(pool(tc.s), have, false, WithPending(nil, now))
		assert.ErrorIs(t, err, tc.want, name)
		assert.Contains(t, err.Error(), "schedules[0]", name)
	}
}

func TestScheduledMasked(t *testing.T) {
	s := Scheduled{Change: Change{Set: map[string]string{"api_key": "sk-live-0123456789", "token": "short", "region": "eu"}, Secret: []string{"token"}}}
	m := s.Masked([]string{"api_key"})
	assert.Equal(t, map[string]string{"api_key": "****6789", "token": "****", "region": "eu"}, m.Change.Set)
	assert.Equal(t, "sk-live-0123456789", s.Change.Set["api_key"], "the original is untouched")
}
