package registry_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/keys"
	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// TestCommitNamesChanges: an assignment event names the nodes whose entries
// changed and the groups whose holder counts changed, on standalone and
// Cluster; the pub/sub payload and the stream entry agree.
func TestCommitNamesChanges(t *testing.T) {
	standalone := redistest.Start(t)
	cluster := redistest.StartCluster(t)
	for _, b := range []backend{{"standalone", standalone.Client(t)}, {"cluster", cluster.Client(t)}} {
		t.Run(b.name, func(t *testing.T) { testCommitNamesChanges(t, b.rdb) })
	}
}

// commitNext commits nodes on top of the current assignment and returns the
// assignment event as published and as logged.
func commitNext(t *testing.T, e env, sub *redis.PubSub, nodes map[string][]string) (pub, logged registry.Event) {
	t.Helper()
	ctx := context.Background()
	a, err := e.reg.Assignment(ctx)
	require.NoError(t, err)
	_, changed, err := e.reg.Commit(ctx, registry.Commit{From: a.Counters, Base: &a, Nodes: nodes, By: "t"})
	require.NoError(t, err)
	require.True(t, changed)
	for {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		ev, err := registry.ParseEvent(msg.Payload)
		require.NoError(t, err)
		if ev.Type == registry.EventAssignment {
			pub = ev
			break
		}
	}
	evs, err := e.reg.Events(ctx, "", 10000, 0)
	require.NoError(t, err)
	logged = evs[len(evs)-1]
	require.Equal(t, pub.ID, logged.ID)
	return pub, logged
}

func testCommitNamesChanges(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	sub := rdb.Subscribe(ctx, e.k.Events())
	defer sub.Close()
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	for i, g := range []string{"a", "b", "c"} {
		_, err := e.reg.Add(ctx, g, registry.Change{}, "t")
		require.NoError(t, err)
		// A group event carries the revision it moved to.
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		ev, err := registry.ParseEvent(msg.Payload)
		require.NoError(t, err)
		assert.Equal(t, int64(i+1), ev.Rev, g)
	}
	e.register(t, "n1", "n2", "n3", "n4")

	// First plan: every node is new.
	nodes := map[string][]string{"n1": {"a"}, "n2": {"a"}, "n3": {"b"}, "n4": {"c"}}
	pub, logged := commitNext(t, e, sub, nodes)
	assert.Equal(t, registry.ScopeNodes, pub.Scope)
	assert.Equal(t, []string{"n1", "n2", "n3", "n4"}, pub.Nodes)
	assert.Equal(t, []string{"a", "b", "c"}, pub.Groups)
	assert.Equal(t, map[string]int{"a": 2, "b": 1, "c": 1}, pub.Holders)
	assert.Equal(t, pub, logged, "the stream entry names the same")

	// n2 moves a -> c: n2's entry changed and it reads; a and c changed
	// holder counts, which the event carries, so n1 (a) and n4 (c) take
	// their new shares from it and n3 (b) has nothing to take.
	nodes["n2"] = []string{"c"}
	pub, logged = commitNext(t, e, sub, nodes)
	assert.Equal(t, []string{"n2"}, pub.Nodes)
	assert.Equal(t, []string{"a", "c"}, pub.Groups)
	assert.Equal(t, map[string]int{"a": 1, "c": 2}, pub.Holders)
	assert.Equal(t, pub, logged)
	assert.True(t, pub.Concerns("n2", []string{"a"}))
	for node, held := range map[string][]string{"n1": {"a"}, "n4": {"c"}, "n3": {"b"}} {
		assert.False(t, pub.Concerns(node, held), node)
	}
	counts, ok := pub.Adopt("n1", []string{"a"})
	assert.True(t, ok)
	assert.Equal(t, map[string]int{"a": 1}, counts)
	counts, ok = pub.Adopt("n3", []string{"b"})
	assert.True(t, ok)
	assert.Nil(t, counts)
	old := pub
	old.Holders = nil // as an older writer sends it: a and c's holders read
	assert.True(t, old.Concerns("n1", []string{"a"}))
	assert.False(t, old.Concerns("n3", []string{"b"}))

	// Two nodes swap groups: entries change, no holder count does.
	nodes["n3"], nodes["n4"] = []string{"c"}, []string{"b"}
	pub, _ = commitNext(t, e, sub, nodes)
	assert.Equal(t, []string{"n3", "n4"}, pub.Nodes)
	assert.Empty(t, pub.Groups)
	assert.False(t, pub.Concerns("n1", []string{"a"}))

	// A leave removed n1's entry and marked the assignment dirty (as
	// heartbeat's forget does): the next commit names the group that lost
	// a holder even though no entry differs.
	require.NoError(t, rdb.ZRem(ctx, e.k.Nodes(), "n1").Err())
	require.NoError(t, rdb.HDel(ctx, e.k.Assign(), "n1").Err())
	require.NoError(t, rdb.HIncrBy(ctx, e.k.Holders(), "a", -1).Err())
	require.NoError(t, rdb.HSet(ctx, e.k.State(), "dirty", 1, "dirtyg", "a").Err())
	view, err := e.reg.NodeAssignment(ctx, "n2")
	require.NoError(t, err)
	assert.True(t, view.Dirty, "a read between the removal and the commit says so")
	delete(nodes, "n1")
	pub, _ = commitNext(t, e, sub, nodes)
	assert.Equal(t, registry.ScopeNodes, pub.Scope)
	assert.Empty(t, pub.Nodes)
	assert.Equal(t, []string{"a"}, pub.Groups)
	assert.Equal(t, map[string]int{"a": 0}, pub.Holders)
	st, err := rdb.HMGet(ctx, e.k.State(), "dirty", "dirtyg").Result()
	require.NoError(t, err)
	assert.Equal(t, []any{nil, nil}, st, "the commit clears the dirty marks")
	view, err = e.reg.NodeAssignment(ctx, "n2")
	require.NoError(t, err)
	assert.False(t, view.Dirty)

	// A leave whose group gets a holder back in the next commit: that group's
	// count is what its holders last read, so only the moved node's entry and
	// its old group are named.
	e.register(t, "n5")
	nodes["n5"] = []string{"b"}
	commitNext(t, e, sub, nodes) // b: n4, n5
	require.NoError(t, rdb.ZRem(ctx, e.k.Nodes(), "n3").Err())
	require.NoError(t, rdb.HDel(ctx, e.k.Assign(), "n3").Err())
	require.NoError(t, rdb.HIncrBy(ctx, e.k.Holders(), "c", -1).Err())
	require.NoError(t, rdb.HSet(ctx, e.k.State(), "dirty", 1, "dirtyg", "c").Err())
	delete(nodes, "n3")
	nodes["n5"] = []string{"c"} // n5 moves b -> c: c is back at its count
	pub, _ = commitNext(t, e, sub, nodes)
	assert.Equal(t, []string{"n5"}, pub.Nodes)
	assert.Equal(t, []string{"b"}, pub.Groups, "c's holders keep the share they read")
	assert.Equal(t, map[string]int{"b": 1}, pub.Holders)

	// Too many removals to name: every node reads.
	require.NoError(t, rdb.HSet(ctx, e.k.State(), "dirty", 1, "dirtyg", "*").Err())
	nodes["n2"] = []string{"a"}
	pub, _ = commitNext(t, e, sub, nodes)
	assert.Empty(t, pub.Scope)
	assert.True(t, pub.Concerns("n3", []string{"c"}))

	// More changed entries than an event names: their groups instead.
	many := map[string][]string{}
	for i := range registry.EventMaxNodes + 1 {
		id := fmt.Sprintf("m%03d", i)
		e.register(t, id)
		many[id] = []string{"b"}
	}
	for id, gs := range nodes {
		many[id] = gs
	}
	pub, logged = commitNext(t, e, sub, many)
	assert.Equal(t, registry.ScopeGroups, pub.Scope)
	assert.Empty(t, pub.Nodes)
	assert.Equal(t, []string{"b"}, pub.Groups)
	assert.Nil(t, pub.Holders, "entries of b's holders may have changed: counts would not do")
	assert.Equal(t, pub, logged)
	assert.True(t, pub.Concerns("n4", []string{"b"}))
	assert.False(t, pub.Concerns("n3", []string{"c"}))
	assert.True(t, pub.Concerns("x", nil), "a node holding nothing may have been given something")
}

// TestEventChannels: watchers get every event on the events channel; nodes
// get assignment events on theirs (and first on their own channel when the
// event names them) and a group's events only on that group's channel; each group write records its revision in :state for
// the beats, and a delete removes it.
func TestEventChannels(t *testing.T) {
	standalone := redistest.Start(t)
	cluster := redistest.StartCluster(t)
	for _, b := range []backend{{"standalone", standalone.Client(t)}, {"cluster", cluster.Client(t)}} {
		t.Run(b.name, func(t *testing.T) { testEventChannels(t, b.rdb) })
	}
}

func testEventChannels(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	e := newEnv(t, rdb)
	subscribe := func(ch string) *redis.PubSub {
		sub := rdb.Subscribe(ctx, ch)
		t.Cleanup(func() { _ = sub.Close() })
		_, err := sub.Receive(ctx)
		require.NoError(t, err)
		return sub
	}
	all, assign := subscribe(e.k.Events()), subscribe(e.k.AssignmentEvents())
	n1, n2 := subscribe(e.k.NodeEvents("n1")), subscribe(e.k.NodeEvents("n2"))
	ga, gb := subscribe(e.k.GroupEvents("a")), subscribe(e.k.GroupEvents("b"))
	next := func(sub *redis.PubSub) registry.Event {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		msg, err := sub.ReceiveMessage(rctx)
		require.NoError(t, err)
		ev, err := registry.ParseEvent(msg.Payload)
		require.NoError(t, err)
		return ev
	}
	groupRev := func(g string) (string, error) {
		return rdb.HGet(ctx, e.k.State(), keys.GroupRevField(g)).Result()
	}

	_, err := e.reg.Add(ctx, "a", registry.Change{}, "t")
	require.NoError(t, err)
	_, err = e.reg.Add(ctx, "b", registry.Change{}, "t")
	require.NoError(t, err)
	_, err = e.reg.Update(ctx, "a", registry.Change{Set: map[string]string{"k": "v"}}, "t")
	require.NoError(t, err)
	e.register(t, "n1")
	pub, _ := commitNext(t, e, all, map[string][]string{"n1": {"a"}})

	// The events channel had everything, in order (commitNext read the
	// three group events before the assignment); each narrow channel only
	// what concerns its subscribers: an assignment event that names what
	// changed goes to the named node and the named group's holders, not to
	// the assignment channel (every other node learns the epoch from its
	// beat).
	for _, want := range []struct {
		sub  *redis.PubSub
		typ  string
		rev  int64
		what string
	}{
		{ga, registry.EventGroupAdded, 1, "a's channel: a added"},
		{ga, registry.EventGroupUpdated, 3, "a's channel: a updated"},
		{ga, registry.EventAssignment, 0, "a's channel: the assignment that changed a's holder count"},
		{gb, registry.EventGroupAdded, 2, "b's channel: b added"},
		{n1, registry.EventAssignment, 0, "the channel of the node it names"},
	} {
		ev := next(want.sub)
		assert.Equal(t, want.typ, ev.Type, want.what)
		assert.Equal(t, want.rev, ev.Rev, want.what)
	}
	// A write's document rides only on the group's channel, for holders:
	// watchers' copy (and the log) never carries config.
	_, err = e.reg.Update(ctx, "b", registry.Change{Set: map[string]string{"api_key": "sk-secret"}}, "t")
	require.NoError(t, err)
	forWatchers, forHolders := next(all), next(gb)
	assert.Empty(t, forWatchers.Doc)
	doc, err := registry.ParseGroupDoc(forHolders.Doc)
	require.NoError(t, err)
	assert.Equal(t, "sk-secret", doc.Config["api_key"])
	logged, err := e.reg.Events(ctx, "", 10000, 0)
	require.NoError(t, err)
	for _, ev := range logged {
		assert.Empty(t, ev.Doc)
	}

	// Nothing else came on the narrow channels: a marker on each is next.
	// It is published as the scripts publish, from a script on the
	// namespace's shard: a plain PUBLISH goes to any Cluster node and
	// reaches the subscribers' only over the cluster bus, which a freshly
	// formed Cluster may still be connecting (a marker was lost that way).
	for _, ch := range []string{e.k.AssignmentEvents(), e.k.GroupEvents("a"), e.k.GroupEvents("b"), e.k.NodeEvents("n1"), e.k.NodeEvents("n2")} {
		require.NoError(t, rdb.Eval(ctx, `return redis.call('PUBLISH', ARGV[1], ARGV[2])`, []string{e.k.State()}, ch, `{"type":"marker"}`).Err())
	}
	for _, sub := range []*redis.PubSub{assign, ga, gb, n1, n2} {
		assert.Equal(t, "marker", next(sub).Type)
	}
	assert.Equal(t, int64(1), pub.Epoch)

	got, err := groupRev("a")
	require.NoError(t, err)
	assert.Equal(t, "3", got, "a's last write")
	got, err = groupRev("b")
	require.NoError(t, err)
	assert.Equal(t, "4", got, "b's last write")
	require.NoError(t, e.reg.Delete(ctx, "b", "t"))
	_, err = groupRev("b")
	assert.ErrorIs(t, err, redis.Nil, "a deleted group's revision goes")
	assert.Equal(t, registry.EventGroupDeleted, next(gb).Type)
}
