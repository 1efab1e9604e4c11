package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/allot-io/allot/registry"
)

// Pool is the document of GET /v1/export and POST /v1/import — the same
// document `allot export` writes and `allot import` reads: every group's
// settings, as YAML or JSON.
type Pool struct {
	Groups []PoolGroup `json:"groups" yaml:"groups"`
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
}

// ImportReport says what an import changed (or, dry, would change). Its
// JSON is the one of `allot import -o json`.
type ImportReport struct {
	DryRun    bool           `json:"dry_run"`
	Added     []string       `json:"added"`
	Changed   []GroupChanges `json:"changed"`
	Removed   []string       `json:"removed"`
	Unchanged int            `json:"unchanged"`
	// Kept are groups in Redis but not in the document, left alone without prune.
	Kept []string `json:"kept"`
}

// GroupChanges is the field-level diff of one changed group.
type GroupChanges struct {
	Name   string        `json:"name"`
	Fields []FieldChange `json:"fields"`
}

// FieldChange is one field that differs. Old is nil for an added config
// key, New for a removed one. Secret values are shown as "****".
type FieldChange struct {
	Field string  `json:"field"`
	Old   *string `json:"old"`
	New   *string `json:"new"`
}

// maskedPrefix starts every masked secret value (see registry.Group.Masked).
const maskedPrefix = "****"

func (s *Server) export(w http.ResponseWriter, r *http.Request) error {
	show, err := reveal(r)
	if err != nil {
		return err
	}
	format, err := exportFormat(r)
	if err != nil {
		return err
	}
	groups, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	p := exportPool(groups, show)
	if format == "json" {
		writeJSON(w, http.StatusOK, p)
		return nil
	}
	var buf bytes.Buffer
	if !show && slices.ContainsFunc(groups, func(g registry.Group) bool { return len(g.SecretKeys) > 0 }) {
		buf.WriteString("# Secret values are masked: this file re-imports over the same pool (masked\n" +
			"# values keep the stored secret) but cannot create those groups anew.\n" +
			"# An admin exports them with ?reveal=true.\n")
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return err
	}
	_ = enc.Close()
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// exportPool builds the export document; secrets are masked unless show.
func exportPool(groups []registry.Group, show bool) Pool {
	p := Pool{Groups: make([]PoolGroup, 0, len(groups))}
	for _, g := range groups {
		if !show {
			g = g.Masked()
		}
		w, n := g.Weight, g.MaxNodes
		pg := PoolGroup{Name: g.Name, State: string(stateOrActive(g.State)), Weight: &w, MaxNodes: &n,
			Quota: g.Quota, Config: g.Config, SecretKeys: sortedCopy(g.SecretKeys)}
		if len(pg.Config) == 0 {
			pg.Config = nil
		}
		p.Groups = append(p.Groups, pg)
	}
	return p
}

// exportFormat picks yaml or json from ?format= or else the Accept header
// (default yaml, the format of `allot export`).
func exportFormat(r *http.Request) (string, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "yaml", "yml":
		return "yaml", nil
	case "json":
		return "json", nil
	case "":
	default:
		return "", errBadRequest("format=%q: want yaml or json", f)
	}
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		switch {
		case mt == "application/json":
			return "json", nil
		case strings.Contains(mt, "yaml"):
			return "yaml", nil
		}
	}
	return "yaml", nil
}

// importPool makes the pool match a Pool document, all or nothing: every
// group is validated and the whole diff computed before anything is
// written; ?dry_run=true only reports it; ?prune=true deletes groups the
// document does not list. Adds and updates come first and are undone if a
// later write fails; retires and deletes, which cannot be undone, come last.
func (s *Server) importPool(w http.ResponseWriter, r *http.Request) error {
	dry, err := boolParam(r, "dry_run")
	if err != nil {
		return err
	}
	prune, err := boolParam(r, "prune")
	if err != nil {
		return err
	}
	p, err := decodePool(w, r)
	if err != nil {
		return err
	}
	have, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	plan, err := planImport(p, have, prune)
	if err != nil {
		return err
	}
	plan.report.DryRun = dry
	if !dry && len(plan.steps) > 0 {
		if err := s.applyImport(r.Context(), plan.steps, actor(r)); err != nil {
			return err
		}
		s.log.Info("pool imported", "added", len(plan.report.Added), "changed", len(plan.report.Changed),
			"removed", len(plan.report.Removed), "by", actor(r))
		s.Nudge()
	}
	writeJSON(w, http.StatusOK, plan.report)
	return nil
}

// decodePool reads a YAML or JSON Pool strictly (JSON is YAML; unknown
// fields, a second document or no groups list are refused).
func decodePool(w http.ResponseWriter, r *http.Request) (Pool, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxImportBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Pool{}, errTooLarge(mbe.Limit)
		}
		return Pool{}, errBadRequest("read body: %v", err)
	}
	var p Pool
	dec := yaml.NewDecoder(bytes.NewReader(body))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return Pool{}, errBadRequest("empty request body: want a pool document (groups: [...])")
		}
		return Pool{}, errBadRequest("malformed pool document: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Pool{}, errBadRequest("malformed pool document: more than one document")
	}
	var probe struct {
		Groups *[]yaml.Node `yaml:"groups"`
	}
	if err := yaml.Unmarshal(body, &probe); err != nil || probe.Groups == nil {
		return Pool{}, errBadRequest(`malformed pool document: no "groups" list (an empty pool is "groups: []")`)
	}
	return p, nil
}

// stepOp is one kind of registry write of an import.
type stepOp int

const (
	stepAdd    stepOp = iota // Add the group
	stepUpdate               // Update it with IfVersion
	stepRetire               // Retire it (to draining)
	stepFinish               // FinishRetire it (to retired)
	stepDelete               // Delete it (prune)
)

// importStep is one registry write of an import.
type importStep struct {
	op     stepOp
	name   string
	change registry.Change
	have   registry.Group // the stored group before the import (update)
}

// importPlan is the validated work of an import.
type importPlan struct {
	report ImportReport
	steps  []importStep
}

// planImport validates every group of p against the registry's rules and
// the stored groups and returns the writes that make the pool match p. It
// does no I/O. Every problem is reported at once.
func planImport(p Pool, have []registry.Group, prune bool) (importPlan, error) {
	rep := ImportReport{Added: []string{}, Changed: []GroupChanges{}, Removed: []string{}, Kept: []string{}}
	stored := make(map[string]registry.Group, len(have))
	for _, g := range have {
		stored[g.Name] = g
	}
	var problems []string
	seen := map[string]bool{}
	var adds, updates, states, deletes []importStep
	for i, pg := range p.Groups {
		if seen[pg.Name] {
			problems = append(problems, fmt.Sprintf("groups[%d] %q: listed twice", i, pg.Name))
			continue
		}
		seen[pg.Name] = true
		cur, exists := stored[pg.Name]
		want, err := desiredGroup(pg, cur, exists)
		if err != nil {
			problems = append(problems, fmt.Sprintf("groups[%d] %q: %v", i, pg.Name, err))
			continue
		}
		if !exists {
			c := registry.Change{Set: want.Config, Secret: want.SecretKeys, Weight: &want.Weight, MaxNodes: &want.MaxNodes}
			if want.Quota != "" {
				c.Quota = &want.Quota
			}
			adds = append(adds, importStep{op: stepAdd, name: want.Name, change: c})
			switch want.State {
			case registry.Draining:
				states = append(states, importStep{op: stepRetire, name: want.Name})
			case registry.Retired:
				states = append(states, importStep{op: stepRetire, name: want.Name}, importStep{op: stepFinish, name: want.Name})
			}
			rep.Added = append(rep.Added, want.Name)
			continue
		}
		fields := diffGroups(cur, want)
		if len(fields) == 0 {
			rep.Unchanged++
			continue
		}
		rep.Changed = append(rep.Changed, GroupChanges{Name: want.Name, Fields: fields})
		if c := contentChange(cur, want); c.Edits() {
			c.IfVersion = cur.Version
			updates = append(updates, importStep{op: stepUpdate, name: want.Name, change: c, have: cur})
		}
		from, to := stateOrActive(cur.State), want.State
		if from == registry.Active && to != registry.Active {
			states = append(states, importStep{op: stepRetire, name: want.Name})
		}
		if from != registry.Retired && to == registry.Retired {
			states = append(states, importStep{op: stepFinish, name: want.Name})
		}
	}
	if len(problems) > 0 {
		return importPlan{}, errInvalid("import rejected, nothing written: %s", strings.Join(problems, "; "))
	}
	for _, g := range have {
		switch {
		case seen[g.Name]:
		case prune:
			rep.Removed = append(rep.Removed, g.Name)
			deletes = append(deletes, importStep{op: stepDelete, name: g.Name})
		default:
			rep.Kept = append(rep.Kept, g.Name)
		}
	}
	// Reversible writes first, so a failure among them can be undone whole.
	return importPlan{report: rep, steps: slices.Concat(adds, updates, states, deletes)}, nil
}

// desiredGroup is the group pg asks for, validated with the registry's
// rules. A masked secret value of a stored group keeps the stored value.
func desiredGroup(pg PoolGroup, cur registry.Group, exists bool) (registry.Group, error) {
	if err := registry.ValidateName(pg.Name); err != nil {
		return registry.Group{}, errors.New("invalid name: want ^[a-z0-9][a-z0-9._-]{0,62}$")
	}
	want := registry.Group{Name: pg.Name, State: registry.State(pg.State), Weight: 1, Quota: strings.TrimSpace(pg.Quota)}
	switch want.State {
	case "":
		want.State = registry.Active
	case registry.Active, registry.Draining, registry.Retired:
	default:
		return want, fmt.Errorf("invalid state %q: want active, draining or retired", pg.State)
	}
	if pg.Weight != nil {
		want.Weight = *pg.Weight
	}
	if math.IsNaN(want.Weight) || math.IsInf(want.Weight, 0) || want.Weight <= 0 {
		return want, fmt.Errorf("invalid weight %v: must be a number > 0", want.Weight)
	}
	if pg.MaxNodes != nil {
		want.MaxNodes = *pg.MaxNodes
	}
	if want.MaxNodes < 0 {
		return want, fmt.Errorf("invalid max_nodes %d: must be >= 0 (0 = unlimited)", want.MaxNodes)
	}
	if want.Quota != "" {
		q, err := registry.ParseQuota(want.Quota)
		if err != nil {
			return want, fmt.Errorf("invalid quota %q: want RATE/UNIT [burst N] with UNIT s, m or h, e.g. 600/m", pg.Quota)
		}
		want.Quota = q.String()
	}
	want.Config = map[string]string{}
	for k, v := range pg.Config {
		if k == "" {
			return want, errors.New("config has an empty key")
		}
		want.Config[k] = v
	}
	want.SecretKeys = []string{}
	for _, k := range pg.SecretKeys {
		if slices.Contains(want.SecretKeys, k) {
			return want, fmt.Errorf("secret key %q listed twice", k)
		}
		v, ok := want.Config[k]
		if !ok {
			return want, fmt.Errorf("secret key %q is not a config key", k)
		}
		if strings.HasPrefix(v, maskedPrefix) {
			if !exists || !cur.IsSecret(k) || cur.Masked().Config[k] != v {
				return want, fmt.Errorf("config.%s holds a masked secret that matches no stored value; export with ?reveal=true, or put the real value in the document", k)
			}
			want.Config[k] = cur.Config[k]
		}
		want.SecretKeys = append(want.SecretKeys, k)
	}
	slices.Sort(want.SecretKeys)
	if b, _ := json.Marshal(want.Config); len(b) > registry.MaxConfigBytes {
		return want, fmt.Errorf("config is %d bytes encoded; at most %d", len(b), registry.MaxConfigBytes)
	}
	if !exists {
		return want, nil
	}
	for _, k := range cur.SecretKeys {
		if _, kept := want.Config[k]; kept && !want.IsSecret(k) {
			return want, fmt.Errorf("config.%s is secret in the pool and import cannot un-mark it (unset it first, then import)", k)
		}
	}
	from := stateOrActive(cur.State)
	if from != want.State && (from == registry.Retired || want.State == registry.Active) {
		return want, fmt.Errorf("state %s cannot become %s (a retired or draining group never becomes active again; delete it and add it anew)", from, want.State)
	}
	return want, nil
}

// diffGroups lists what changed from old to new: state, weight, max_nodes,
// quota, config keys (sorted), secret_keys. Secret values show as "****".
func diffGroups(old, new registry.Group) []FieldChange {
	var out []FieldChange
	add := func(field, o, n string) {
		if o != n {
			out = append(out, FieldChange{Field: field, Old: &o, New: &n})
		}
	}
	add("state", string(stateOrActive(old.State)), string(stateOrActive(new.State)))
	add("weight", fmtFloat(weightOrDefault(old.Weight)), fmtFloat(weightOrDefault(new.Weight)))
	add("max_nodes", strconv.Itoa(old.MaxNodes), strconv.Itoa(new.MaxNodes))
	add("quota", old.Quota, new.Quota)
	keys := maps.Collect(maps.All(old.Config))
	maps.Copy(keys, new.Config)
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		ov, inOld := old.Config[k]
		nv, inNew := new.Config[k]
		if inOld && inNew && ov == nv {
			continue
		}
		secret := old.IsSecret(k) || new.IsSecret(k)
		show := func(v string, present bool) *string {
			switch {
			case !present:
				return nil
			case secret:
				v = maskedPrefix
			}
			return &v
		}
		out = append(out, FieldChange{Field: "config." + k, Old: show(ov, inOld), New: show(nv, inNew)})
	}
	add("secret_keys", strings.Join(sortedCopy(old.SecretKeys), ","), strings.Join(sortedCopy(new.SecretKeys), ","))
	return out
}

// contentChange is the Change that turns cur's settings into want's.
func contentChange(cur, want registry.Group) registry.Change {
	var c registry.Change
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
	return c
}

// applyImport runs the steps in order. When one fails, the adds and updates
// already done are undone, newest first, and the error says what remains.
func (s *Server) applyImport(ctx context.Context, steps []importStep, by string) error {
	var done []importStep
	for _, st := range steps {
		var err error
		switch st.op {
		case stepAdd:
			_, err = s.reg.Add(ctx, st.name, st.change, by)
		case stepUpdate:
			_, err = s.reg.Update(ctx, st.name, st.change, by)
		case stepRetire:
			_, err = s.reg.Retire(ctx, st.name, 0, by)
		case stepFinish:
			_, err = s.reg.FinishRetire(ctx, st.name, by)
		case stepDelete:
			err = s.reg.Delete(ctx, st.name, by)
		}
		if err != nil {
			return s.undoImport(ctx, done, fmt.Errorf("import stopped at group %q: %w", st.name, err))
		}
		done = append(done, st)
	}
	return nil
}

// undoImport reverts the reversible steps of done after cause and returns
// the error to answer.
func (s *Server) undoImport(parent context.Context, done []importStep, cause error) error {
	// The request's context may be what failed; the undo gets its own budget.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 10*time.Second)
	defer cancel()
	var kept []string
	undone := 0
	for i := len(done) - 1; i >= 0; i-- {
		st := done[i]
		var err error
		switch st.op {
		case stepAdd:
			err = s.reg.Delete(ctx, st.name, "import-undo")
		case stepUpdate:
			_, err = s.reg.Rollback(ctx, st.name, st.have.Version, "import-undo")
		default:
			kept = append(kept, st.name)
			continue
		}
		if err != nil {
			kept = append(kept, st.name)
			continue
		}
		undone++
	}
	ae := toAPIError(cause)
	msg := cause.Error()
	if ae.status >= 500 {
		msg = "import stopped: " + ae.message
	}
	if len(kept) == 0 {
		msg += fmt.Sprintf("; the %d writes before it were undone, the pool is as it was", undone)
	} else {
		msg += fmt.Sprintf("; %d writes undone, these groups keep their new state: %s", undone, strings.Join(kept, ", "))
	}
	return &apiError{status: ae.status, code: ae.code, message: msg, err: cause}
}

func stateOrActive(s registry.State) registry.State {
	if s == "" {
		return registry.Active
	}
	return s
}

func weightOrDefault(w float64) float64 {
	if w == 0 {
		return 1
	}
	return w
}

func sortedCopy(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
