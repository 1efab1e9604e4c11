package client

import (
	"slices"
	"strconv"
	"strings"
)

// Group is one group a node holds, as it was when its assignment was read.
// Values are shared between snapshots: treat them (Config included) as
// read-only.
type Group struct {
	// Name is the group name.
	Name string `json:"name"`
	// Version is the group's version (+1 on every change).
	Version int64 `json:"version"`
	// Config is the group's config (API keys, endpoints...). Read-only.
	Config map[string]string `json:"config"`
	// Share is the fraction of the group's quota this node may use:
	// 1 / the number of nodes the group is assigned to. It follows the
	// epoch: a new holder count comes with the epoch's event (or the read
	// it wakes), or at the latest with the next beat when the event is lost.
	Share float64 `json:"share"`
	// Quota is the whole group's quota ("600/m", "" = none), shared by every
	// holder through Allow.
	Quota string `json:"quota,omitempty"`
	// MaxNodes is the group's cap (0 = unlimited, 1 = exclusive). A capped
	// group is dropped from the assignment as soon as the node's lease
	// lapses (no successful beat for a TTL).
	MaxNodes int `json:"max_nodes,omitempty"`

	// lentVersion is the document version of a group Acquire would borrow
	// (0 for a held group).
	lentVersion int64
}

// Assignment is an immutable snapshot of the groups a node holds. The zero
// value is "nothing assigned yet". Never modify a snapshot: Client hands out
// the same one to every reader.
type Assignment struct {
	// Epoch is the assignment epoch it was read at (0 = never assigned).
	Epoch int64 `json:"epoch"`
	// Groups are the held groups, sorted by name.
	Groups []Group `json:"groups"`
}

// Group returns the held group called name.
func (a Assignment) Group(name string) (Group, bool) {
	i, ok := slices.BinarySearchFunc(a.Groups, name, func(g Group, n string) int { return strings.Compare(g.Name, n) })
	if !ok {
		return Group{}, false
	}
	return a.Groups[i], true
}

// Holds reports whether the assignment includes group name.
func (a Assignment) Holds(name string) bool {
	_, ok := a.Group(name)
	return ok
}

// Names returns the held group names, sorted.
func (a Assignment) Names() []string {
	names := make([]string, len(a.Groups))
	for i, g := range a.Groups {
		names[i] = g.Name
	}
	return names
}

// String is the one-line form "epoch=12 groups=alpha@v3,beta@v1"
// ("groups=" is empty for a standby node). It never includes config values.
func (a Assignment) String() string {
	var b strings.Builder
	b.WriteString("epoch=")
	b.WriteString(strconv.FormatInt(a.Epoch, 10))
	b.WriteString(" groups=")
	for i, g := range a.Groups {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(g.Name)
		b.WriteString("@v")
		b.WriteString(strconv.FormatInt(g.Version, 10))
	}
	return b.String()
}

// same reports whether a and b would look the same to a node: same epoch,
// same groups at the same versions and shares.
func (a Assignment) same(b Assignment) bool {
	return a.Epoch == b.Epoch && a.sameGroups(b)
}

// sameGroups reports whether a and b hold the same groups at the same
// versions, shares, quotas and caps, whatever their epochs.
func (a Assignment) sameGroups(b Assignment) bool {
	if len(a.Groups) != len(b.Groups) {
		return false
	}
	for i := range a.Groups {
		x, y := a.Groups[i], b.Groups[i]
		if x.Name != y.Name || x.Version != y.Version || x.Share != y.Share || x.MaxNodes != y.MaxNodes || x.Quota != y.Quota {
			return false
		}
	}
	return true
}

// withoutCapped returns a with every capped group (MaxNodes > 0) removed;
// a itself when it has none.
func (a Assignment) withoutCapped() Assignment {
	if !slices.ContainsFunc(a.Groups, func(g Group) bool { return g.MaxNodes > 0 }) {
		return a
	}
	out := Assignment{Epoch: a.Epoch}
	for _, g := range a.Groups {
		if g.MaxNodes == 0 {
			out.Groups = append(out.Groups, g)
		}
	}
	return out
}
