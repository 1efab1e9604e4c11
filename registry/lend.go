package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// LeaseTTL is how long a lease lasts: an HTTP lease can be settled and
// observed until then, and a borrow proves that the node used the group's
// key (its health reports on the group count as a holder's) for as long.
const LeaseTTL = 10 * time.Minute

// settingLending is the :settings field of the namespace's lending switch:
// "off" stops every borrow at once (the acquire script reads it); absent or
// "on" lets lendable groups be lent.
const settingLending = "lending"

// Lending returns the namespace's lending setting: on (the default, also
// when none is stored) or off; stored says whether one is stored.
func (r *Registry) Lending(ctx context.Context) (on, stored bool, err error) {
	v, err := r.rdb.HGet(ctx, r.keys.Settings(), settingLending).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return true, false, nil
	case err != nil:
		return false, false, wrap(err, "read lending setting")
	}
	return v != "off", true, nil
}

// SetLending stores the namespace's lending setting. Off, no group is lent
// from the next acquire on, whatever the nodes know: the acquire script
// reads the setting itself.
func (r *Registry) SetLending(ctx context.Context, on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	return wrap(r.rdb.HSet(ctx, r.keys.Settings(), settingLending, v).Err(), "store lending setting")
}

// Catalog is a process's copy of every group document of a namespace and
// of which groups are suspended or probing, at one group revision (Rev): what
// a node needs to borrow (the limits, config and version of every lendable
// group) without a read per call. It is immutable: Apply returns a new one.
//
// It is kept fresh as the node's assignment is: every change that moves
// the revision (a group write, a suspension, probe, recovery or resume) is
// published on the lend channel (keys.LendEvents) with the revision it
// moved to and, for a write, the new document; Apply takes an event that
// is the next revision and reports a gap otherwise, and a reply that shows
// a newer revision (an acquire's) tells the owner it may have lost one.
// Either way the owner reads again (Registry.ReadCatalog).
type Catalog struct {
	// Rev is the group revision the catalog is at.
	Rev       int64
	groups    map[string]Group
	unhealthy map[string]UnhealthyEntry
	lendable  []string
	// decode reads an event's document, opening its sealed values with the
	// reading registry's keys (nil: parseGroupDoc, values left sealed).
	decode func(string) (Group, error)
}

// ReadCatalog reads every group document and the key health index at one
// revision: one script.
func (r *Registry) ReadCatalog(ctx context.Context) (*Catalog, error) {
	k := r.keys
	res, err := catalogScript.Run(ctx, r.rdb, []string{k.State(), k.Groups(), k.Unhealthy()}, k.Group("")).StringSlice()
	if err != nil {
		return nil, wrap(err, "read catalog")
	}
	if len(res) < 2 {
		return nil, wrap(errMalformed, "read catalog")
	}
	c := &Catalog{groups: map[string]Group{}, unhealthy: map[string]UnhealthyEntry{}, decode: r.decodeGroup}
	if c.Rev, err = parseCounter(res[0]); err != nil {
		return nil, wrap(err, "read catalog")
	}
	n, err := strconv.Atoi(res[1])
	if err != nil || n < 0 || 2+2*n > len(res) {
		return nil, wrap(errMalformed, "read catalog")
	}
	bad := make(map[string]string, n)
	for i := 0; i < n; i++ {
		bad[res[2+2*i]] = res[3+2*i]
	}
	c.unhealthy = parseUnhealthy(bad)
	for _, doc := range res[2+2*n:] {
		g, err := r.decodeGroup(doc)
		if err != nil {
			return nil, wrap(err, "read catalog")
		}
		c.groups[g.Name] = g
	}
	c.index()
	return c, nil
}

// NewCatalog builds a catalog at rev from documents and the key health
// index (as Unhealthy returns it): for tests and tools that have them.
func NewCatalog(rev int64, groups []Group, unhealthy map[string]UnhealthyEntry) *Catalog {
	c := &Catalog{Rev: rev, groups: make(map[string]Group, len(groups)), unhealthy: maps.Clone(unhealthy)}
	if c.unhealthy == nil {
		c.unhealthy = map[string]UnhealthyEntry{}
	}
	for _, g := range groups {
		c.groups[g.Name] = g
	}
	c.index()
	return c
}

// index computes the sorted lendable names.
func (c *Catalog) index() {
	c.lendable = c.lendable[:0]
	for name, g := range c.groups {
		if c.lendableGroup(g) {
			c.lendable = append(c.lendable, name)
		}
	}
	slices.Sort(c.lendable)
}

func (c *Catalog) lendableGroup(g Group) bool {
	if !g.Lendable() || g.Sealed() != nil {
		// A value this reader cannot open is never handed out as a key.
		return false
	}
	e, bad := c.unhealthy[g.Name]
	return !bad || e.Created != isoMillis(g.Created) || (e.State != Suspended && e.State != Probing)
}

// Group returns the document of group name as the catalog has it.
func (c *Catalog) Group(name string) (Group, bool) {
	g, ok := c.groups[name]
	return g, ok
}

// Len is how many groups the catalog holds.
func (c *Catalog) Len() int { return len(c.groups) }

// Lendable returns the names of the groups a node may borrow as far as the
// catalog knows (Group.Lendable, and neither suspended nor probing), sorted.
// Cooling and the namespace's lending setting are left to the acquire
// script. The slice is shared: do not modify it.
func (c *Catalog) Lendable() []string { return c.lendable }

// Apply returns the catalog with ev applied, when ev moved the revision
// to the one after Rev (a group write with its document, a delete, a
// suspension, probe, recovery or resume). An event of an older revision, or
// with none, changes nothing (c, true). ok is false when the catalog cannot
// take ev: a gap (an event was lost), or a write whose event carries no
// document; the owner must read again.
func (c *Catalog) Apply(ev Event) (next *Catalog, ok bool) {
	if ev.Rev <= c.Rev {
		return c, true
	}
	if ev.Rev != c.Rev+1 {
		return c, false
	}
	n := &Catalog{Rev: ev.Rev, groups: maps.Clone(c.groups), unhealthy: maps.Clone(c.unhealthy), decode: c.decode}
	switch ev.Type {
	case EventGroupAdded, EventGroupUpdated, EventGroupRolledBack, EventGroupRetiring, EventGroupRetired:
		if ev.Doc == "" {
			return c, false
		}
		decode := c.decode
		if decode == nil {
			decode = parseGroupDoc
		}
		g, err := decode(ev.Doc)
		if err != nil || g.Name != ev.Group {
			return c, false
		}
		n.groups[g.Name] = g
	case EventGroupDeleted:
		delete(n.groups, ev.Group)
		delete(n.unhealthy, ev.Group)
	case EventGroupSuspended, EventGroupProbing:
		g, ok := n.groups[ev.Group]
		if !ok {
			return c, false
		}
		st := Suspended
		if ev.Type == EventGroupProbing {
			st = Probing
		}
		n.unhealthy[ev.Group] = UnhealthyEntry{State: st, Created: isoMillis(g.Created)}
	case EventGroupRecovered, EventGroupResumed:
		delete(n.unhealthy, ev.Group)
	default:
		return c, false
	}
	n.index()
	return n, true
}

// String is a one-line summary for logs: revision and group counts.
func (c *Catalog) String() string {
	return fmt.Sprintf("rev=%d groups=%d lendable=%d", c.Rev, len(c.groups), len(c.lendable))
}
