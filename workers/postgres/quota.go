package postgres

import (
	"context"
	"fmt"
	"time"
)

// OpenRequestsByDesk counts, per desk, the requests submitted within the
// last window that have not ended (completed, rejected or failed), from the
// dashboard's daily counts: one cheap query whatever the load, as fresh as
// the folder (a few seconds). Desks with none are left out.
func (s *Store) OpenRequestsByDesk(ctx context.Context, window time.Duration, now time.Time) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT key, sum(submitted - completed - rejected - failed)::int
		FROM dashboard_counts
		WHERE grain = 'day' AND scope = '' AND dim = 'desk' AND at >= date_trunc('day', $1::timestamptz)
		GROUP BY key
		HAVING sum(submitted - completed - rejected - failed) > 0`, now.Add(-window))
	if err != nil {
		return nil, classify(fmt.Errorf("count open requests: %w", err))
	}
	defer rows.Close()
	open := make(map[string]int)
	for rows.Next() {
		var desk string
		var n int
		if err := rows.Scan(&desk, &n); err != nil {
			return nil, fmt.Errorf("count open requests: %w", err)
		}
		open[desk] = n
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("count open requests: %w", err))
	}
	return open, nil
}
