package main

import (
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/registry"
)

// This file parses the flags shared by the group commands. The rules behind
// them (names, quotas, schedule times) live in registry; here they only turn
// into usage errors (exit 2).

// changeFlags are the flags that describe a registry.Change.
type changeFlags struct {
	set, unset, secret []string
	unsecret           []string
	weight             weightFlag
	maxNodes           int
	quota              string
	ejectAfter         string
	lend, noLend       bool
}

func (f *changeFlags) register(cmd *cobra.Command, withUnset bool) {
	fs := cmd.Flags()
	fs.StringArrayVar(&f.set, "set", nil, "set config key to value, `k=v` (repeatable)")
	if withUnset {
		fs.StringArrayVar(&f.unset, "unset", nil, "remove config `key` (repeatable)")
		fs.StringArrayVar(&f.unsecret, "unsecret", nil, "remove the secret mark of config `key`, showing its value from now on (repeatable; recorded in the history)")
	}
	fs.StringArrayVar(&f.secret, "secret", nil, "mark config key as secret, `k` or k=v to set it too (repeatable); secret values are masked in every output")
	f.weight.w = 1
	fs.Var(&f.weight, "weight", "the group's share of the pool (> 0), or auto: from the quota (requests/min; tokens/min ÷ 1000 without a request limit)")
	fs.IntVar(&f.maxNodes, "max-nodes", 0, "most nodes that may hold the group at once (0 = unlimited, 1 = exclusive)")
	fs.StringVar(&f.quota, "quota", "", `limits shared by all holders, comma-separated: N/UNIT (requests) or N tokens/UNIT, UNIT s|m|h|d, each optionally "burst B", e.g. "600/m, 90000 tokens/m, 10000/d" ("" clears)`)
	registerEjectAfter(fs, &f.ejectAfter)
	fs.BoolVar(&f.lend, "lend", false, "let nodes that do not hold the group borrow it for a call when their own groups are spent (the default; capped groups are never lent)")
	fs.BoolVar(&f.noLend, "no-lend", false, "never lend the group: only its holders use its key")
}

// change builds the Change the flags ask for; unset flags change nothing.
func (f *changeFlags) change(cmd *cobra.Command) (registry.Change, error) {
	var c registry.Change
	for _, kv := range f.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return c, usageErrorf("invalid --set %q: want key=value", kv)
		}
		if c.Set == nil {
			c.Set = map[string]string{}
		}
		c.Set[k] = v
	}
	for _, kv := range f.secret {
		k, v, hasValue := strings.Cut(kv, "=")
		if k == "" {
			return c, usageErrorf("invalid --secret %q: want key or key=value", kv)
		}
		if hasValue {
			if c.Set == nil {
				c.Set = map[string]string{}
			}
			c.Set[k] = v
		}
		if !slices.Contains(c.Secret, k) {
			c.Secret = append(c.Secret, k)
		}
	}
	for _, k := range f.unset {
		if k == "" || strings.Contains(k, "=") {
			return c, usageErrorf("invalid --unset %q: want a config key", k)
		}
		if _, ok := c.Set[k]; ok {
			return c, usageErrorf("config key %q is both set and unset", k)
		}
		c.Unset = append(c.Unset, k)
	}
	for _, k := range f.unsecret {
		if k == "" || strings.Contains(k, "=") {
			return c, usageErrorf("invalid --unsecret %q: want a config key", k)
		}
		if slices.Contains(c.Secret, k) {
			return c, usageErrorf("config key %q is both --secret and --unsecret", k)
		}
		c.Unsecret = append(c.Unsecret, k)
	}
	fs := cmd.Flags()
	if fs.Changed("weight") {
		if f.weight.auto {
			c.WeightAuto = true
		} else {
			w := f.weight.w
			c.Weight = &w
		}
	}
	if fs.Changed("max-nodes") {
		n := f.maxNodes
		c.MaxNodes = &n
	}
	if fs.Changed("quota") {
		q := strings.TrimSpace(f.quota)
		if q != "" {
			p, err := registry.ParseQuota(q)
			if err != nil {
				return c, usageErrorf("invalid --quota %q: %s", f.quota, registry.QuotaDetail(err))
			}
			q = p.String()
		}
		c.Quota = &q
	}
	if fs.Changed("eject-after") {
		e, err := parseEjectAfterFlag(f.ejectAfter)
		if err != nil {
			return c, err
		}
		c.EjectAfter = &e
	}
	switch lend, noLend := fs.Changed("lend") && f.lend, fs.Changed("no-lend") && f.noLend; {
	case lend && noLend:
		return c, usageErrorf("--lend and --no-lend together: give one")
	case lend:
		c.Lend = new(true)
	case noLend:
		c.Lend = new(false)
	}
	return c, nil
}

// parseAt reads --at through registry.ParseAt (RFC 3339, or a duration from
// now such as +10m; not in the past, at most a year ahead). Its errors are
// usage errors.
func parseAt(s string, now time.Time) (time.Time, error) {
	t, err := registry.ParseAt(s, now)
	if err != nil {
		return time.Time{}, usageErrorf("invalid --at %s", strings.TrimPrefix(err.Error(), "registry: invalid schedule: "))
	}
	return t, nil
}
