package allocator

import (
	"context"

	"github.com/allot-io/allot/registry"
)

// ReadUsage fills each group's Used from its usage in the last full minute
// (Redis server time), in one round trip. `allot status` and GET /v1/status
// both show it.
func (s *Status) ReadUsage(ctx context.Context, reg *registry.Registry) error {
	var names []string
	for _, g := range s.Groups {
		if g.Quota != "" {
			names = append(names, g.Name)
		}
	}
	last, err := reg.LastMinute(ctx, names)
	if err != nil {
		return err
	}
	for i, g := range s.Groups {
		m, ok := last[g.Name]
		if !ok {
			continue
		}
		if ls, err := registry.ParseQuota(g.Quota); err == nil {
			s.Groups[i].Used = ls.Used(m)
		}
	}
	return nil
}
