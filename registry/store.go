package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/quota"
)

// maxAttempts bounds the optimistic read-modify-write loop of a group write.
const maxAttempts = 16

// groupBody is the stored JSON of a group minus the fields the write script
// stamps with server time (created, updated and, on retire, drain_by).
type groupBody struct {
	Name       string            `json:"name"`
	Version    int64             `json:"version"`
	State      State             `json:"state"`
	Weight     float64           `json:"weight"`
	MaxNodes   int               `json:"max_nodes"`
	Quota      string            `json:"quota"`
	Config     map[string]string `json:"config"`
	SecretKeys []string          `json:"secret_keys"`
	UpdatedBy  string            `json:"updated_by"`
	DrainBy    time.Time         `json:"drain_by,omitzero"`
	EjectAfter string            `json:"eject_after,omitempty"`
	Lend       bool              `json:"lend"`
}

func encodeGroupBody(g Group) (string, error) {
	b, err := json.Marshal(groupBody{
		Name: g.Name, Version: g.Version, State: g.State, Weight: g.Weight,
		MaxNodes: g.MaxNodes, Quota: g.Quota, Config: g.Config, SecretKeys: g.SecretKeys,
		UpdatedBy: g.UpdatedBy, DrainBy: g.DrainBy, EjectAfter: g.EjectAfter, Lend: g.Lend,
	})
	return string(b), err
}

// ParseGroupDoc decodes a group document as stored (and as a write's event
// carries it to the group's holders: Event.Doc). It has no secret keys:
// sealed values stay sealed (Group.Sealed); Registry.ParseGroupDoc opens
// them.
func ParseGroupDoc(doc string) (Group, error) { return parseGroupDoc(doc) }

// parseGroupDoc decodes a stored group document without opening its sealed
// values (Registry.decodeGroup opens them).
func parseGroupDoc(s string) (Group, error) {
	// A document stored before lend existed has no such field: lendable.
	g := Group{Lend: true}
	if err := json.Unmarshal([]byte(s), &g); err != nil {
		return Group{}, fmt.Errorf("registry: decode group: %w", err)
	}
	if g.Config == nil {
		g.Config = map[string]string{}
	}
	if g.SecretKeys == nil {
		g.SecretKeys = []string{}
	}
	if g.EjectAfter == "" {
		g.EjectAfter = DefaultEjectAfter.String() // stored before eject_after existed
	}
	g.Health = nil
	// Groups stored before limits existed (or by an older writer) carry only
	// the quota text: derive the limits, so no migration is needed.
	g.Limits, _ = ParseQuota(g.Quota)
	return g, nil
}

// claim names a scheduled item that a write must consume (ApplyDue).
type claim struct {
	id, by string
}

// write is one run of write.lua.
type write struct {
	mode     string // put | delete | drop
	expected int64  // 0 = must not exist
	name     string
	doc      Group // put
	event    string
	by       string
	version  int64 // of the event
	claim    claim
	drain    time.Duration // > 0: stamp drain_by and schedule drainItem
	drainJob Scheduled
	unsched  string // schedule ID to remove
}

type writeResult struct {
	status string // ok | exists | missing | version | claimed
	group  Group
}

func (r *Registry) runWrite(ctx context.Context, w write) (writeResult, error) {
	k := r.keys
	var body, drainMs, drainBody string
	if w.mode == "put" {
		doc, err := r.sealGroup(w.doc)
		if err != nil {
			return writeResult{}, err
		}
		if body, err = encodeGroupBody(doc); err != nil {
			return writeResult{}, err
		}
	}
	if w.drain > 0 {
		drainMs = strconv.FormatInt(w.drain.Milliseconds(), 10)
		b, err := encodeScheduled(w.drainJob, false)
		if err != nil {
			return writeResult{}, err
		}
		drainBody = b
	}
	res, err := writeScript.Run(ctx, r.rdb,
		[]string{k.Group(w.name), k.History(w.name), k.Groups(), k.State(), k.Log(), k.Schedule(), k.ScheduleItems(),
			k.Health(w.name), k.Unhealthy(), k.Quota(w.name), k.UsagePrefix(w.name), k.Borrowers(w.name)},
		w.mode, w.expected, w.name, body, r.historyLimit, w.event, w.by, w.version, k.Events(),
		w.claim.id, drainMs, w.drainJob.ID, drainBody, w.unsched, LogMaxLen, w.claim.by,
		probeID(w.name), int64(quota.UsageTTL/time.Minute),
	).StringSlice()
	if err != nil {
		return writeResult{}, err
	}
	if len(res) == 0 {
		return writeResult{}, errors.New("registry: empty reply from write script")
	}
	out := writeResult{status: res[0]}
	if out.status == "ok" && len(res) > 1 && res[1] != "" {
		if out.group, err = r.decodeGroup(res[1]); err != nil {
			return writeResult{}, err
		}
	}
	return out, nil
}

// modify reads group name, lets fn compute the write from it, and runs the
// write with a version check, retrying on a race with another writer. When
// ifVersion != 0 a race or a different current version is ErrVersionMismatch.
func (r *Registry) modify(ctx context.Context, name string, ifVersion int64, cl claim, fn func(cur Group) (write, error)) (Group, error) {
	if err := ValidateName(name); err != nil {
		return Group{}, err
	}
	for attempt := range maxAttempts {
		cur, err := r.get(ctx, name)
		if err != nil {
			return Group{}, err
		}
		if ifVersion != 0 && cur.Version != ifVersion {
			return Group{}, fmt.Errorf("%w: current version is %d, not %d", ErrVersionMismatch, cur.Version, ifVersion)
		}
		w, err := fn(cur)
		if err != nil {
			return Group{}, err
		}
		if w.mode == "noop" && cl == (claim{}) {
			return cur, nil
		}
		if w.mode == "noop" {
			w.mode, w.doc = "put", cur // a scheduled no-op still claims its item
		}
		w.name, w.expected, w.claim = name, cur.Version, cl
		res, err := r.runWrite(ctx, w)
		if err != nil {
			return Group{}, err
		}
		switch res.status {
		case "ok":
			r.log.Debug("group written", "group", name, "event", w.event, "version", w.version)
			return res.group, nil
		case "missing":
			return Group{}, ErrNotFound
		case "claimed":
			return Group{}, errClaimed
		case "version":
			if ifVersion != 0 {
				return Group{}, ErrVersionMismatch
			}
		default:
			return Group{}, fmt.Errorf("registry: unexpected write reply %q", res.status)
		}
		if err := backoff(ctx, attempt); err != nil {
			return Group{}, err
		}
	}
	return Group{}, ErrConflict
}

// sameContent reports whether two documents of a group hold the same settings
// (everything but version, timestamps and author).
func sameContent(a, b Group) bool {
	return a.State == b.State && a.Weight == b.Weight && a.MaxNodes == b.MaxNodes &&
		a.Quota == b.Quota && a.EjectAfter == b.EjectAfter && a.Lend == b.Lend && maps.Equal(a.Config, b.Config) &&
		slices.Equal(sortedCopy(a.SecretKeys), sortedCopy(b.SecretKeys))
}

func sortedCopy(xs []string) []string {
	c := slices.Clone(xs)
	slices.Sort(c)
	return c
}

// backoff waits a little longer after each lost race so that a crowd of
// writers spreads out.
func backoff(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(min(attempt, 8)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *Registry) get(ctx context.Context, name string) (Group, error) {
	s, err := r.rdb.Get(ctx, r.keys.Group(name)).Result()
	if errors.Is(err, redis.Nil) {
		return Group{}, ErrNotFound
	}
	if err != nil {
		return Group{}, err
	}
	return r.decodeGroup(s)
}

// drainJobID is the ID of the finish-retire item scheduled by Retire: one per
// group, so a later write can find and remove it.
func drainJobID(name string) string { return "drain-" + name }

// Add creates group name from c (weight defaults to 1). It fails with
// ErrExists when the name is taken and an ErrInvalid… error on bad input.
func (r *Registry) Add(ctx context.Context, name string, c Change, by string) (Group, error) {
	g, err := r.add(ctx, name, c, by)
	return g, wrap(err, "add group %q", name)
}

func (r *Registry) add(ctx context.Context, name string, c Change, by string) (Group, error) {
	if err := ValidateName(name); err != nil {
		return Group{}, err
	}
	if err := checkPlainValues(c.Set); err != nil {
		return Group{}, err
	}
	g, err := c.apply(Group{Name: name, Version: 1, State: Active, Weight: 1, Lend: true})
	if err != nil {
		return Group{}, err
	}
	g.UpdatedBy = by
	res, err := r.runWrite(ctx, write{mode: "put", expected: 0, name: name, doc: g, event: EventGroupAdded, by: by, version: 1})
	if err != nil {
		return Group{}, err
	}
	switch res.status {
	case "ok":
		return res.group, nil
	case "exists":
		return Group{}, ErrExists
	}
	return Group{}, fmt.Errorf("registry: unexpected write reply %q", res.status)
}

// Update applies c to group name, creating a new version. ErrNotFound when
// the group does not exist, ErrVersionMismatch when c.IfVersion is not current.
func (r *Registry) Update(ctx context.Context, name string, c Change, by string) (Group, error) {
	if err := checkPlainValues(c.Set); err != nil {
		return Group{}, wrap(err, "update group %q", name)
	}
	g, err := r.update(ctx, name, c, by, claim{})
	return g, wrap(err, "update group %q", name)
}

func (r *Registry) update(ctx context.Context, name string, c Change, by string, cl claim) (Group, error) {
	return r.modify(ctx, name, c.IfVersion, cl, func(cur Group) (write, error) {
		n, err := c.apply(cur)
		if err != nil {
			return write{}, err
		}
		if sameContent(cur, n) {
			// Nothing changes: no new version, no history entry, no event.
			return write{mode: "noop"}, nil
		}
		n.Version, n.UpdatedBy = cur.Version+1, by
		return write{mode: "put", doc: n, event: EventGroupUpdated, by: by, version: n.Version}, nil
	})
}

// Get returns group name or ErrNotFound.
func (r *Registry) Get(ctx context.Context, name string) (Group, error) {
	if err := ValidateName(name); err != nil {
		return Group{}, wrap(err, "get group %q", name)
	}
	g, err := r.get(ctx, name)
	return g, wrap(err, "get group %q", name)
}

// List returns every group, sorted by name.
func (r *Registry) List(ctx context.Context) ([]Group, error) {
	names, err := r.rdb.SMembers(ctx, r.keys.Groups()).Result()
	if err != nil {
		return nil, wrap(err, "list groups")
	}
	if len(names) == 0 {
		return []Group{}, nil
	}
	slices.Sort(names)
	ks := make([]string, len(names))
	for i, n := range names {
		ks[i] = r.keys.Group(n)
	}
	vals, err := r.rdb.MGet(ctx, ks...).Result()
	if err != nil {
		return nil, wrap(err, "list groups")
	}
	out := make([]Group, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // deleted between SMEMBERS and MGET
		}
		g, err := r.decodeGroup(s)
		if err != nil {
			return nil, wrap(err, "list groups")
		}
		out = append(out, g)
	}
	return out, nil
}

// History returns the kept versions of group name, newest first, the current
// one included.
func (r *Registry) History(ctx context.Context, name string) ([]Group, error) {
	h, err := r.history(ctx, name)
	return h, wrap(err, "history of group %q", name)
}

func (r *Registry) history(ctx context.Context, name string) ([]Group, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	docs, err := r.rdb.LRange(ctx, r.keys.History(name), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, ErrNotFound
	}
	out := make([]Group, len(docs))
	for i, d := range docs {
		if out[i], err = r.decodeGroupAt(d, true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Rollback makes a new version of group name with the weight, max_nodes,
// quota, eject_after, lend mark and config of an earlier version. The state is kept, and so are
// the secret marks: the new version's secret keys are the earlier
// version's and the current one's (for the keys it holds).
func (r *Registry) Rollback(ctx context.Context, name string, version int64, by string) (Group, error) {
	g, err := r.rollback(ctx, name, version, by)
	return g, wrap(err, "roll back group %q to version %d", name, version)
}

func (r *Registry) rollback(ctx context.Context, name string, version int64, by string) (Group, error) {
	hist, err := r.history(ctx, name)
	if err != nil {
		return Group{}, err
	}
	i := slices.IndexFunc(hist, func(g Group) bool { return g.Version == version })
	if i < 0 {
		return Group{}, fmt.Errorf("%w: version %d is not in the history", ErrNotFound, version)
	}
	old := hist[i].clone()
	return r.modify(ctx, name, 0, claim{}, func(cur Group) (write, error) {
		n := cur.clone()
		n.Weight, n.MaxNodes, n.Quota, n.EjectAfter, n.Lend = old.Weight, old.MaxNodes, old.Quota, old.EjectAfter, old.Lend
		// The marks of now stay: rolling back to a version from before a
		// key was marked must not show its value (see secrets.go).
		n.Config, n.SecretKeys = old.Config, keepMarks(cur, old)
		if err := n.normalize(); err != nil {
			return write{}, err
		}
		n.Version, n.UpdatedBy = cur.Version+1, by
		return write{mode: "put", doc: n, event: EventGroupRolledBack, by: by, version: n.Version}, nil
	})
}

// Retire moves an active group to draining (ErrInvalidState otherwise): it
// gets no new nodes and its holders are moved off. It becomes retired through
// FinishRetire once nobody holds it, or at the latest after drainTimeout
// (<= 0 means the registry default) even if nobody is connected then: Retire
// schedules an OpFinishRetire item at drain_by, applied by ApplyDue.
func (r *Registry) Retire(ctx context.Context, name string, drainTimeout time.Duration, by string) (Group, error) {
	g, err := r.retire(ctx, name, drainTimeout, by, claim{})
	return g, wrap(err, "retire group %q", name)
}

func (r *Registry) retire(ctx context.Context, name string, drainTimeout time.Duration, by string, cl claim) (Group, error) {
	if drainTimeout <= 0 {
		drainTimeout = r.drainTimeout
	}
	return r.modify(ctx, name, 0, cl, func(cur Group) (write, error) {
		if cur.State != Active {
			return write{}, fmt.Errorf("%w: group is %s, not active", ErrInvalidState, cur.State)
		}
		n := cur.clone()
		n.State, n.DrainBy = Draining, time.Time{}
		n.Version, n.UpdatedBy = cur.Version+1, by
		return write{
			mode: "put", doc: n, event: EventGroupRetiring, by: by, version: n.Version,
			drain:    drainTimeout,
			drainJob: Scheduled{ID: drainJobID(name), Group: name, Op: OpFinishRetire, By: by},
			unsched:  drainJobID(name),
		}, nil
	})
}

// FinishRetire moves a draining group to retired (ErrInvalidState otherwise)
// and cancels its pending drain timeout.
func (r *Registry) FinishRetire(ctx context.Context, name string, by string) (Group, error) {
	g, err := r.finishRetire(ctx, name, by, claim{})
	return g, wrap(err, "finish retiring group %q", name)
}

func (r *Registry) finishRetire(ctx context.Context, name string, by string, cl claim) (Group, error) {
	return r.modify(ctx, name, 0, cl, func(cur Group) (write, error) {
		if cur.State != Draining {
			return write{}, fmt.Errorf("%w: group is %s, not draining", ErrInvalidState, cur.State)
		}
		n := cur.clone()
		n.State, n.DrainBy = Retired, time.Time{}
		n.Version, n.UpdatedBy = cur.Version+1, by
		return write{mode: "put", doc: n, event: EventGroupRetired, by: by, version: n.Version, unsched: drainJobID(name)}, nil
	})
}

// Delete removes group name and its history at once (ErrNotFound if absent).
// The next rebalance moves its nodes.
func (r *Registry) Delete(ctx context.Context, name string, by string) error {
	_, err := r.delete(ctx, name, by, claim{})
	return wrap(err, "delete group %q", name)
}

func (r *Registry) delete(ctx context.Context, name string, by string, cl claim) (Group, error) {
	// write.lua drops the group's limiter state, usage and key health in
	// the same script: a group created later under the same name inherits
	// no debt, cooldown, usage or suspension, even for an instant.
	return r.modify(ctx, name, 0, cl, func(cur Group) (write, error) {
		return write{mode: "delete", event: EventGroupDeleted, by: by, version: cur.Version, unsched: drainJobID(name)}, nil
	})
}
