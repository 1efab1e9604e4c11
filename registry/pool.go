package registry

import (
	"context"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaskPrefix starts every masked secret value: Masked shows a short secret
// as MaskPrefix alone and a longer one as MaskPrefix and its last 4
// characters. Diffs show every secret value as MaskPrefix.
const MaskPrefix = "****"

// DefaultUndoTimeout is how long Apply may spend undoing the writes made
// before a failed one, unless WithUndoTimeout says otherwise.
const DefaultUndoTimeout = 10 * time.Second

// Pool is the export document of a namespace: the settings of every group,
// without versions, timestamps or holders. `allot export` writes it and
// `allot import` reads it, as GET /v1/export and POST /v1/import do. Its
// field names (JSON and YAML) are the file format.
type Pool struct {
	Groups []PoolGroup `json:"groups" yaml:"groups"`
	// Schedules are the pending scheduled changes (see PoolSchedule).
	Schedules []PoolSchedule `json:"schedules,omitempty" yaml:"schedules,omitempty"`
}

// PoolGroup is one group of a Pool. Omitted fields take their defaults
// (state active, weight 1, max_nodes 0, no quota, no config).
type PoolGroup struct {
	Name       string            `json:"name" yaml:"name"`
	State      string            `json:"state,omitempty" yaml:"state,omitempty"`
	Weight     *float64          `json:"weight,omitempty" yaml:"weight,omitempty"`
	MaxNodes   *int              `json:"max_nodes,omitempty" yaml:"max_nodes,omitempty"`
	Quota      string            `json:"quota,omitempty" yaml:"quota,omitempty"`
	Config     map[string]string `json:"config,omitempty" yaml:"config,omitempty"`
	SecretKeys []string          `json:"secret_keys,omitempty" yaml:"secret_keys,omitempty"`
	// EjectAfter is the failure threshold ("3/1m", "0" = never; absent =
	// the default 3/1m).
	EjectAfter string `json:"eject_after,omitempty" yaml:"eject_after,omitempty"`
	// Lend is the lend mark (absent = true: the group may be lent).
	Lend *bool `json:"lend,omitempty" yaml:"lend,omitempty"`
}

// ExportPool is the Pool of groups, in their order, with every field
// written out. Secret values are masked unless reveal: such a document
// re-imports over the same pool (a masked value keeps the stored secret)
// but cannot create those groups anew.
func ExportPool(groups []Group, reveal bool) Pool {
	p := Pool{Groups: make([]PoolGroup, 0, len(groups))}
	for _, g := range groups {
		if !reveal {
			g = g.Masked()
		}
		w, n, lend := g.Weight, g.MaxNodes, g.Lend
		pg := PoolGroup{Name: g.Name, State: string(stateOrActive(g.State)), Weight: &w, MaxNodes: &n,
			Quota: g.Quota, Config: g.Config, SecretKeys: sortedCopy(g.SecretKeys), EjectAfter: ejectOrDefault(g.EjectAfter),
			Lend: &lend}
		if len(pg.Config) == 0 {
			pg.Config = nil
		}
		p.Groups = append(p.Groups, pg)
	}
	return p
}

// Export returns the Pool of every group of the namespace, sorted by name;
// secret values are masked unless reveal.
func (r *Registry) Export(ctx context.Context, reveal bool) (Pool, error) {
	groups, err := r.List(ctx)
	if err != nil {
		return Pool{}, err
	}
	items, err := r.Schedules(ctx)
	if err != nil {
		return Pool{}, err
	}
	if reveal {
		// Export writes plain text: a value this process cannot open is
		// refused, not written sealed.
		if err := RequireOpen(groups...); err != nil {
			return Pool{}, err
		}
		if err := RequireOpenSchedules(items...); err != nil {
			return Pool{}, err
		}
	}
	p := ExportPool(groups, reveal)
	p.Schedules = ExportSchedules(items, groups, reveal)
	return p, nil
}

// FieldChange is one field that differs between two versions of a group.
// Field is "state", "weight", "max_nodes", "quota", "eject_after", "lend", "config.KEY" or
// "secret_keys". Old is nil for an added config key, New for a removed one.
// Secret config values are shown as MaskPrefix.
type FieldChange struct {
	Field string  `json:"field" yaml:"field"`
	Old   *string `json:"old" yaml:"old"`
	New   *string `json:"new" yaml:"new"`
}

// GroupChanges is the field-level diff of one changed group.
type GroupChanges struct {
	Name   string        `json:"name" yaml:"name"`
	Fields []FieldChange `json:"fields" yaml:"fields"`
}

// DiffGroups lists what changed from old to new, in a stable order: state,
// weight, max_nodes, quota, eject_after, lend, config keys (sorted), secret_keys. Values never
// include a secret: a config key secret in either version shows as
// MaskPrefix.
//
// Keys in alsoSecret are masked too: a history passes SecretUnion of its
// versions, so a value stored before its key was marked never shows.
func DiffGroups(old, new Group, alsoSecret ...string) []FieldChange {
	var out []FieldChange
	add := func(field, o, n string) {
		if o != n {
			out = append(out, FieldChange{Field: field, Old: &o, New: &n})
		}
	}
	add("state", string(stateOrActive(old.State)), string(stateOrActive(new.State)))
	add("weight", formatWeight(weightOrDefault(old.Weight)), formatWeight(weightOrDefault(new.Weight)))
	add("max_nodes", strconv.Itoa(old.MaxNodes), strconv.Itoa(new.MaxNodes))
	add("quota", old.Quota, new.Quota)
	add("eject_after", ejectOrDefault(old.EjectAfter), ejectOrDefault(new.EjectAfter))
	add("lend", strconv.FormatBool(old.Lend), strconv.FormatBool(new.Lend))
	keys := maps.Clone(old.Config)
	if keys == nil {
		keys = map[string]string{}
	}
	maps.Copy(keys, new.Config)
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		ov, inOld := old.Config[k]
		nv, inNew := new.Config[k]
		if inOld && inNew && ov == nv {
			continue
		}
		secret := old.IsSecret(k) || new.IsSecret(k) || slices.Contains(alsoSecret, k)
		show := func(v string, present bool) *string {
			switch {
			case !present:
				return nil
			case secret:
				v = MaskPrefix
			}
			return &v
		}
		out = append(out, FieldChange{Field: "config." + k, Old: show(ov, inOld), New: show(nv, inNew)})
	}
	add("secret_keys", strings.Join(sortedCopy(old.SecretKeys), ","), strings.Join(sortedCopy(new.SecretKeys), ","))
	return out
}

// ImportPlan is what importing a Pool changes, computed by PlanImport
// without I/O and written by Apply. Its exported fields are the report of
// `allot import -o json` and POST /v1/import.
type ImportPlan struct {
	// Added are the groups to create, in document order.
	Added []string `json:"added" yaml:"added"`
	// Changed are the stored groups whose settings differ, with the diff.
	Changed []GroupChanges `json:"changed" yaml:"changed"`
	// Removed are the stored groups the document lacks, deleted (prune).
	Removed []string `json:"removed" yaml:"removed"`
	// Unchanged counts the groups the document lists as they are stored.
	Unchanged int `json:"unchanged" yaml:"unchanged"`
	// Kept are the stored groups the document lacks, left alone (no prune).
	Kept []string `json:"kept" yaml:"kept"`
	// Schedules reports the document's scheduled changes (see PoolSchedule).
	Schedules ScheduleImport `json:"schedules" yaml:"schedules"`

	added map[string]Group
	steps []importStep
	// schedules are the document's scheduled changes, checked by PlanImport;
	// Apply adds those not pending already.
	schedules []Scheduled
}

// AddedGroup returns the settings group name is created with, for a name
// of Added (its config holds secret values in clear).
func (p ImportPlan) AddedGroup(name string) (Group, bool) {
	g, ok := p.added[name]
	return g, ok
}

// Writes counts the registry writes Apply makes (0: the pool already
// matches the document).
func (p ImportPlan) Writes() int { return len(p.steps) + len(p.schedules) }

// importOp is one kind of registry write of an import.
type importOp int

const (
	opAdd    importOp = iota // Add the group
	opUpdate                 // Update it with IfVersion
	opRetire                 // Retire it (to draining)
	opFinish                 // FinishRetire it (to retired)
	opDelete                 // Delete it (prune)
)

// reversible reports whether a later write can undo op.
func (op importOp) reversible() bool { return op == opAdd || op == opUpdate }

// done says what a write of op has done, for ApplyError.
func (op importOp) done() string {
	switch op {
	case opAdd:
		return "added"
	case opUpdate:
		return "updated"
	case opRetire:
		return "retiring"
	case opFinish:
		return "retired"
	}
	return "deleted"
}

// importStep is one registry write of an import.
type importStep struct {
	op     importOp
	name   string
	change Change
	from   int64 // opUpdate: the stored version the plan was made from
}

// PlanImport validates every group of p against the registry's rules and
// against have (the stored groups) and returns what makes the pool match
// p: adds, updates (each conditional on the version it was planned from),
// then state changes, then — with prune — deletions of the groups p lacks.
// A masked secret value (as written by ExportPool without reveal) keeps the
// stored value when it matches it. It does no I/O. When any group is
// invalid it returns a *PoolError naming every problem.
func PlanImport(p Pool, have []Group, prune bool, opts ...PlanOption) (ImportPlan, error) {
	cfg := planConfig{now: time.Now()}
	for _, o := range opts {
		o(&cfg)
	}
	plan := ImportPlan{Added: []string{}, Changed: []GroupChanges{}, Removed: []string{}, Kept: []string{},
		added: map[string]Group{}}
	stored := make(map[string]Group, len(have))
	for _, g := range have {
		stored[g.Name] = g
	}
	var problems []PoolProblem
	seen := map[string]int{}
	var adds, updates, states []importStep
	for i, pg := range p.Groups {
		if first, dup := seen[pg.Name]; dup {
			problems = append(problems, PoolProblem{Index: i, Name: pg.Name, First: first,
				Err: problem(ErrDuplicateGroup, "listed twice")})
			continue
		}
		seen[pg.Name] = i
		cur, exists := stored[pg.Name]
		want, key, err := desiredGroup(pg, cur, exists)
		if err != nil {
			problems = append(problems, PoolProblem{Index: i, Name: pg.Name, Key: key, Err: err})
			continue
		}
		if !exists {
			c := Change{Set: want.Config, Secret: want.SecretKeys, Weight: &want.Weight, MaxNodes: &want.MaxNodes}
			if want.Quota != "" {
				c.Quota = &want.Quota
			}
			c.EjectAfter = &want.EjectAfter
			c.Lend = &want.Lend
			adds = append(adds, importStep{op: opAdd, name: want.Name, change: c})
			switch want.State {
			case Draining:
				states = append(states, importStep{op: opRetire, name: want.Name})
			case Retired:
				states = append(states, importStep{op: opRetire, name: want.Name}, importStep{op: opFinish, name: want.Name})
			}
			plan.Added = append(plan.Added, want.Name)
			plan.added[want.Name] = want
			continue
		}
		fields := DiffGroups(cur, want)
		if len(fields) == 0 {
			plan.Unchanged++
			continue
		}
		plan.Changed = append(plan.Changed, GroupChanges{Name: want.Name, Fields: fields})
		if c := contentChange(cur, want); c.Edits() {
			c.IfVersion = cur.Version
			updates = append(updates, importStep{op: opUpdate, name: want.Name, change: c, from: cur.Version})
		}
		from, to := stateOrActive(cur.State), want.State
		if from == Active && to != Active {
			states = append(states, importStep{op: opRetire, name: want.Name})
		}
		if from != Retired && to == Retired {
			states = append(states, importStep{op: opFinish, name: want.Name})
		}
	}
	if len(problems) > 0 {
		return ImportPlan{}, &PoolError{Problems: problems}
	}
	var deletes []importStep
	for _, g := range have {
		switch _, listed := seen[g.Name]; {
		case listed:
		case prune:
			plan.Removed = append(plan.Removed, g.Name)
			deletes = append(deletes, importStep{op: opDelete, name: g.Name})
		default:
			plan.Kept = append(plan.Kept, g.Name)
		}
	}
	fileSecrets := make(map[string][]string, len(p.Groups))
	for _, pg := range p.Groups {
		fileSecrets[pg.Name] = pg.SecretKeys
	}
	known := func(g string) bool {
		_, listed := seen[g]
		_, exists := stored[g]
		return listed || (exists && !prune)
	}
	secrets := func(g string) []string { return slices.Concat(stored[g].SecretKeys, fileSecrets[g]) }
	if err := plan.planSchedules(p.Schedules, cfg, known, secrets); err != nil {
		return ImportPlan{}, err
	}
	// Reversible writes first, so a failure among them can be undone whole.
	plan.steps = slices.Concat(adds, updates, states, deletes)
	return plan, nil
}

// desiredGroup is the group pg asks for, validated with the registry's
// rules; cur is the stored group of that name when exists. A masked secret
// value of cur keeps the stored value. On error, key names the config key
// of an ErrMaskedSecret or ErrUnmarkSecret problem.
func desiredGroup(pg PoolGroup, cur Group, exists bool) (want Group, key string, err error) {
	if err := ValidateName(pg.Name); err != nil {
		return Group{}, "", problem(ErrInvalidName, "invalid name: want ^[a-z0-9][a-z0-9._-]{0,62}$")
	}
	want = Group{Name: pg.Name, State: State(pg.State), Weight: 1, Quota: strings.TrimSpace(pg.Quota)}
	switch want.State {
	case "":
		want.State = Active
	case Active, Draining, Retired:
	default:
		return want, "", problem(ErrInvalidState, "invalid state %q: want active, draining or retired", pg.State)
	}
	if pg.Weight != nil {
		want.Weight = *pg.Weight
	}
	if math.IsNaN(want.Weight) || math.IsInf(want.Weight, 0) || want.Weight <= 0 {
		return want, "", problem(ErrInvalidWeight, "invalid weight %v: must be a number > 0", want.Weight)
	}
	if pg.MaxNodes != nil {
		want.MaxNodes = *pg.MaxNodes
	}
	if want.MaxNodes < 0 {
		return want, "", problem(ErrInvalidMaxNodes, "invalid max_nodes %d: must be >= 0 (0 = unlimited)", want.MaxNodes)
	}
	if want.Quota != "" {
		q, err := ParseQuota(want.Quota)
		if err != nil {
			return want, "", problem(ErrInvalidQuota, "invalid quota %q: %s", pg.Quota, QuotaDetail(err))
		}
		want.Quota = q.String()
	}
	ej, err := ParseEjectAfter(pg.EjectAfter)
	if err != nil {
		return want, "", problem(ErrInvalidEjectAfter, "invalid eject_after %q: want N/WINDOW like 3/1m, or 0 = never", pg.EjectAfter)
	}
	want.EjectAfter = ej.String()
	want.Lend = true
	if pg.Lend != nil {
		want.Lend = *pg.Lend
	}
	want.Config = map[string]string{}
	for k, v := range pg.Config {
		if k == "" {
			return want, "", problem(ErrInvalidConfig, "config has an empty key")
		}
		want.Config[k] = v
	}
	if err := validUTF8(want.Config); err != nil {
		return want, "", problem(ErrInvalidConfig, "config is not valid UTF-8")
	}
	if err := checkPlainValues(want.Config); err != nil {
		return want, "", problem(ErrInvalidConfig, "%s", Reason(err))
	}
	want.SecretKeys = []string{}
	for _, k := range pg.SecretKeys {
		if slices.Contains(want.SecretKeys, k) {
			return want, "", problem(ErrInvalidConfig, "secret key %q listed twice", k)
		}
		v, ok := want.Config[k]
		if !ok {
			return want, "", problem(ErrInvalidConfig, "secret key %q is not a config key", k)
		}
		if strings.HasPrefix(v, MaskPrefix) {
			if !exists || !cur.IsSecret(k) || cur.Masked().Config[k] != v {
				return want, k, problem(ErrMaskedSecret, "config.%s holds a masked secret that matches no stored value", k)
			}
			want.Config[k] = cur.Config[k]
		}
		want.SecretKeys = append(want.SecretKeys, k)
	}
	slices.Sort(want.SecretKeys)
	if b, _ := json.Marshal(want.Config); len(b) > MaxConfigBytes {
		return want, "", problem(ErrConfigTooLarge, "config is %d bytes encoded; at most %d", len(b), MaxConfigBytes)
	}
	if !exists {
		return want, "", nil
	}
	for _, k := range cur.SecretKeys {
		if _, kept := want.Config[k]; kept && !want.IsSecret(k) {
			return want, k, problem(ErrUnmarkSecret, "config.%s is secret in the pool and import cannot un-mark it", k)
		}
	}
	from := stateOrActive(cur.State)
	if from != want.State && (from == Retired || want.State == Active) {
		return want, "", problem(ErrInvalidState, "state %s cannot become %s (a retired or draining group never becomes active again; delete it and add it anew)", from, want.State)
	}
	return want, "", nil
}

// contentChange is the Change that turns cur's settings into want's.
func contentChange(cur, want Group) Change {
	var c Change
	for k, v := range want.Config {
		if old, ok := cur.Config[k]; !ok || old != v {
			if c.Set == nil {
				c.Set = map[string]string{}
			}
			c.Set[k] = v
		}
	}
	for k := range cur.Config {
		if _, ok := want.Config[k]; !ok {
			c.Unset = append(c.Unset, k)
		}
	}
	slices.Sort(c.Unset)
	for _, k := range want.SecretKeys {
		if !cur.IsSecret(k) {
			c.Secret = append(c.Secret, k)
		}
	}
	if weightOrDefault(cur.Weight) != want.Weight {
		c.Weight = &want.Weight
	}
	if cur.MaxNodes != want.MaxNodes {
		c.MaxNodes = &want.MaxNodes
	}
	if cur.Quota != want.Quota {
		c.Quota = &want.Quota
	}
	if ejectOrDefault(cur.EjectAfter) != want.EjectAfter {
		c.EjectAfter = &want.EjectAfter
	}
	if cur.Lend != want.Lend {
		c.Lend = &want.Lend
	}
	return c
}

// applyConfig is what ApplyOptions set.
type applyConfig struct {
	undoBy      string
	undoTimeout time.Duration
}

// ApplyOption configures Apply.
type ApplyOption func(*applyConfig)

// WithUndoBy sets who the writes that undo a failed import are recorded
// as (default: the by given to Apply).
func WithUndoBy(by string) ApplyOption {
	return func(c *applyConfig) {
		if by != "" {
			c.undoBy = by
		}
	}
}

// WithUndoTimeout sets how long undoing a failed import may take. The undo
// runs on a context of its own, not cancelled with Apply's, since that
// context may be what failed (default: DefaultUndoTimeout).
func WithUndoTimeout(d time.Duration) ApplyOption {
	return func(c *applyConfig) {
		if d > 0 {
			c.undoTimeout = d
		}
	}
}

// Apply makes the writes of p on reg, recorded as by, in order: adds,
// updates (each only if nobody changed the group since p was planned),
// retires, then deletions. When a write fails, the adds and updates made
// before it are undone, newest first — an added group is deleted, an
// updated one rolled back to the version p was planned from — and the
// error is an *ApplyError saying what was undone and what stands. Retires
// and deletions cannot be undone; they come last, so they only happen once
// every other write succeeded.
func (p ImportPlan) Apply(ctx context.Context, reg *Registry, by string, opts ...ApplyOption) error {
	cfg := applyConfig{undoBy: by, undoTimeout: DefaultUndoTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	var done []importStep
	for _, s := range p.steps {
		var err error
		switch s.op {
		case opAdd:
			_, err = reg.Add(ctx, s.name, s.change, by)
		case opUpdate:
			_, err = reg.Update(ctx, s.name, s.change, by)
		case opRetire:
			_, err = reg.Retire(ctx, s.name, 0, by)
		case opFinish:
			_, err = reg.FinishRetire(ctx, s.name, by)
		case opDelete:
			err = reg.Delete(ctx, s.name, by)
		}
		if err != nil {
			ae := &ApplyError{Group: s.name, Err: err}
			undo(ctx, reg, cfg, done, ae)
			return ae
		}
		done = append(done, s)
	}
	if f := p.addSchedules(ctx, reg, by, p.schedules); f != nil {
		ae := &ApplyError{Group: f.group, Err: f.err}
		undo(ctx, reg, cfg, done, ae)
		return ae
	}
	return nil
}

// undo reverts the reversible steps of done, newest first, and records in
// ae what was undone and what stands.
func undo(parent context.Context, reg *Registry, cfg applyConfig, done []importStep, ae *ApplyError) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), cfg.undoTimeout)
	defer cancel()
	for i := len(done) - 1; i >= 0; i-- {
		s := done[i]
		if !s.op.reversible() {
			ae.Standing = append(ae.Standing, StandingWrite{Group: s.name, Done: s.op.done()})
			continue
		}
		var err error
		if s.op == opAdd {
			err = reg.Delete(ctx, s.name, cfg.undoBy)
		} else {
			_, err = reg.Rollback(ctx, s.name, s.from, cfg.undoBy)
		}
		if err != nil {
			ae.Standing = append(ae.Standing, StandingWrite{Group: s.name, Done: s.op.done(), UndoErr: err})
			continue
		}
		ae.Undone++
	}
}

func stateOrActive(s State) State {
	if s == "" {
		return Active
	}
	return s
}

func weightOrDefault(w float64) float64 {
	if w == 0 {
		return 1
	}
	return w
}

// formatWeight renders a weight as the CLI and the API show it: 1, 2.5.
func formatWeight(w float64) string { return strconv.FormatFloat(w, 'f', -1, 64) }

// ejectOrDefault is the canonical eject_after of a group ("" = the default).
func ejectOrDefault(s string) string {
	e, err := ParseEjectAfter(s)
	if err != nil {
		return s
	}
	return e.String()
}
