package registry_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

// secretKey returns "id:base64" of a fresh random 256-bit key.
func secretKey(t testing.TB, id string) string {
	t.Helper()
	b := make([]byte, registry.SecretKeyBytes)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return id + ":" + base64.StdEncoding.EncodeToString(b)
}

func parseKeys(t testing.TB, spec ...string) *registry.SecretKeys {
	t.Helper()
	k, err := registry.ParseSecretKeys(strings.Join(spec, ","))
	require.NoError(t, err)
	return k
}

// Secret values of the at-rest tests: each must never be found in Redis.
const (
	secretA    = "sk-live-AAAA-0123456789abcdef"
	secretB    = "sk-live-BBBB-0123456789abcdef"
	secretC    = "sk-live-CCCC-0123456789abcdef"
	secretD    = "sk-live-DDDD-0123456789abcdef"
	secretSchd = "sk-live-SCHD-0123456789abcdef"
)

// dumpAll returns, for every key of the namespace, its content rendered
// (canonical: GET, LRANGE, HGETALL, XRANGE...) and its DUMP bytes.
func (e env) dumpAll(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := e.dump(t)
	var mu sync.Mutex
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, e.k.Prefix()+"*", 1000).Iterator()
		for iter.Next(ctx) {
			d, err := c.Dump(ctx, iter.Val()).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			out[iter.Val()] += "\nDUMP " + d
			mu.Unlock()
		}
		return iter.Err()
	}
	switch c := e.rdb.(type) {
	case *redis.ClusterClient:
		require.NoError(t, c.ForEachMaster(ctx, scan))
	case *redis.Client:
		require.NoError(t, scan(ctx, c))
	}
	return out
}

// leaks returns the keys whose content holds one of secrets.
func leaks(dump map[string]string, secrets ...string) []string {
	var out []string
	for k, v := range dump {
		for _, s := range secrets {
			if strings.Contains(v, s) {
				out = append(out, k+" holds "+s)
			}
		}
	}
	return out
}

// useAllPaths writes secrets through every path that stores a group
// document or a scheduled change: add, update, a scheduled update (pending
// and applied), rollback, retire, finish, import; and collects what the
// group channels published meanwhile.
func useAllPaths(t *testing.T, e env) (published func() []string) {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var msgs []string
	sub := e.rdb.Subscribe(ctx, e.k.GroupEvents("a"), e.k.GroupEvents("b"), e.k.GroupEvents("imp"), e.k.Events())
	t.Cleanup(func() { _ = sub.Close() })
	_, err := sub.Receive(ctx)
	require.NoError(t, err)
	ch := sub.Channel()
	go func() {
		for m := range ch {
			mu.Lock()
			msgs = append(msgs, m.Payload)
			mu.Unlock()
		}
	}()

	_, err = e.reg.Add(ctx, "a", registry.Change{Set: map[string]string{"api_key": secretA, "region": "eu"}, Secret: []string{"api_key"}}, "t")
	require.NoError(t, err)
	_, err = e.reg.Update(ctx, "a", registry.Change{Set: map[string]string{"api_key": secretB}}, "t")
	require.NoError(t, err)
	_, err = e.reg.Rollback(ctx, "a", 1, "t")
	require.NoError(t, err)
	_, err = e.reg.Add(ctx, "b", registry.Change{Set: map[string]string{"token": secretC}, Secret: []string{"token"}}, "t")
	require.NoError(t, err)
	_, err = e.reg.Retire(ctx, "b", time.Hour, "t")
	require.NoError(t, err)
	_, err = e.reg.FinishRetire(ctx, "b", "t")
	require.NoError(t, err)
	// One scheduled update stays pending, one is applied.
	_, err = e.reg.Schedule(ctx, registry.Scheduled{Group: "a", Op: registry.OpUpdate, At: time.Now().Add(time.Hour),
		Change: registry.Change{Set: map[string]string{"api_key": secretSchd}}, By: "t"})
	require.NoError(t, err)
	_, err = e.reg.Schedule(ctx, registry.Scheduled{Group: "a", Op: registry.OpUpdate, At: time.Now().Add(50 * time.Millisecond),
		Change: registry.Change{Set: map[string]string{"api_key": secretB}}, By: "t"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		applied, err := e.reg.ApplyDue(ctx)
		return err == nil && len(applied) == 1
	}, 5*time.Second, 20*time.Millisecond)
	// Import accepts plain text.
	have, err := e.reg.List(ctx)
	require.NoError(t, err)
	pool := registry.Pool{Groups: []registry.PoolGroup{{Name: "imp", Config: map[string]string{"api_key": secretD}, SecretKeys: []string{"api_key"}}}}
	plan, err := registry.PlanImport(pool, have, false)
	require.NoError(t, err)
	require.NoError(t, plan.Apply(ctx, e.reg, "t"))

	return func() []string {
		// The writes' events are published before their scripts return:
		// one more round trip drains what is in flight.
		require.NoError(t, e.rdb.Publish(ctx, e.k.Events(), "end").Err())
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(msgs) > 0 && msgs[len(msgs)-1] == "end"
		}, 5*time.Second, 10*time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), msgs...)
	}
}

// TestEncryptionAtRestNoSecretInRedis is the auditor's dump: with secret
// keys, no key of the namespace (SCAN + DUMP, and each key's content: the
// group documents, their history, the schedule, the event stream) and no
// event published holds a secret value; the same writes without keys do
// (the control: the check finds what is there).
func TestEncryptionAtRestNoSecretInRedis(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		all := []string{secretA, secretB, secretC, secretD, secretSchd}

		plain := newEnv(t, rdb)
		plainPub := useAllPaths(t, plain)
		assert.NotEmpty(t, leaks(plain.dumpAll(t), all...), "control: without keys the values are in Redis")
		assert.NotEmpty(t, leaks(map[string]string{"pub": strings.Join(plainPub(), "\n")}, secretA), "control: and in the published documents")

		e := newEnv(t, rdb, registry.WithSecretKeys(parseKeys(t, secretKey(t, "k1"))))
		published := useAllPaths(t, e)
		dump := e.dumpAll(t)
		assert.Empty(t, leaks(dump, all...))
		assert.Empty(t, leaks(map[string]string{"published": strings.Join(published(), "\n")}, all...))
		assert.Contains(t, dump[e.k.Group("a")], registry.SealedPrefix+"k1:", "the document holds the sealed value")

		// Readers with the key get plain text back everywhere.
		a, err := e.reg.Get(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, secretB, a.Config["api_key"])
		assert.Equal(t, "eu", a.Config["region"], "values of keys not secret are stored as they are")
		assert.Contains(t, dump[e.k.Group("a")], `"region":"eu"`)
		assert.Nil(t, a.Sealed())
		hist, err := e.reg.History(ctx, "a")
		require.NoError(t, err)
		var seen []string
		for _, h := range hist {
			seen = append(seen, h.Config["api_key"])
		}
		assert.Equal(t, []string{secretB, secretA, secretB, secretA}, seen)
		items, err := e.reg.Schedules(ctx)
		require.NoError(t, err)
		require.Len(t, items, 1)
		assert.Equal(t, secretSchd, items[0].Change.Set["api_key"])
		imp, err := e.reg.Get(ctx, "imp")
		require.NoError(t, err)
		assert.Equal(t, secretD, imp.Config["api_key"])
		p, err := e.reg.Export(ctx, true)
		require.NoError(t, err)
		assert.Equal(t, secretD, p.Groups[2].Config["api_key"], "export with reveal writes plain text")

		st, err := e.reg.SecretsStatus(ctx)
		require.NoError(t, err)
		assert.Equal(t, registry.AtRestEncrypted, st.AtRest)
		assert.Equal(t, registry.SecretCounts{Sealed: map[string]int{"k1": 3}}, st.Documents)
		assert.Equal(t, registry.SecretCounts{Sealed: map[string]int{"k1": 8}}, st.History, "a 4, b 3, imp 1")
		assert.Equal(t, registry.SecretCounts{Sealed: map[string]int{"k1": 1}}, st.Schedules)
		assert.Equal(t, registry.SecretCounts{Sealed: map[string]int{"k1": 12}}, st.Total)
		assert.Empty(t, st.Unknown)

		pst, err := plain.reg.SecretsStatus(ctx)
		require.NoError(t, err)
		assert.Equal(t, registry.AtRestPlaintext, pst.AtRest)
		assert.Equal(t, 12, pst.Total.Plaintext)
		assert.Empty(t, pst.Total.Sealed)
	})
}

// rawDoc edits the stored document of group g through fn (on its config).
func rawDoc(t *testing.T, e env, g string, fn func(cfg map[string]string)) {
	t.Helper()
	ctx := context.Background()
	s, err := e.rdb.Get(ctx, e.k.Group(g)).Result()
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &doc))
	cfg := map[string]string{}
	for k, v := range doc["config"].(map[string]any) {
		cfg[k] = v.(string)
	}
	fn(cfg)
	doc["config"] = cfg
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	require.NoError(t, e.rdb.Set(ctx, e.k.Group(g), string(b), 0).Err())
}

func storedValue(t *testing.T, e env, g, key string) string {
	t.Helper()
	var v string
	rawDoc(t, e, g, func(cfg map[string]string) { v = cfg[key] })
	return v
}

// TestSealedValueTamperedOrMovedIsRefused: a sealed value that was altered,
// or copied into another group or under another key, is an error naming the
// group and the key — from Get, List, a node's assignment and an event's
// document — and never comes back as a value.
func TestSealedValueTamperedOrMovedIsRefused(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		e := newEnv(t, rdb, registry.WithSecretKeys(parseKeys(t, secretKey(t, "k1"))))
		for _, g := range []string{"g1", "g2"} {
			_, err := e.reg.Add(ctx, g, registry.Change{Set: map[string]string{"api_key": secretA + g, "other": "x"}, Secret: []string{"api_key", "other"}}, "t")
			require.NoError(t, err)
		}
		e.register(t, "n1")
		_, _, err := e.reg.Commit(ctx, registry.Commit{Nodes: map[string][]string{"n1": {"g2"}}})
		require.NoError(t, err)

		check := func(what, key string) {
			t.Helper()
			_, err := e.reg.Get(ctx, "g2")
			var sv *registry.SecretValueError
			require.ErrorAs(t, err, &sv, what)
			assert.ErrorIs(t, err, registry.ErrSecretAuth, what)
			assert.Equal(t, "g2", sv.Group, what)
			assert.Equal(t, key, sv.Key, what)
			assert.Equal(t, "k1", sv.KeyID, what)
			assert.Contains(t, err.Error(), `group "g2" config key "`+key+`"`, what)
			_, err = e.reg.List(ctx)
			assert.ErrorIs(t, err, registry.ErrSecretAuth, what)
			_, err = e.reg.NodeAssignment(ctx, "n1")
			assert.ErrorIs(t, err, registry.ErrSecretAuth, what)
			doc, err := e.rdb.Get(ctx, e.k.Group("g2")).Result()
			require.NoError(t, err)
			_, err = e.reg.ParseGroupDoc(doc)
			assert.ErrorIs(t, err, registry.ErrSecretAuth, what)
		}

		orig := storedValue(t, e, "g2", "api_key")
		// Tampered: one character of the ciphertext changed.
		rawDoc(t, e, "g2", func(cfg map[string]string) {
			v := []byte(cfg["api_key"])
			i := len(v) - 5
			v[i] = map[bool]byte{true: 'B', false: 'A'}[v[i] == 'A']
			cfg["api_key"] = string(v)
		})
		check("tampered", "api_key")

		// Moved: g1's sealed value copied into g2, under the same key.
		rawDoc(t, e, "g2", func(cfg map[string]string) { cfg["api_key"] = storedValue(t, e, "g1", "api_key") })
		check("moved from another group", "api_key")

		// Moved: g2's own api_key copied under another key of g2.
		rawDoc(t, e, "g2", func(cfg map[string]string) { cfg["api_key"], cfg["other"] = orig, orig })
		check("moved to another key", "other")

		// Put back, it opens again.
		rawDoc(t, e, "g2", func(cfg map[string]string) { cfg["other"] = storedValue(t, e, "g1", "other") })
		_, err = e.reg.Get(ctx, "g2")
		assert.ErrorIs(t, err, registry.ErrSecretAuth, "g1's other moved to g2")
		rawDoc(t, e, "g2", func(cfg map[string]string) { cfg["other"] = "x" })
		g, err := e.reg.Get(ctx, "g2")
		require.NoError(t, err)
		assert.Equal(t, secretA+"g2", g.Config["api_key"])

		// Another namespace with the same key does not open it either.
		other := newEnv(t, rdb, registry.WithSecretKeys(e.reg.SecretKeys()))
		_, err = other.reg.Add(ctx, "g2", registry.Change{Set: map[string]string{"api_key": "x"}, Secret: []string{"api_key"}}, "t")
		require.NoError(t, err)
		rawDoc(t, other, "g2", func(cfg map[string]string) { cfg["api_key"] = orig })
		_, err = other.reg.Get(ctx, "g2")
		assert.ErrorIs(t, err, registry.ErrSecretAuth, "moved from another namespace")
	})
}

// TestReaderWithoutKeyKeepsValuesSealed: a process without the key sees the
// value sealed (Sealed, masked), refuses to hand it out as plain text (a
// node's assignment, export with reveal), and carries it unchanged through
// its own writes and scheduled updates, so a process with the key still
// opens it.
func TestReaderWithoutKeyKeepsValuesSealed(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	keyed := newEnv(t, rdb, registry.WithSecretKeys(parseKeys(t, secretKey(t, "k1"))))
	_, err := keyed.reg.Add(ctx, "g", registry.Change{Set: map[string]string{"api_key": secretA, "region": "eu"}, Secret: []string{"api_key"}}, "t")
	require.NoError(t, err)
	keyed.register(t, "n1")
	_, _, err = keyed.reg.Commit(ctx, registry.Commit{Nodes: map[string][]string{"n1": {"g"}}})
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		reg  *registry.Registry
	}{
		{"no keys", registry.New(rdb, registry.WithNamespace(keyed.ns))},
		{"other key", registry.New(rdb, registry.WithNamespace(keyed.ns), registry.WithSecretKeys(parseKeys(t, secretKey(t, "k2"))))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := tc.reg.Get(ctx, "g")
			require.NoError(t, err)
			assert.Equal(t, map[string]string{"api_key": "k1"}, g.Sealed())
			assert.Equal(t, registry.MaskPrefix, g.Masked().Config["api_key"])
			assert.False(t, registry.IsSealed(g.Config["region"]), "values of keys not secret are plain")

			_, err = tc.reg.NodeAssignment(ctx, "n1")
			assert.ErrorIs(t, err, registry.ErrSecretKeyMissing)
			assert.Contains(t, err.Error(), `group "g" config key "api_key" is sealed with secret key "k1"`)
			_, err = tc.reg.Export(ctx, true)
			assert.ErrorIs(t, err, registry.ErrSecretKeyMissing)
			p, err := tc.reg.Export(ctx, false)
			require.NoError(t, err)
			assert.Equal(t, registry.MaskPrefix, p.Groups[0].Config["api_key"])

			// Its writes carry the sealed value as it is.
			_, err = tc.reg.Update(ctx, "g", registry.Change{Set: map[string]string{"region": "us-" + tc.name}}, "t")
			require.NoError(t, err)
			got, err := keyed.reg.Get(ctx, "g")
			require.NoError(t, err)
			assert.Equal(t, secretA, got.Config["api_key"])
			assert.Equal(t, "us-"+tc.name, got.Config["region"])
		})
	}

	// A scheduled update sealed by the keyed registry and applied by one
	// without the key lands sealed in the group, and opens for the keyed.
	_, err = keyed.reg.Schedule(ctx, registry.Scheduled{Group: "g", Op: registry.OpUpdate, At: time.Now().Add(50 * time.Millisecond),
		Change: registry.Change{Set: map[string]string{"api_key": secretB, "new": secretC}}, By: "t"})
	require.NoError(t, err)
	keyless := registry.New(rdb, registry.WithNamespace(keyed.ns))
	items, err := keyless.Schedules(ctx)
	require.NoError(t, err)
	require.Len(t, items, 1)
	assert.Equal(t, map[string]string{"api_key": "k1", "new": "k1"}, items[0].Sealed())
	assert.Equal(t, registry.MaskPrefix, items[0].Masked(nil).Change.Set["new"])
	require.Eventually(t, func() bool {
		applied, err := keyless.ApplyDue(ctx)
		return err == nil && len(applied) == 1
	}, 5*time.Second, 20*time.Millisecond)
	got, err := keyed.reg.Get(ctx, "g")
	require.NoError(t, err)
	assert.Equal(t, secretB, got.Config["api_key"])
	assert.Equal(t, secretC, got.Config["new"])
	assert.Contains(t, storedValue(t, keyed, "g", "new"), registry.SealedPrefix, "a value a scheduled update set stays sealed though its key is not marked")
}

// TestSealedFormIsRefusedAsInput: a value given in the sealed form is bad
// input on every path a user writes through, and nothing is written.
func TestSealedFormIsRefusedAsInput(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, redistest.Start(t).Client(t), registry.WithSecretKeys(parseKeys(t, secretKey(t, "k1"))))
	bad := map[string]string{"api_key": registry.SealedPrefix + "k1:AAAA"}
	_, err := e.reg.Add(ctx, "g", registry.Change{Set: bad}, "t")
	assert.ErrorIs(t, err, registry.ErrInvalidConfig)
	assert.Contains(t, err.Error(), `value of "api_key" starts with "allot:enc:v1:"`)
	_, err = e.reg.Add(ctx, "g", registry.Change{}, "t")
	require.NoError(t, err)
	before := e.dump(t)
	_, err = e.reg.Update(ctx, "g", registry.Change{Set: bad}, "t")
	assert.ErrorIs(t, err, registry.ErrInvalidConfig)
	_, err = e.reg.Schedule(ctx, registry.Scheduled{Group: "g", Op: registry.OpUpdate, At: time.Now().Add(time.Hour), Change: registry.Change{Set: bad}})
	assert.ErrorIs(t, err, registry.ErrInvalidConfig)
	_, err = registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{{Name: "g", Config: bad}}}, nil, false)
	assert.ErrorIs(t, err, registry.ErrInvalidConfig)
	_, err = registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{{Name: "g"}}, Schedules: []registry.PoolSchedule{
		{Group: "g", Op: registry.OpUpdate, At: time.Now().Add(time.Hour), Change: &registry.Change{Set: bad}}}}, nil, false)
	assert.ErrorIs(t, err, registry.ErrInvalidConfig)
	assert.Equal(t, before, e.dump(t))
}

// TestRotateSecrets: data sealed with k1 (and some stored before any key,
// in plain text) is sealed with k2 by a rotation with "k2,k1": every
// document, kept version and pending scheduled change, with no new version,
// revision or event; readers with "k2,k1" read the same values throughout.
func TestRotateSecrets(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		k1, k2 := secretKey(t, "k1"), secretKey(t, "k2")
		plain := newEnv(t, rdb)
		// Stored before encryption was turned on: plain text, and a value
		// written before its key was marked (history).
		_, err := plain.reg.Add(ctx, "old", registry.Change{Set: map[string]string{"api_key": secretC}}, "t")
		require.NoError(t, err)
		_, err = plain.reg.Update(ctx, "old", registry.Change{Secret: []string{"api_key"}}, "t")
		require.NoError(t, err)

		e1 := env{rdb: rdb, ns: plain.ns, k: plain.k, reg: registry.New(rdb, registry.WithNamespace(plain.ns), registry.WithSecretKeys(parseKeys(t, k1)))}
		_, err = e1.reg.Add(ctx, "g", registry.Change{Set: map[string]string{"api_key": secretA, "region": "eu"}, Secret: []string{"api_key"}}, "t")
		require.NoError(t, err)
		_, err = e1.reg.Update(ctx, "g", registry.Change{Set: map[string]string{"api_key": secretB}}, "t")
		require.NoError(t, err)
		_, err = e1.reg.Schedule(ctx, registry.Scheduled{Group: "g", Op: registry.OpUpdate, At: time.Now().Add(time.Hour),
			Change: registry.Change{Set: map[string]string{"api_key": secretSchd}}, By: "t"})
		require.NoError(t, err)

		e2 := env{rdb: rdb, ns: plain.ns, k: plain.k, reg: registry.New(rdb, registry.WithNamespace(plain.ns), registry.WithSecretKeys(parseKeys(t, k2, k1)))}
		st, err := e2.reg.SecretsStatus(ctx)
		require.NoError(t, err)
		assert.Equal(t, registry.SecretCounts{Plaintext: 3, Sealed: map[string]int{"k1": 4}}, st.Total)
		assert.Equal(t, "k2", st.Encrypts)

		before := readAll(t, e2)
		groupsBefore, err := e2.reg.List(ctx)
		require.NoError(t, err)
		logLen, err := rdb.XLen(ctx, e2.k.Log()).Result()
		require.NoError(t, err)
		state, err := rdb.HGetAll(ctx, e2.k.State()).Result()
		require.NoError(t, err)

		res, err := e2.reg.RotateSecrets(ctx, 2)
		require.NoError(t, err)
		assert.Equal(t, 7, res.Resealed)
		assert.Equal(t, 2, res.Documents)
		assert.Equal(t, 4, res.HistoryEntries)
		assert.Equal(t, 1, res.Schedules)
		assert.Equal(t, 0, res.Changed)

		st, err = e2.reg.SecretsStatus(ctx)
		require.NoError(t, err)
		assert.Equal(t, registry.SecretCounts{Sealed: map[string]int{"k2": 7}}, st.Total)
		assert.Empty(t, leaks(e2.dumpAll(t), secretA, secretB, secretC, secretSchd))
		assert.Equal(t, before, readAll(t, e2), "the same plain values everywhere")
		groupsAfter, err := e2.reg.List(ctx)
		require.NoError(t, err)
		assert.Equal(t, groupsBefore, groupsAfter, "same versions and timestamps")
		n, err := rdb.XLen(ctx, e2.k.Log()).Result()
		require.NoError(t, err)
		assert.Equal(t, logLen, n, "no event")
		st2, err := rdb.HGetAll(ctx, e2.k.State()).Result()
		require.NoError(t, err)
		assert.Equal(t, state, st2, "no new revision")

		// Nothing left to do: a second rotation writes nothing.
		res, err = e2.reg.RotateSecrets(ctx, 0)
		require.NoError(t, err)
		assert.Equal(t, registry.RotateResult{Passes: 1}, res)

		// k1 can go: a registry with k2 alone reads everything.
		only2 := registry.New(rdb, registry.WithNamespace(plain.ns), registry.WithSecretKeys(parseKeys(t, k2)))
		g, err := only2.Get(ctx, "g")
		require.NoError(t, err)
		assert.Equal(t, secretB, g.Config["api_key"])
		assert.Nil(t, g.Sealed())
	})
}

// readAll is every plain value a reader gets: documents, history,
// schedules.
func readAll(t *testing.T, e env) map[string]any {
	t.Helper()
	ctx := context.Background()
	out := map[string]any{}
	groups, err := e.reg.List(ctx)
	require.NoError(t, err)
	for _, g := range groups {
		out["doc "+g.Name] = g.Config
		hist, err := e.reg.History(ctx, g.Name)
		require.NoError(t, err)
		var cfgs []map[string]string
		for _, h := range hist {
			cfgs = append(cfgs, h.Config)
		}
		out["history "+g.Name] = cfgs
	}
	items, err := e.reg.Schedules(ctx)
	require.NoError(t, err)
	for _, s := range items {
		out["schedule "+s.ID] = s.Change.Set
	}
	return out
}

// TestRotateStopsBeforeWritingWhenAValueCannotBeOpened: a rotation with a
// key list that lacks a value's key, or that meets a tampered value, writes
// nothing and names the value (group, where, config key, key ID).
func TestRotateStopsBeforeWritingWhenAValueCannotBeOpened(t *testing.T) {
	redistest.Topologies(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		k0, k1 := secretKey(t, "k0"), secretKey(t, "k1")
		e := newEnv(t, rdb, registry.WithSecretKeys(parseKeys(t, k1)))
		// Sorted first, so the rotation would rewrite "a" before meeting "z".
		_, err := e.reg.Add(ctx, "a", registry.Change{Set: map[string]string{"api_key": secretA}, Secret: []string{"api_key"}}, "t")
		require.NoError(t, err)
		old := registry.New(rdb, registry.WithNamespace(e.ns), registry.WithSecretKeys(parseKeys(t, k0)))
		_, err = old.Add(ctx, "z", registry.Change{Set: map[string]string{"api_key": secretB}, Secret: []string{"api_key"}}, "t")
		require.NoError(t, err)
		before := e.dumpAll(t)

		rot := registry.New(rdb, registry.WithNamespace(e.ns), registry.WithSecretKeys(parseKeys(t, secretKey(t, "k2"), k1)))
		_, err = rot.RotateSecrets(ctx, 1)
		var re *registry.RotateError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 0, re.Written)
		require.Len(t, re.Problems, 2, "the document and its history entry")
		var sv *registry.SecretValueError
		require.ErrorAs(t, re.Problems[0], &sv)
		assert.Equal(t, registry.SecretValueError{Group: "z", Where: "document", Key: "api_key", KeyID: "k0", Err: registry.ErrSecretKeyMissing}, *sv)
		assert.ErrorIs(t, err, registry.ErrSecretKeyMissing)
		assert.Contains(t, err.Error(), `group "z" (document) config key "api_key" is sealed with secret key "k0"`)
		assert.Contains(t, err.Error(), "nothing was written")
		assert.Equal(t, before, e.dumpAll(t), "nothing written")

		// A tampered value stops it the same way.
		rawDoc(t, e, "z", func(cfg map[string]string) { cfg["api_key"] = storedValue(t, e, "a", "api_key") })
		before = e.dumpAll(t)
		_, err = rot.RotateSecrets(ctx, 1)
		require.ErrorAs(t, err, &re)
		assert.ErrorIs(t, err, registry.ErrSecretAuth)
		assert.Contains(t, err.Error(), `group "z" (document) config key "api_key": sealed value fails authentication (key "k1")`)
		assert.Equal(t, before, e.dumpAll(t), "nothing written")

		// Without keys there is nothing to rotate with.
		_, err = registry.New(rdb, registry.WithNamespace(e.ns)).RotateSecrets(ctx, 0)
		assert.ErrorIs(t, err, registry.ErrNoSecretKeys)
	})
}

// TestRotateSkipsTextsWrittenMeanwhile: the rotate script replaces a text
// only if it is still the one read; a write in between wins.
func TestRotateSkipsTextsWrittenMeanwhile(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	k1 := secretKey(t, "k1")
	e := newEnv(t, rdb, registry.WithSecretKeys(parseKeys(t, k1)))
	_, err := e.reg.Add(ctx, "g", registry.Change{Set: map[string]string{"api_key": secretA}, Secret: []string{"api_key"}}, "t")
	require.NoError(t, err)
	rot := registry.New(rdb, registry.WithNamespace(e.ns), registry.WithSecretKeys(parseKeys(t, secretKey(t, "k2"), k1)))
	var once sync.Once
	defer registry.SetRotateHook(func() {
		once.Do(func() {
			_, err := e.reg.Update(ctx, "g", registry.Change{Set: map[string]string{"api_key": secretB}}, "t")
			require.NoError(t, err)
		})
	})()
	res, err := rot.RotateSecrets(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Changed, "the document changed under it (the kept version 1 did not)")
	assert.Equal(t, 2, res.Passes)
	st, err := rot.SecretsStatus(ctx)
	require.NoError(t, err)
	assert.Equal(t, registry.SecretCounts{Sealed: map[string]int{"k2": 3}}, st.Total)
	g, err := rot.Get(ctx, "g")
	require.NoError(t, err)
	assert.Equal(t, secretB, g.Config["api_key"], "the write in between stands")
	assert.Equal(t, int64(2), g.Version)
}
