package registry

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/quota"
)

// State is the lifecycle state of a group.
type State string

// Group states. Only Active groups are handed out to nodes.
const (
	// Active groups are handed out to nodes.
	Active State = "active"
	// Draining groups get no new nodes; their holders are moved off.
	Draining State = "draining"
	// Retired groups are held by nobody and kept for the record.
	Retired State = "retired"
)

// MaxConfigBytes is the largest JSON encoding of a group's config.
const MaxConfigBytes = 64 << 10

// Group is one pool entry: a bundle of config (typically an API key) handed out
// to nodes. Its JSON is what registry stores under the group key.
type Group struct {
	Name     string  `json:"name"`
	Version  int64   `json:"version"`
	State    State   `json:"state"`
	Weight   float64 `json:"weight"`
	MaxNodes int     `json:"max_nodes"`
	Quota    string  `json:"quota"`
	// Limits are the limits of Quota, parsed (derived: never edited
	// directly; groups stored before it existed get it on read).
	Limits     quota.Limits      `json:"limits"`
	Config     map[string]string `json:"config"`
	SecretKeys []string          `json:"secret_keys"`
	Created    time.Time         `json:"created"`
	Updated    time.Time         `json:"updated"`
	UpdatedBy  string            `json:"updated_by"`
	// DrainBy is set while draining: the group is retired at this time even
	// if a node still holds it.
	DrainBy time.Time `json:"drain_by,omitzero"`
	// EjectAfter is how many failure reports within a window suspend the
	// group ("3/1m"; "0" = never). See ParseEjectAfter.
	EjectAfter string `json:"eject_after"`
	// Lend says whether the group may be lent: a node that holds no group
	// with room may borrow it for one call while it is Lendable. default:
	// true (documents stored before the field existed read as true).
	Lend bool `json:"lend"`
	// Health is the group's key health when read through WithHealth; never
	// stored in the group document.
	Health *Health `json:"health,omitempty"`
}

// Masked returns a copy whose secret config values are replaced by "****"
// (followed by the last 4 characters when the value is at least 12 long),
// and so are values still sealed (Sealed), which show as "****" alone.
func (g Group) Masked() Group {
	m := g.clone()
	for k, v := range m.Config {
		if m.IsSecret(k) || IsSealed(v) {
			m.Config[k] = maskValue(v)
		}
	}
	return m
}

func maskValue(v string) string {
	if IsSealed(v) {
		return MaskPrefix // the end of a ciphertext says nothing
	}
	if r := []rune(v); len(r) >= 12 {
		return "****" + string(r[len(r)-4:])
	}
	return "****"
}

// Lendable reports whether the document lets a node that does not hold
// the group borrow it for one call: active, uncapped (max_nodes 0: an
// exclusive key stays exclusive) and not marked lend: false. Key health
// (suspended, probing, cooling) and the namespace's lending setting are
// checked apart (the acquire script checks all of it again).
func (g Group) Lendable() bool { return g.State == Active && g.MaxNodes == 0 && g.Lend }

// IsSecret reports whether config key k is secret.
func (g Group) IsSecret(k string) bool { return slices.Contains(g.SecretKeys, k) }

func (g Group) clone() Group {
	c := g
	c.Config = maps.Clone(g.Config)
	if c.Config == nil {
		c.Config = map[string]string{}
	}
	c.Limits = slices.Clone(g.Limits)
	c.SecretKeys = slices.Clone(g.SecretKeys)
	if g.Health != nil {
		h := *g.Health
		c.Health = &h
	}
	if c.SecretKeys == nil {
		c.SecretKeys = []string{}
	}
	return c
}

// Change describes an edit of a group. Nil or empty fields leave the group
// as is.
type Change struct {
	// Set adds or replaces config values.
	Set map[string]string `json:"set,omitempty" yaml:"set,omitempty"`
	// Unset removes config keys (and their secret mark).
	Unset []string `json:"unset,omitempty" yaml:"unset,omitempty"`
	// Secret lists config keys whose values are secret (masked in outputs).
	Secret []string `json:"secret,omitempty" yaml:"secret,omitempty"`
	// Unsecret lists secret config keys whose mark is removed: the only way
	// a mark goes (an admin's act; Rollback and import keep marks).
	Unsecret []string `json:"unsecret,omitempty" yaml:"unsecret,omitempty"`
	// Weight replaces the weight (> 0).
	Weight *float64 `json:"weight,omitempty" yaml:"weight,omitempty"`
	// MaxNodes replaces max_nodes (0 = unlimited).
	MaxNodes *int `json:"max_nodes,omitempty" yaml:"max_nodes,omitempty"`
	// Quota replaces the quota; "" clears it.
	Quota *string `json:"quota,omitempty" yaml:"quota,omitempty"`
	// EjectAfter replaces eject_after ("N/WINDOW", "0" = never; "" = the
	// default 3/1m).
	EjectAfter *string `json:"eject_after,omitempty" yaml:"eject_after,omitempty"`
	// Lend replaces the lend mark (false: never lent to a node that does
	// not hold the group).
	Lend *bool `json:"lend,omitempty" yaml:"lend,omitempty"`
	// WeightAuto sets the weight from the quota (after this change's Quota):
	// quota.Limits.AutoWeight. It cannot be combined with Weight.
	WeightAuto bool `json:"weight_auto,omitempty" yaml:"weight_auto,omitempty"`
	// IfVersion, when not 0, makes the change fail with ErrVersionMismatch
	// unless the group is at exactly this version.
	IfVersion int64 `json:"if_version,omitempty" yaml:"if_version,omitempty"`
}

// IsZero reports whether every field of c is empty (IfVersion included).
func (c Change) IsZero() bool { return !c.Edits() && c.IfVersion == 0 }

// Edits reports whether c changes anything (IfVersion is only a condition).
func (c Change) Edits() bool {
	return len(c.Set) > 0 || len(c.Unset) > 0 || len(c.Secret) > 0 || len(c.Unsecret) > 0 ||
		c.Weight != nil || c.MaxNodes != nil || c.Quota != nil || c.EjectAfter != nil || c.Lend != nil || c.WeightAuto
}

// ValidateName reports whether name is a valid group name
// (keys.GroupNameRule, the rule heartbeat shares).
func ValidateName(name string) error {
	if !keys.ValidGroupName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	return nil
}

// apply returns g edited by c and validated. g is not modified.
func (c Change) apply(g Group) (Group, error) {
	n := g.clone()
	for _, k := range c.Unset {
		if _, ok := c.Set[k]; ok {
			return Group{}, fmt.Errorf("%w: key %q both set and unset", ErrInvalidConfig, k)
		}
		delete(n.Config, k)
		n.SecretKeys = slices.DeleteFunc(n.SecretKeys, func(s string) bool { return s == k })
	}
	for k, v := range c.Set {
		n.Config[k] = v
	}
	for _, k := range c.Secret {
		if !slices.Contains(n.SecretKeys, k) {
			n.SecretKeys = append(n.SecretKeys, k)
		}
	}
	for _, k := range c.Unsecret {
		if slices.Contains(c.Secret, k) {
			return Group{}, fmt.Errorf("%w: key %q both marked and unmarked secret", ErrInvalidConfig, k)
		}
		if !slices.Contains(n.SecretKeys, k) {
			return Group{}, fmt.Errorf("%w: key %q is not secret", ErrInvalidConfig, k)
		}
		n.SecretKeys = slices.DeleteFunc(n.SecretKeys, func(s string) bool { return s == k })
	}
	slices.Sort(n.SecretKeys)
	if c.Weight != nil {
		n.Weight = *c.Weight
	}
	if c.MaxNodes != nil {
		n.MaxNodes = *c.MaxNodes
	}
	if c.Quota != nil {
		n.Quota = *c.Quota
	}
	if c.EjectAfter != nil {
		n.EjectAfter = *c.EjectAfter
	}
	if c.Lend != nil {
		n.Lend = *c.Lend
	}
	if err := n.normalize(); err != nil {
		return Group{}, err
	}
	if c.WeightAuto {
		if c.Weight != nil {
			return Group{}, fmt.Errorf("%w: weight and weight auto together", ErrInvalidWeight)
		}
		if n.Limits.IsZero() {
			return Group{}, ErrNoQuota
		}
		n.Weight = n.Limits.AutoWeight()
	}
	return n, nil
}

// normalize validates g in place and rewrites the quota to its canonical form.
func (g *Group) normalize() error {
	if err := ValidateName(g.Name); err != nil {
		return err
	}
	if math.IsNaN(g.Weight) || math.IsInf(g.Weight, 0) || g.Weight <= 0 {
		return fmt.Errorf("%w: %v", ErrInvalidWeight, g.Weight)
	}
	if g.MaxNodes < 0 {
		return fmt.Errorf("%w: %d", ErrInvalidMaxNodes, g.MaxNodes)
	}
	g.Limits = Quota{}
	if g.Quota != "" {
		q, err := ParseQuota(g.Quota)
		if err != nil {
			return err
		}
		g.Quota, g.Limits = q.String(), q
	}
	ej, err := ParseEjectAfter(g.EjectAfter)
	if err != nil {
		return err
	}
	g.EjectAfter = ej.String()
	if g.Config == nil {
		g.Config = map[string]string{}
	}
	for k := range g.Config {
		if k == "" {
			return fmt.Errorf("%w: empty key", ErrInvalidConfig)
		}
	}
	if err := validUTF8(g.Config); err != nil {
		return err
	}
	for _, k := range g.SecretKeys {
		if _, ok := g.Config[k]; !ok {
			return fmt.Errorf("%w: secret key %q is not a config key", ErrInvalidConfig, k)
		}
	}
	b, err := json.Marshal(g.Config)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if len(b) > MaxConfigBytes {
		return fmt.Errorf("%w: %d bytes", ErrConfigTooLarge, len(b))
	}
	if g.SecretKeys == nil {
		g.SecretKeys = []string{}
	}
	return nil
}
