package registry

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
)

// This file is where sealing meets the stored documents (see sealing.go):
// runWrite seals a group's secret values on their way to Redis and
// decodeGroup opens them on the way back; schedule seals the values of a
// scheduled update and decodeScheduled opens them. Everything in between
// works on plain text.

// WithSecretKeys makes the registry seal every value of a secret config key
// it writes (the group document, so its history and its event; and every
// value a scheduled update sets) with the first key of k, and open what it
// reads with any key of k. default: none: values are stored as given, and
// sealed values stay sealed (Group.Sealed).
func WithSecretKeys(k *SecretKeys) Option { return func(r *Registry) { r.secrets = k } }

// SecretKeys is the key list of WithSecretKeys (nil when none).
func (r *Registry) SecretKeys() *SecretKeys { return r.secrets }

// SecretsAtRest says how this registry stores secret values:
// AtRestEncrypted with secret keys, AtRestPlaintext without.
func (r *Registry) SecretsAtRest() string {
	if r.secrets == nil {
		return AtRestPlaintext
	}
	return AtRestEncrypted
}

// sealGroup returns g with every value of its secret keys sealed for
// storing. A value already sealed (read by a writer without its key) is
// carried as it is: its additional data names this group and key, so it
// still opens.
func (r *Registry) sealGroup(g Group) (Group, error) {
	if r.secrets == nil || len(g.SecretKeys) == 0 {
		return g, nil
	}
	cfg := maps.Clone(g.Config)
	for _, k := range g.SecretKeys {
		v, ok := cfg[k]
		if !ok || IsSealed(v) {
			continue
		}
		s, err := r.secrets.seal(r.Namespace(), g.Name, k, v)
		if err != nil {
			return Group{}, err
		}
		cfg[k] = s
	}
	g.Config = cfg
	return g, nil
}

// decodeGroup decodes a stored group document and opens its sealed values
// (see openConfig).
func (r *Registry) decodeGroup(s string) (Group, error) { return r.decodeGroupAt(s, false) }

// decodeGroupAt is decodeGroup; inHistory names the history version in
// an error.
func (r *Registry) decodeGroupAt(s string, inHistory bool) (Group, error) {
	g, err := parseGroupDoc(s)
	if err != nil {
		return Group{}, err
	}
	where := ""
	if inHistory {
		where = fmt.Sprintf("history version %d", g.Version)
	}
	if err := r.openConfig(g.Name, where, g.Config); err != nil {
		return Group{}, err
	}
	return g, nil
}

// ParseGroupDoc is the package's ParseGroupDoc with this registry's secret
// keys: sealed values are opened (or stay sealed when their key is not
// here); one that fails authentication is an error.
func (r *Registry) ParseGroupDoc(doc string) (Group, error) { return r.decodeGroup(doc) }

// openConfig opens in place every sealed value of cfg, a config of group.
// Any sealed value is opened, whether its key is marked secret or not (a
// scheduled update seals every value it sets). A value whose key is not in
// the list stays sealed; one that fails authentication is a
// *SecretValueError and nothing of it is kept.
func (r *Registry) openConfig(group, where string, cfg map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		v := cfg[k]
		if !IsSealed(v) {
			continue
		}
		plain, id, opened, err := r.secrets.open(r.Namespace(), group, k, v)
		if err != nil {
			return &SecretValueError{Group: group, Where: where, Key: k, KeyID: id, Err: err}
		}
		if opened {
			cfg[k] = plain
		}
	}
	return nil
}

// sealSchedule returns s with every value its update sets sealed, bound to
// the scheduled group and the key: whether a key is secret may change before
// the update applies, so all of them are sealed.
func (r *Registry) sealSchedule(s Scheduled) (Scheduled, error) {
	if r.secrets == nil || len(s.Change.Set) == 0 {
		return s, nil
	}
	set := maps.Clone(s.Change.Set)
	for k, v := range set {
		if IsSealed(v) {
			continue
		}
		sv, err := r.secrets.seal(r.Namespace(), s.Group, k, v)
		if err != nil {
			return Scheduled{}, err
		}
		set[k] = sv
	}
	s.Change.Set = set
	return s, nil
}

// decodeScheduled decodes a stored scheduled change and opens the values it
// sets. A value this process cannot open stays sealed: applied as it is, it
// lands in the group sealed for that very group and key.
func (r *Registry) decodeScheduled(raw string) (Scheduled, error) {
	s, err := parseScheduled(raw)
	if err != nil {
		return Scheduled{}, err
	}
	if err := r.openConfig(s.Group, "schedule "+s.ID, s.Change.Set); err != nil {
		return s, err
	}
	return s, nil
}

// sealedKeys maps each sealed value of cfg to its key ID; nil when none.
func sealedKeys(cfg map[string]string) map[string]string {
	var out map[string]string
	for k, v := range cfg {
		if id, ok := SealedKeyID(v); ok {
			if out == nil {
				out = make(map[string]string)
			}
			out[k] = id
		}
	}
	return out
}

// Sealed maps each config key whose value this reader could not open to the
// ID of the key it is sealed with (nil when every value is plain): the
// reader lacks that key. Such a value is carried unchanged by writes and
// masked by Masked; RequireOpen refuses it.
func (g Group) Sealed() map[string]string { return sealedKeys(g.Config) }

// Sealed is Group.Sealed for the values the scheduled update sets.
func (s Scheduled) Sealed() map[string]string { return sealedKeys(s.Change.Set) }

// RequireOpen returns a *SecretValueError wrapping ErrSecretKeyMissing for
// the first value of groups that stays sealed (by group name, then key), or
// nil: every consumer of plain text — a node's assignment, reveal, export —
// calls it and refuses rather than hand out a sealed value as a key.
func RequireOpen(groups ...Group) error {
	for _, g := range slices.SortedFunc(slices.Values(groups), func(a, b Group) int { return cmp.Compare(a.Name, b.Name) }) {
		if err := firstSealed(g.Name, "", g.Config); err != nil {
			return err
		}
	}
	return nil
}

// RequireOpenSchedules is RequireOpen for the values of scheduled updates.
func RequireOpenSchedules(items ...Scheduled) error {
	for _, s := range items {
		if err := firstSealed(s.Group, "schedule "+s.ID, s.Change.Set); err != nil {
			return err
		}
	}
	return nil
}

func firstSealed(group, where string, cfg map[string]string) error {
	sealed := sealedKeys(cfg)
	if len(sealed) == 0 {
		return nil
	}
	k := slices.Min(slices.Collect(maps.Keys(sealed)))
	return &SecretValueError{Group: group, Where: where, Key: k, KeyID: sealed[k], Err: ErrSecretKeyMissing}
}

// checkPlainValues refuses values given in the sealed form: only the
// registry seals, and a sealed text given as a value would be stored as if
// it were one of its own.
func checkPlainValues(set map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if IsSealed(set[k]) {
			return fmt.Errorf("%w: value of %q starts with %q, the form of a sealed value: give the plain value", ErrInvalidConfig, k, SealedPrefix)
		}
	}
	return nil
}
