package allocator

import (
	"context"

	"github.com/allot-io/allot/registry"
)

// ReadUsage fills each group's Used from its use, each limit read over its
// window (quota.Limits.MostUsed), in one round trip of u. `allot status`
// and GET /v1/status both show it. It needs a Status from Inspect; on
// another it does nothing.
func (s *Status) ReadUsage(ctx context.Context, u *registry.UsageReader) error {
	var limited []registry.Group
	for _, g := range s.groups {
		if !g.Limits.IsZero() {
			limited = append(limited, g)
		}
	}
	if len(limited) == 0 {
		return nil
	}
	use, err := u.Read(ctx, limited, 0)
	if err != nil {
		return err
	}
	byName := make(map[string]registry.Group, len(limited))
	for _, g := range limited {
		byName[g.Name] = g
	}
	for i, g := range s.Groups {
		if gu, ok := use.Groups[g.Name]; ok {
			s.Groups[i].Used = byName[g.Name].Limits.MostUsed(gu.Totals)
		}
	}
	return nil
}
