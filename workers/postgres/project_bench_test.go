package postgres_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// BenchmarkProject measures the projector's store: batches of 500 changes,
// the events of 100 requests from 50 desks in 10 municipalities for two
// services, each submitted, routed to one agency, dispatched, accepted and
// completed. One op is one change; the figure that matters is changes/s.
func BenchmarkProject(b *testing.B) {
	s := postgres.NewStore(pgtest.Pool(b, pgtest.Schema(b)), []byte("0123456789abcdef0123456789abcdef"),
		postgres.ServiceLevels(map[string]time.Duration{"change-of-address": time.Hour}))
	ctx := b.Context()
	const batch = 500
	var changes []events.Change
	start := time.Now().UTC().Add(-time.Hour)
	n := 0
	next := func() []events.Change {
		if len(changes) < batch {
			for range 100 {
				at := start.Add(time.Duration(n) * 10 * time.Millisecond)
				r := newRequest(fmt.Sprintf("desk-%d", n%50), []string{"change-of-address", "tax-id-certificate"}[n%2], at)
				r.Municipality = fmt.Sprintf("m%d", n%10)
				changes = append(changes, submitted(r), routed(r, at.Add(time.Millisecond), "tax"),
					agencyEvent(r, "tax", events.StatusDispatched, at.Add(2*time.Millisecond)),
					agencyEvent(r, "tax", events.StatusAccepted, at.Add(3*time.Millisecond)),
					agencyEvent(r, "tax", events.StatusCompleted, at.Add(time.Duration(n%1000)*time.Second)))
				n++
			}
		}
		out := changes[:batch]
		changes = changes[batch:]
		return out
	}
	projected := 0
	b.ResetTimer()
	for projected < b.N {
		for i, err := range s.Project(ctx, next()) {
			if err != nil {
				b.Fatalf("change %d: %v", i, err)
			}
		}
		projected += batch
	}
	b.ReportMetric(float64(projected)/b.Elapsed().Seconds(), "changes/s")
}
