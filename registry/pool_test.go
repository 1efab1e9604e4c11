package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// poolGroups is a stored pool covering every field.
func poolGroups() []registry.Group {
	return []registry.Group{
		{Name: "alpha", Version: 3, State: registry.Active, Weight: 2.5, Quota: "100/s burst 20",
			Config:     map[string]string{"endpoint": "https://a", "token": "sk-live-0123456789abcd", "short": "abc"},
			SecretKeys: []string{"token", "short"}, Lend: true},
		{Name: "beta", Version: 1, State: registry.Active, Weight: 1, MaxNodes: 1, Config: map[string]string{}, SecretKeys: []string{}, Lend: true},
		{Name: "gamma", Version: 2, State: registry.Draining, Weight: 1, Config: map[string]string{"x": "1"}, SecretKeys: []string{}, Lend: true},
	}
}

func TestExportPool(t *testing.T) {
	p := registry.ExportPool(poolGroups(), false)
	require.Len(t, p.Groups, 3)
	a := p.Groups[0]
	assert.Equal(t, "alpha", a.Name)
	assert.Equal(t, "active", a.State)
	assert.Equal(t, 2.5, *a.Weight)
	assert.Equal(t, 0, *a.MaxNodes)
	assert.Equal(t, "100/s burst 20", a.Quota)
	assert.Equal(t, map[string]string{"endpoint": "https://a", "token": "****abcd", "short": "****"}, a.Config)
	assert.Equal(t, []string{"short", "token"}, a.SecretKeys, "sorted")
	assert.Nil(t, p.Groups[1].Config, "an empty config is left out")
	assert.Equal(t, "draining", p.Groups[2].State)

	revealed := registry.ExportPool(poolGroups(), true)
	assert.Equal(t, "sk-live-0123456789abcd", revealed.Groups[0].Config["token"])

	b, err := json.Marshal(p.Groups[1])
	require.NoError(t, err)
	assert.JSONEq(t, `{"name":"beta","state":"active","weight":1,"max_nodes":1,"eject_after":"3/1m","lend":true}`, string(b))
}

func TestDiffGroups(t *testing.T) {
	old := poolGroups()[0]
	new := old
	new.State, new.Weight, new.MaxNodes, new.Quota = registry.Draining, 3, 2, ""
	new.Config = map[string]string{"endpoint": "https://b", "token": "sk-other", "added": "yes"}
	new.SecretKeys = []string{"token"}
	var got []string
	for _, c := range registry.DiffGroups(old, new) {
		side := func(v *string) string {
			if v == nil {
				return "<nil>"
			}
			return *v
		}
		got = append(got, c.Field+": "+side(c.Old)+" -> "+side(c.New))
	}
	assert.Equal(t, []string{
		"state: active -> draining",
		"weight: 2.5 -> 3",
		"max_nodes: 0 -> 2",
		"quota: 100/s burst 20 -> ",
		"config.added: <nil> -> yes",
		"config.endpoint: https://a -> https://b",
		"config.short: **** -> <nil>",
		"config.token: **** -> ****",
		"secret_keys: short,token -> token",
	}, got)
	assert.Empty(t, registry.DiffGroups(old, old))
	// Zero state and weight read as their defaults.
	assert.Empty(t, registry.DiffGroups(registry.Group{Name: "z"}, registry.Group{Name: "z", State: registry.Active, Weight: 1}))
}

func TestPlanImport(t *testing.T) {
	have := poolGroups()
	// A masked export re-imports as it is: nothing changes.
	p, err := registry.PlanImport(registry.ExportPool(have, false), have, true)
	require.NoError(t, err)
	assert.Equal(t, 3, p.Unchanged)
	assert.Equal(t, 0, p.Writes())
	assert.Equal(t, []string{}, p.Added)
	assert.Equal(t, []registry.GroupChanges{}, p.Changed)

	doc := registry.ExportPool(have, false)
	doc.Groups[0].Config["endpoint"] = "https://a2"
	doc.Groups = append(doc.Groups[:1], registry.PoolGroup{
		Name: "delta", Quota: " 600/M ", Config: map[string]string{"key": "v"}, SecretKeys: []string{"key"}, State: "retired",
	})
	p, err = registry.PlanImport(doc, have, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"delta"}, p.Added)
	assert.Equal(t, []string{"beta", "gamma"}, p.Kept)
	assert.Equal(t, []string{}, p.Removed)
	require.Len(t, p.Changed, 1)
	assert.Equal(t, "alpha", p.Changed[0].Name)
	require.Len(t, p.Changed[0].Fields, 1, "the masked secrets match: only the endpoint changes")
	assert.Equal(t, "config.endpoint", p.Changed[0].Fields[0].Field)
	d, ok := p.AddedGroup("delta")
	require.True(t, ok)
	assert.Equal(t, registry.Group{Name: "delta", State: registry.Retired, Weight: 1, Quota: "600/m",
		Config: map[string]string{"key": "v"}, SecretKeys: []string{"key"}, EjectAfter: "3/1m", Lend: true}, d)
	_, ok = p.AddedGroup("alpha")
	assert.False(t, ok)
	assert.Equal(t, 4, p.Writes(), "update alpha, add delta, retire and finish delta")

	p, err = registry.PlanImport(doc, have, true)
	require.NoError(t, err)
	assert.Equal(t, []string{"beta", "gamma"}, p.Removed)
	assert.Equal(t, []string{}, p.Kept)
	assert.Equal(t, 6, p.Writes())

	b, err := json.Marshal(p)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), `{"added":["delta"],"changed":[{"name":"alpha","fields":[{"field":"config.endpoint","old":"https://a","new":"https://a2"}]}],"removed":["beta","gamma"],"unchanged":0,"kept":[],"schedules":{"added":0,"pending":0,"expired":0}}`), "%s", b)
}

func TestPlanImportProblems(t *testing.T) {
	have := poolGroups()
	for _, tc := range []struct {
		name string
		pg   registry.PoolGroup
		kind error
		msg  string
	}{
		{"name", registry.PoolGroup{Name: "Bad!"}, registry.ErrInvalidName, "invalid name: want ^[a-z0-9][a-z0-9._-]{0,62}$"},
		{"state", registry.PoolGroup{Name: "n", State: "paused"}, registry.ErrInvalidState, `invalid state "paused": want active, draining or retired`},
		{"weight", registry.PoolGroup{Name: "n", Weight: f64(-2)}, registry.ErrInvalidWeight, "invalid weight -2: must be a number > 0"},
		{"max_nodes", registry.PoolGroup{Name: "n", MaxNodes: new(-1)}, registry.ErrInvalidMaxNodes, "invalid max_nodes -1: must be >= 0 (0 = unlimited)"},
		{"quota", registry.PoolGroup{Name: "n", Quota: "fast"}, registry.ErrInvalidQuota, `invalid quota "fast": limit 1 ("fast"): want N/UNIT or N tokens/UNIT`},
		{"empty key", registry.PoolGroup{Name: "n", Config: map[string]string{"": "v"}}, registry.ErrInvalidConfig, "config has an empty key"},
		{"secret twice", registry.PoolGroup{Name: "n", Config: map[string]string{"k": "v"}, SecretKeys: []string{"k", "k"}}, registry.ErrInvalidConfig, `secret key "k" listed twice`},
		{"secret not in config", registry.PoolGroup{Name: "n", SecretKeys: []string{"k"}}, registry.ErrInvalidConfig, `secret key "k" is not a config key`},
		{"too large", registry.PoolGroup{Name: "n", Config: map[string]string{"k": strings.Repeat("x", 70000)}}, registry.ErrConfigTooLarge, "config is 70008 bytes encoded; at most 65536"},
		{"masked secret of a new group", registry.PoolGroup{Name: "n", Config: map[string]string{"k": "****"}, SecretKeys: []string{"k"}}, registry.ErrMaskedSecret, "config.k holds a masked secret that matches no stored value"},
		{"masked secret that matches nothing", registry.PoolGroup{Name: "alpha", Config: map[string]string{"token": "****zzzz", "short": "****"}, SecretKeys: []string{"token", "short"}}, registry.ErrMaskedSecret, "config.token holds a masked secret that matches no stored value"},
		{"un-secret", registry.PoolGroup{Name: "alpha", Config: map[string]string{"token": "x"}}, registry.ErrUnmarkSecret, "config.token is secret in the pool and import cannot un-mark it"},
		{"draining back to active", registry.PoolGroup{Name: "gamma", State: "active", Config: map[string]string{"x": "1"}}, registry.ErrInvalidState, "state draining cannot become active (a retired or draining group never becomes active again; delete it and add it anew)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{{Name: "ok"}, tc.pg}}, have, true)
			var pe *registry.PoolError
			require.ErrorAs(t, err, &pe)
			require.Len(t, pe.Problems, 1)
			p := pe.Problems[0]
			assert.Equal(t, 1, p.Index)
			assert.Equal(t, tc.pg.Name, p.Name)
			assert.ErrorIs(t, p.Err, tc.kind)
			assert.EqualError(t, p.Err, tc.msg)
			assert.ErrorIs(t, err, tc.kind)
		})
	}

	// Every problem at once, in document order.
	doc := registry.Pool{Groups: []registry.PoolGroup{
		{Name: "another"},
		{Name: "Bad!"},
		{Name: "alpha", Weight: f64(-1)},
		{Name: "another"},
		{Name: "alpha", Config: map[string]string{"token": "x"}},
	}}
	_, err := registry.PlanImport(doc, have, false)
	var pe *registry.PoolError
	require.ErrorAs(t, err, &pe)
	require.Len(t, pe.Problems, 4)
	assert.Equal(t, []int{1, 2, 3, 4}, []int{pe.Problems[0].Index, pe.Problems[1].Index, pe.Problems[2].Index, pe.Problems[3].Index})
	assert.ErrorIs(t, pe.Problems[2].Err, registry.ErrDuplicateGroup)
	assert.Equal(t, 0, pe.Problems[2].First)
	assert.Equal(t, 2, pe.Problems[3].First)
	assert.EqualError(t, err, `registry: invalid pool: groups[1] "Bad!": invalid name: want ^[a-z0-9][a-z0-9._-]{0,62}$; `+
		`groups[2] "alpha": invalid weight -1: must be a number > 0; groups[3] "another": listed twice; groups[4] "alpha": listed twice`)

	// The problem's Key names the config key for the caller's way out.
	_, err = registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{{Name: "alpha", Config: map[string]string{"token": "x", "short": "y"}, SecretKeys: []string{"short"}}}}, have, false)
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "token", pe.Problems[0].Key)
}

// TestImportApply runs plans on Redis: the order of the writes, and the
// undo when a write fails midway.
func TestImportApply(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()

	t.Run("Order", func(t *testing.T) {
		e := newEnv(t, rdb)
		_, err := e.reg.Add(ctx, "act", registry.Change{}, "seed")
		require.NoError(t, err)
		_, err = e.reg.Add(ctx, "dra", registry.Change{}, "seed")
		require.NoError(t, err)
		_, err = e.reg.Retire(ctx, "dra", 0, "seed")
		require.NoError(t, err)
		_, err = e.reg.Add(ctx, "upd", registry.Change{}, "seed")
		require.NoError(t, err)
		_, err = e.reg.Add(ctx, "gone", registry.Change{}, "seed")
		require.NoError(t, err)
		seeded := readEvents(t, e.reg)

		have, err := e.reg.List(ctx)
		require.NoError(t, err)
		p, err := registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{
			{Name: "act", State: "retired"},
			{Name: "dra", State: "retired"},
			{Name: "new", State: "draining"},
			{Name: "upd", Weight: f64(2)},
		}}, have, true)
		require.NoError(t, err)
		require.NoError(t, p.Apply(ctx, e.reg, "importer"))

		var got []string
		for _, ev := range readEvents(t, e.reg)[len(seeded):] {
			if ev.Group != "" {
				got = append(got, ev.Type+" "+ev.Group+" by "+ev.By)
			}
		}
		// Reversible writes first; state changes, then deletions, last.
		assert.Equal(t, []string{
			"group.added new by importer",
			"group.updated upd by importer",
			"group.retiring act by importer",
			"group.retired act by importer",
			"group.retired dra by importer",
			"group.retiring new by importer",
			"group.deleted gone by importer",
		}, got)

		// Applying the document again writes nothing.
		have, err = e.reg.List(ctx)
		require.NoError(t, err)
		before := e.dump(t)
		p, err = registry.PlanImport(registry.ExportPool(have, false), have, true)
		require.NoError(t, err)
		assert.Equal(t, 0, p.Writes())
		require.NoError(t, p.Apply(ctx, e.reg, "importer"))
		assert.Equal(t, before, e.dump(t))
	})

	t.Run("UndoOnFailure", func(t *testing.T) {
		e := newEnv(t, rdb)
		for _, n := range []string{"kept", "raced"} {
			_, err := e.reg.Add(ctx, n, registry.Change{Set: map[string]string{"a": "1"}}, "seed")
			require.NoError(t, err)
		}
		have, err := e.reg.List(ctx)
		require.NoError(t, err)
		p, err := registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{
			{Name: "added", Config: map[string]string{"a": "1"}},
			{Name: "kept", Config: map[string]string{"a": "2"}},
			{Name: "raced", Config: map[string]string{"a": "2"}},
		}}, have, false)
		require.NoError(t, err)

		// Someone changes "raced" after the plan was made: its update fails.
		_, err = e.reg.Update(ctx, "raced", registry.Change{Set: map[string]string{"b": "2"}}, "other")
		require.NoError(t, err)
		err = p.Apply(ctx, e.reg, "importer", registry.WithUndoBy("undoer"))
		var ae *registry.ApplyError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, "raced", ae.Group)
		assert.ErrorIs(t, err, registry.ErrVersionMismatch)
		assert.Equal(t, 2, ae.Undone)
		assert.Empty(t, ae.Standing)
		assert.EqualError(t, err, `registry: import stopped at group "raced": update group "raced": version mismatch: current version is 2, not 1; the 2 writes before it were undone, the pool is as it was`)

		_, err = e.reg.Get(ctx, "added")
		assert.ErrorIs(t, err, registry.ErrNotFound, "the added group is deleted again")
		kept, err := e.reg.Get(ctx, "kept")
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"a": "1"}, kept.Config, "the updated group is rolled back")
		assert.Equal(t, int64(3), kept.Version)
		assert.Equal(t, "undoer", kept.UpdatedBy)
		raced, err := e.reg.Get(ctx, "raced")
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"a": "1", "b": "2"}, raced.Config, "the concurrent change stands")
	})

	t.Run("IrreversibleWritesStand", func(t *testing.T) {
		e := newEnv(t, rdb)
		for _, n := range []string{"old", "gone"} {
			_, err := e.reg.Add(ctx, n, registry.Change{}, "seed")
			require.NoError(t, err)
		}
		have, err := e.reg.List(ctx)
		require.NoError(t, err)
		p, err := registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{
			{Name: "fresh"},
			{Name: "old", State: "draining"},
		}}, have, true)
		require.NoError(t, err)

		// "gone" is deleted by someone else: the prune fails after the retire.
		require.NoError(t, e.reg.Delete(ctx, "gone", "other"))
		err = p.Apply(ctx, e.reg, "importer")
		var ae *registry.ApplyError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, "gone", ae.Group)
		assert.ErrorIs(t, err, registry.ErrNotFound)
		assert.Equal(t, 1, ae.Undone, "fresh is deleted again")
		assert.Equal(t, []registry.StandingWrite{{Group: "old", Done: "retiring"}}, ae.Standing)
		assert.Contains(t, err.Error(), "; 1 writes undone, these remain: retiring old")
		_, err = e.reg.Get(ctx, "fresh")
		assert.ErrorIs(t, err, registry.ErrNotFound)
	})
}

func TestStandingWriteString(t *testing.T) {
	assert.Equal(t, "retiring old", registry.StandingWrite{Group: "old", Done: "retiring"}.String())
	assert.Equal(t, "added x (undo failed: boom)", registry.StandingWrite{Group: "x", Done: "added", UndoErr: errors.New("boom")}.String())
}

// readEvents reads the whole event log of reg.
func readEvents(t *testing.T, reg *registry.Registry) []registry.Event {
	t.Helper()
	evs, err := reg.Events(context.Background(), "", 1000, 0)
	require.NoError(t, err)
	return evs
}
