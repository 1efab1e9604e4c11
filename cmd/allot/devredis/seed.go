package devredis

import (
	"context"
	"errors"
	"fmt"

	"github.com/allot-io/allot/registry"
)

// sample is one sample group of dev mode.
type sample struct {
	name   string
	change registry.Change
}

// samples are the groups dev mode starts with: two weighted search keys,
// an exclusive LLM key with request, token and daily limits, and a
// rate-limited maps key. The secrets are fake.
func samples() []sample {
	return []sample{
		{"search-a", registry.Change{
			Set:    map[string]string{"api_key": "demo-search-a-0000000000000001", "endpoint": "https://search.example.com/v1"},
			Secret: []string{"api_key"}, Weight: new(1.0), Quota: new("100/s")}},
		{"search-b", registry.Change{
			Set:    map[string]string{"api_key": "demo-search-b-0000000000000002", "endpoint": "https://search.example.com/v1"},
			Secret: []string{"api_key"}, Weight: new(2.0), Quota: new("200/s")}},
		{"llm-exclusive", registry.Change{
			Set:    map[string]string{"api_key": "demo-llm-00000000000000000003", "model": "demo-large"},
			Secret: []string{"api_key"}, MaxNodes: new(1), Quota: new("60/m, 90000 tokens/m, 10000/d")}},
		{"maps-a", registry.Change{
			Set:    map[string]string{"api_key": "demo-maps-a-000000000000004", "region": "eu"},
			Secret: []string{"api_key"}, Quota: new("600/m")}},
	}
}

// Seed adds the sample groups that do not exist yet and returns their names.
func Seed(ctx context.Context, reg *registry.Registry) ([]string, error) {
	var added []string
	for _, s := range samples() {
		_, err := reg.Add(ctx, s.name, s.change, "dev-seed")
		switch {
		case err == nil:
			added = append(added, s.name)
		case errors.Is(err, registry.ErrExists):
		default:
			return added, fmt.Errorf("devredis: seed %q: %w", s.name, err)
		}
	}
	return added, nil
}
