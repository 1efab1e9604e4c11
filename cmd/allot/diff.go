package main

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/allot-io/allot/registry"
)

// masked is what a secret value is shown as in diffs.
const masked = "****"

// fieldChange is one field that differs between two versions of a group.
// Old is nil for an added config key, New for a removed one. Secret values
// are shown as "****".
type fieldChange struct {
	Field string  `json:"field"`
	Old   *string `json:"old"`
	New   *string `json:"new"`
}

// diffGroups lists what changed from old to new, in a stable order: state,
// weight, max_nodes, quota, config keys (sorted), secret_keys.
func diffGroups(old, new registry.Group) []fieldChange {
	var out []fieldChange
	add := func(field, o, n string) {
		if o != n {
			out = append(out, fieldChange{Field: field, Old: &o, New: &n})
		}
	}
	add("state", string(stateOrActive(old.State)), string(stateOrActive(new.State)))
	add("weight", num(weightOrDefault(old.Weight)), num(weightOrDefault(new.Weight)))
	add("max_nodes", strconv.Itoa(old.MaxNodes), strconv.Itoa(new.MaxNodes))
	add("quota", old.Quota, new.Quota)
	keys := map[string]bool{}
	for k := range old.Config {
		keys[k] = true
	}
	for k := range new.Config {
		keys[k] = true
	}
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
				v = masked
			}
			return &v
		}
		out = append(out, fieldChange{Field: "config." + k, Old: show(ov, inOld), New: show(nv, inNew)})
	}
	add("secret_keys", strings.Join(sortedCopy(old.SecretKeys), ","), strings.Join(sortedCopy(new.SecretKeys), ","))
	return out
}

// summarizeChanges renders changes on one short line for `group history`:
// "weight 1→2, +config.a, ~config.b, -config.c".
func summarizeChanges(changes []fieldChange) string {
	if len(changes) == 0 {
		return "no change"
	}
	parts := make([]string, 0, len(changes))
	for _, c := range changes {
		switch {
		case strings.HasPrefix(c.Field, "config."):
			sign := "~"
			if c.Old == nil {
				sign = "+"
			} else if c.New == nil {
				sign = "-"
			}
			parts = append(parts, sign+c.Field)
		default:
			parts = append(parts, c.Field+" "+c.text(c.Old)+"→"+c.text(c.New))
		}
	}
	return strings.Join(parts, ", ")
}

// describe renders one change in full for import diffs:
// `weight: 1 → 2`, `config.url: "a" → "b"`, `config.token: changed (secret)`.
func (c fieldChange) describe() string {
	switch {
	case c.Old != nil && c.New != nil && *c.Old == masked && *c.New == masked:
		return c.Field + ": changed (secret)"
	case c.Old == nil:
		return c.Field + ": added " + c.text(c.New)
	case c.New == nil:
		return c.Field + ": removed"
	}
	return c.Field + ": " + c.text(c.Old) + " → " + c.text(c.New)
}

// text renders one side of c: config values quoted (secrets as ****),
// other fields as they are, "-" for empty.
func (c fieldChange) text(v *string) string {
	switch {
	case v == nil:
		return "-"
	case strings.HasPrefix(c.Field, "config.") && *v != masked:
		return strconv.Quote(*v)
	}
	return dash(*v)
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
	return out
}
