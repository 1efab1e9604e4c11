package registry

import (
	"context"
	"fmt"
)

// Count returns how many groups the namespace has, whatever their state. One
// SCARD.
func (r *Registry) Count(ctx context.Context) (int64, error) {
	n, err := r.rdb.SCard(ctx, r.keys.Groups()).Result()
	if err != nil {
		return 0, fmt.Errorf("registry: count groups: %w", err)
	}
	return n, nil
}
