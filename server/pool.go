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

	"gopkg.in/yaml.v3"

	"github.com/allot-io/allot/registry"
)

// Pool is the document of GET /v1/export and POST /v1/import: every group's
// definition, as YAML or JSON.
type Pool struct {
	Groups []PoolGroup `json:"groups" yaml:"groups"`
}

// PoolGroup is one group of a Pool. Weight 0 means 1; State "" means active.
type PoolGroup struct {
	Name       string            `json:"name" yaml:"name"`
	State      registry.State    `json:"state,omitempty" yaml:"state,omitempty"`
	Weight     float64           `json:"weight,omitempty" yaml:"weight,omitempty"`
	MaxNodes   int               `json:"max_nodes,omitempty" yaml:"max_nodes,omitempty"`
	Quota      string            `json:"quota,omitempty" yaml:"quota,omitempty"`
	Config     map[string]string `json:"config,omitempty" yaml:"config,omitempty"`
	SecretKeys []string          `json:"secret_keys,omitempty" yaml:"secret_keys,omitempty"`
}

// ImportReport says what an import changed (or, dry, would change).
type ImportReport struct {
	DryRun    bool        `json:"dry_run"`
	Added     []string    `json:"added"`
	Updated   []GroupDiff `json:"updated"`
	Retired   []string    `json:"retired"`
	Deleted   []string    `json:"deleted"`
	Unchanged []string    `json:"unchanged"`
}

// GroupDiff lists the field changes of one group, secret values never shown.
type GroupDiff struct {
	Name    string   `json:"name"`
	Changes []string `json:"changes"`
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
	p := Pool{Groups: make([]PoolGroup, 0, len(groups))}
	for _, g := range groups {
		if !show {
			g = g.Masked()
		}
		pg := PoolGroup{Name: g.Name, Weight: g.Weight, MaxNodes: g.MaxNodes, Quota: g.Quota,
			Config: g.Config, SecretKeys: g.SecretKeys}
		if g.State != registry.Active {
			pg.State = g.State
		}
		p.Groups = append(p.Groups, pg)
	}
	w.Header().Set("Cache-Control", "no-store")
	if format == "json" {
		writeJSON(w, http.StatusOK, p)
		return nil
	}
	var buf bytes.Buffer
	if !show {
		buf.WriteString("# secret values are masked; an admin exports them with ?reveal=true.\n" +
			"# Importing this file keeps the current secret values.\n")
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return err
	}
	_ = enc.Close()
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
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

// importPool applies a Pool document all-or-nothing: every group is
// validated and the whole diff computed before anything is written.
// ?dry_run=true only reports the diff; ?prune=true deletes groups the
// document does not list.
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
	current, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	plan, err := planImport(p, current, prune)
	if err != nil {
		return err
	}
	plan.report.DryRun = dry
	if !dry {
		if err := s.applyImport(r.Context(), plan, actor(r)); err != nil {
			return err
		}
		s.log.Info("pool imported", "added", len(plan.report.Added), "updated", len(plan.report.Updated),
			"retired", len(plan.report.Retired), "deleted", len(plan.report.Deleted), "by", actor(r))
		s.Nudge()
	}
	writeJSON(w, http.StatusOK, plan.report)
	return nil
}

// decodePool reads a YAML or JSON Pool (YAML is a superset; unknown fields
// are refused either way).
func decodePool(w http.ResponseWriter, r *http.Request) (Pool, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxImportBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Pool{}, errTooLarge(mbe.Limit)
		}
		return Pool{}, errBadRequest("read body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return Pool{}, errBadRequest("empty request body: want a pool document (groups: [...])")
	}
	var p Pool
	dec := yaml.NewDecoder(bytes.NewReader(body))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return Pool{}, errBadRequest("malformed pool document: %v", err)
	}
	return p, nil
}

// importPlan is the validated work of an import.
type importPlan struct {
	report  ImportReport
	adds    []PoolGroup
	updates []importUpdate
	retires []string
	deletes []string
}

type importUpdate struct {
	name   string
	change registry.Change
}

// planImport validates every group of p against the current groups and
// computes the changes. Every problem is reported at once.
func planImport(p Pool, current []registry.Group, prune bool) (importPlan, error) {
	plan := importPlan{report: ImportReport{Added: []string{}, Updated: []GroupDiff{}, Retired: []string{},
		Deleted: []string{}, Unchanged: []string{}}}
	byName := map[string]registry.Group{}
	for _, g := range current {
		byName[g.Name] = g
	}
	var problems []string
	seen := map[string]bool{}
	for i, pg := range p.Groups {
		where := fmt.Sprintf("groups[%d] %q", i, pg.Name)
		if seen[pg.Name] {
			problems = append(problems, where+": listed twice")
			continue
		}
		seen[pg.Name] = true
		cur, exists := byName[pg.Name]
		if errs := validatePoolGroup(pg, cur, exists); len(errs) > 0 {
			for _, e := range errs {
				problems = append(problems, where+": "+e)
			}
			continue
		}
		state := pg.State
		if state == "" {
			state = registry.Active
		}
		if !exists {
			plan.adds = append(plan.adds, pg)
			plan.report.Added = append(plan.report.Added, pg.Name)
			if state != registry.Active {
				plan.retires = append(plan.retires, pg.Name)
				plan.report.Retired = append(plan.report.Retired, pg.Name)
			}
			continue
		}
		change, diff := diffGroup(cur, pg)
		if len(diff) > 0 {
			change.IfVersion = cur.Version
			plan.updates = append(plan.updates, importUpdate{name: pg.Name, change: change})
			plan.report.Updated = append(plan.report.Updated, GroupDiff{Name: pg.Name, Changes: diff})
		}
		if state != registry.Active && cur.State == registry.Active {
			plan.retires = append(plan.retires, pg.Name)
			plan.report.Retired = append(plan.report.Retired, pg.Name)
		}
		if len(diff) == 0 && !(state != registry.Active && cur.State == registry.Active) {
			plan.report.Unchanged = append(plan.report.Unchanged, pg.Name)
		}
	}
	if len(problems) > 0 {
		return importPlan{}, errInvalid("import rejected, nothing written: %s", strings.Join(problems, "; "))
	}
	if prune {
		for _, g := range current {
			if !seen[g.Name] {
				plan.deletes = append(plan.deletes, g.Name)
				plan.report.Deleted = append(plan.report.Deleted, g.Name)
			}
		}
	}
	return plan, nil
}

// validatePoolGroup checks pg by the registry's rules (so that no write of
// the import fails on input) and the import's own.
func validatePoolGroup(pg PoolGroup, cur registry.Group, exists bool) []string {
	var errs []string
	if err := registry.ValidateName(pg.Name); err != nil {
		errs = append(errs, "name must match ^[a-z0-9][a-z0-9._-]{0,62}$")
	}
	switch pg.State {
	case "", registry.Active, registry.Draining, registry.Retired:
	default:
		errs = append(errs, fmt.Sprintf("state %q: want active, draining or retired", pg.State))
	}
	if exists && cur.State != registry.Active && (pg.State == "" || pg.State == registry.Active) {
		errs = append(errs, fmt.Sprintf("is %s in the pool; import cannot make it active again (delete it first)", cur.State))
	}
	if math.IsNaN(pg.Weight) || math.IsInf(pg.Weight, 0) || pg.Weight < 0 {
		errs = append(errs, "weight must be a finite number > 0")
	}
	if pg.MaxNodes < 0 {
		errs = append(errs, "max_nodes must be >= 0")
	}
	if pg.Quota != "" {
		if _, err := registry.ParseQuota(pg.Quota); err != nil {
			errs = append(errs, fmt.Sprintf("quota %q: want like 600/m, 10/s or 100/s burst 20", pg.Quota))
		}
	}
	for k := range pg.Config {
		if k == "" {
			errs = append(errs, "config has an empty key")
		}
	}
	for _, k := range pg.SecretKeys {
		if _, ok := pg.Config[k]; !ok {
			errs = append(errs, fmt.Sprintf("secret key %q is not a config key", k))
			continue
		}
		if v := pg.Config[k]; strings.HasPrefix(v, maskedPrefix) && !(exists && cur.IsSecret(k) && maskOf(cur.Config[k]) == v) {
			errs = append(errs, fmt.Sprintf("secret %q holds a masked value that matches no current value; export with ?reveal=true", k))
		}
	}
	if b, err := json.Marshal(resolvedConfig(pg, cur, exists)); err != nil || len(b) > registry.MaxConfigBytes {
		errs = append(errs, "config too large (max 64 KiB encoded)")
	}
	return errs
}

// maskOf is how registry masks a secret value.
func maskOf(v string) string {
	return registry.Group{Config: map[string]string{"k": v}, SecretKeys: []string{"k"}}.Masked().Config["k"]
}

// resolvedConfig is pg's config with masked secrets replaced by the current
// values they stand for.
func resolvedConfig(pg PoolGroup, cur registry.Group, exists bool) map[string]string {
	out := maps.Clone(pg.Config)
	if out == nil {
		out = map[string]string{}
	}
	if !exists {
		return out
	}
	for _, k := range pg.SecretKeys {
		if v := out[k]; strings.HasPrefix(v, maskedPrefix) && cur.IsSecret(k) && maskOf(cur.Config[k]) == v {
			out[k] = cur.Config[k]
		}
	}
	return out
}

// diffGroup returns the change turning cur into pg and its description.
func diffGroup(cur registry.Group, pg PoolGroup) (registry.Change, []string) {
	var c registry.Change
	var diff []string
	weight := pg.Weight
	if weight == 0 {
		weight = 1
	}
	if weight != cur.Weight {
		c.Weight = &weight
		diff = append(diff, fmt.Sprintf("weight: %s → %s", fmtFloat(cur.Weight), fmtFloat(weight)))
	}
	if pg.MaxNodes != cur.MaxNodes {
		n := pg.MaxNodes
		c.MaxNodes = &n
		diff = append(diff, fmt.Sprintf("max_nodes: %d → %d", cur.MaxNodes, n))
	}
	if q := canonicalQuota(pg.Quota); q != cur.Quota {
		c.Quota = &q
		diff = append(diff, fmt.Sprintf("quota: %q → %q", cur.Quota, q))
	}
	want := resolvedConfig(pg, cur, true)
	secret := func(k string) bool { return cur.IsSecret(k) || slices.Contains(pg.SecretKeys, k) }
	for _, k := range slices.Sorted(maps.Keys(want)) {
		old, had := cur.Config[k]
		switch {
		case !had:
			diff = append(diff, describe(k, "added", "", want[k], secret(k)))
		case old != want[k]:
			diff = append(diff, describe(k, "changed", old, want[k], secret(k)))
		default:
			continue
		}
		if c.Set == nil {
			c.Set = map[string]string{}
		}
		c.Set[k] = want[k]
	}
	for _, k := range slices.Sorted(maps.Keys(cur.Config)) {
		if _, ok := want[k]; !ok {
			c.Unset = append(c.Unset, k)
			diff = append(diff, "config."+k+": removed")
		}
	}
	for _, k := range pg.SecretKeys {
		if !cur.IsSecret(k) {
			c.Secret = append(c.Secret, k)
			diff = append(diff, "config."+k+": now secret")
		}
	}
	return c, diff
}

func describe(k, what, old, new string, secret bool) string {
	switch {
	case secret:
		return "config." + k + ": " + what + " (secret)"
	case what == "added":
		return fmt.Sprintf("config.%s: added %q", k, new)
	}
	return fmt.Sprintf("config.%s: %q → %q", k, old, new)
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func canonicalQuota(q string) string {
	if q == "" {
		return ""
	}
	p, err := registry.ParseQuota(q)
	if err != nil {
		return q
	}
	return p.String()
}

// applyImport writes a validated plan: adds, updates (each guarded by the
// version it was diffed against), retires, deletes.
func (s *Server) applyImport(ctx context.Context, plan importPlan, by string) error {
	for _, pg := range plan.adds {
		weight := pg.Weight
		if weight == 0 {
			weight = 1
		}
		maxNodes, quota := pg.MaxNodes, pg.Quota
		c := registry.Change{Set: pg.Config, Secret: pg.SecretKeys, Weight: &weight, MaxNodes: &maxNodes, Quota: &quota}
		if _, err := s.reg.Add(ctx, pg.Name, c, by); err != nil {
			return fmt.Errorf("import: add %q: %w", pg.Name, err)
		}
	}
	for _, u := range plan.updates {
		if _, err := s.reg.Update(ctx, u.name, u.change, by); err != nil {
			return fmt.Errorf("import: update %q: %w", u.name, err)
		}
	}
	for _, name := range plan.retires {
		if _, err := s.reg.Retire(ctx, name, 0, by); err != nil {
			return fmt.Errorf("import: retire %q: %w", name, err)
		}
	}
	for _, name := range plan.deletes {
		if err := s.reg.Delete(ctx, name, by); err != nil {
			return fmt.Errorf("import: delete %q: %w", name, err)
		}
	}
	return nil
}
