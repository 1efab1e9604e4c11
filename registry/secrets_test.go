package registry_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/internal/redistest"
	"github.com/allot-io/allot/registry"
)

const stickySecret = "sk-live-0123456789abcdef"

// TestSecretMarksStick is the attack of the security review: a key marked
// secret after it was created showed its old plain value in the history,
// and a rollback to that version dropped the mark.
func TestSecretMarksStick(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, redistest.Start(t).Client(t))
	_, err := e.reg.Add(ctx, "g", registry.Change{Set: map[string]string{"api_key": stickySecret, "region": "eu"}}, "t")
	require.NoError(t, err)
	_, err = e.reg.Update(ctx, "g", registry.Change{Secret: []string{"api_key"}}, "t") // v2
	require.NoError(t, err)

	hist, err := e.reg.History(ctx, "g")
	require.NoError(t, err)
	require.Len(t, hist, 2)
	assert.Equal(t, []string{"api_key"}, registry.SecretUnion(hist))
	for _, g := range registry.MaskHistory(hist) {
		assert.Equal(t, "****cdef", g.Config["api_key"], "version %d", g.Version)
		assert.Equal(t, "eu", g.Config["region"])
	}
	assert.Empty(t, registry.MaskHistory(hist)[1].SecretKeys, "each version keeps its own marks")
	diff := registry.DiffGroups(registry.Group{}, hist[1], registry.SecretUnion(hist)...)
	for _, f := range diff {
		if f.Field == "config.api_key" {
			assert.Equal(t, registry.MaskPrefix, *f.New)
		}
	}

	// Rollback to v1 (no mark then) keeps the mark of now.
	g, err := e.reg.Rollback(ctx, "g", 1, "t")
	require.NoError(t, err)
	assert.Equal(t, []string{"api_key"}, g.SecretKeys)
	assert.Equal(t, "****cdef", g.Masked().Config["api_key"])

	// Only Unsecret removes it, as a version of its own.
	g, err = e.reg.Update(ctx, "g", registry.Change{Unsecret: []string{"api_key"}}, "admin")
	require.NoError(t, err)
	assert.Equal(t, int64(4), g.Version)
	assert.Empty(t, g.SecretKeys)
	assert.Equal(t, stickySecret, g.Masked().Config["api_key"])
	hist, err = e.reg.History(ctx, "g")
	require.NoError(t, err)
	assert.Equal(t, "admin", hist[0].UpdatedBy)
	for _, g := range registry.MaskHistory(hist) {
		assert.NotContains(t, g.Config["api_key"], "0123456789ab", "version %d: kept versions stay masked", g.Version)
	}
}

func TestUnsecretRefusals(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, redistest.Start(t).Client(t))
	_, err := e.reg.Add(ctx, "g", registry.Change{Set: map[string]string{"k": "v", "p": "q"}, Secret: []string{"k"}}, "t")
	require.NoError(t, err)
	for _, c := range []registry.Change{
		{Unsecret: []string{"p"}},                        // not secret
		{Unsecret: []string{"nope"}},                     // no such key
		{Secret: []string{"k"}, Unsecret: []string{"k"}}, // both
		{Unset: []string{"k"}, Unsecret: []string{"k"}},  // gone with its mark
		{Set: map[string]string{"bad": "\xff\xfeoops"}},  // not UTF-8
		{Set: map[string]string{"\xc3\x28": "bad key"}},  // not UTF-8
	} {
		_, err := e.reg.Update(ctx, "g", c, "t")
		assert.ErrorIs(t, err, registry.ErrInvalidConfig, "%+v", c)
	}
	_, err = e.reg.Add(ctx, "h", registry.Change{Set: map[string]string{"k": "a\x80b"}}, "t")
	assert.ErrorIs(t, err, registry.ErrInvalidConfig)
	g, err := e.reg.Get(ctx, "g")
	require.NoError(t, err)
	assert.Equal(t, int64(1), g.Version, "nothing written")
}

func TestImportRefusesInvalidUTF8(t *testing.T) {
	_, err := registry.PlanImport(registry.Pool{Groups: []registry.PoolGroup{{Name: "a", Config: map[string]string{"k": "\xff"}}}}, nil, false)
	assert.ErrorIs(t, err, registry.ErrInvalidConfig)
}
