package main

import (
	"strconv"
	"strings"

	"github.com/allot-io/allot/registry"
)

// summarizeChanges renders changes on one short line for `group history`:
// "weight 1→2, +config.a, ~config.b, -config.c".
func summarizeChanges(changes []registry.FieldChange) string {
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
			parts = append(parts, c.Field+" "+changeText(c, c.Old)+"→"+changeText(c, c.New))
		}
	}
	return strings.Join(parts, ", ")
}

// describeChange renders one change in full for import diffs:
// `weight: 1 → 2`, `config.url: "a" → "b"`, `config.token: changed (secret)`.
func describeChange(c registry.FieldChange) string {
	switch {
	case c.Old != nil && c.New != nil && *c.Old == registry.MaskPrefix && *c.New == registry.MaskPrefix:
		return c.Field + ": changed (secret)"
	case c.Old == nil:
		return c.Field + ": added " + changeText(c, c.New)
	case c.New == nil:
		return c.Field + ": removed"
	}
	return c.Field + ": " + changeText(c, c.Old) + " → " + changeText(c, c.New)
}

// changeText renders one side of c: config values quoted (secrets as
// ****), other fields as they are, "-" for empty.
func changeText(c registry.FieldChange, v *string) string {
	switch {
	case v == nil:
		return "-"
	case strings.HasPrefix(c.Field, "config.") && *v != registry.MaskPrefix:
		return strconv.Quote(*v)
	}
	return dash(*v)
}
