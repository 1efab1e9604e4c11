package allocator

import (
	"math"

	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// placementUnit is the resource placement by demand weighs a pool in: the
// figure of the nodes' demand (Node.Demand) and the rate of the groups'
// limits (Group.Capacity) it compares.
type placementUnit struct {
	// tokens: tokens a second; else calls a second.
	tokens bool
	// capacity is each planned group's rate of that kind, per second; nil
	// when some group has no limit of the kind (shares by weight).
	capacity []float64
}

// placementOf picks the unit of a pool (the planned groups, the live nodes):
// the resource it is shortest of. Tokens when every group has a token limit
// and either some group has no request limit or the nodes ask a larger
// part of the pool's token rate than of its request rate; otherwise calls,
// with the groups' request rates as capacities when every group has a
// request limit, and by weight when not. A quota that does not parse counts
// as no limit.
func placementOf(groups []registry.Group, nodes []heartbeat.Node) placementUnit {
	calls := make([]float64, len(groups))
	tokens := make([]float64, len(groups))
	allCalls, allTokens := len(groups) > 0, len(groups) > 0
	var capCalls, capTokens float64
	for i, g := range groups {
		ls, _ := registry.ParseQuota(g.Quota)
		calls[i], tokens[i] = perSecond(ls, quota.Requests), perSecond(ls, quota.Tokens)
		allCalls = allCalls && calls[i] > 0
		allTokens = allTokens && tokens[i] > 0
		capCalls += calls[i]
		capTokens += tokens[i]
	}
	var askCalls, askTokens float64
	for _, n := range nodes {
		if n.Demand != nil {
			askCalls += n.Demand.Calls
			askTokens += n.Demand.Tokens
		}
	}
	switch {
	case allTokens && (!allCalls || askTokens/capTokens > askCalls/capCalls):
		return placementUnit{tokens: true, capacity: tokens}
	case allCalls:
		return placementUnit{capacity: calls}
	}
	return placementUnit{}
}

// demand is node n's figure in this unit: -1 when it reported none.
func (u placementUnit) demand(n heartbeat.Node) float64 {
	switch {
	case n.Demand == nil:
		return -1
	case u.tokens:
		return n.Demand.Tokens
	}
	return n.Demand.Calls
}

// perSecond is the tightest sustained rate of ls's limits of kind, a
// second (a daily limit of 86400 is 1); 0 when ls has none.
func perSecond(ls quota.Limits, kind quota.Kind) float64 {
	r := math.Inf(1)
	for _, l := range ls {
		if (l.Kind == quota.Tokens) == (kind == quota.Tokens) {
			r = min(r, l.PerMinute()/60)
		}
	}
	if math.IsInf(r, 1) {
		return 0
	}
	return r
}
