package postgres_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
)

// TestProject_UnreachableDatabaseIsAnOutage checks that failing to reach
// Postgres is reported as events.ErrUnavailable, which consumers retry
// promptly and never dead-letter, and not as a fault of the change.
func TestProject_UnreachableDatabaseIsAnOutage(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1; the pool only notices when it connects.
	pool, err := pgxpool.New(t.Context(), "postgres://spotflow@127.0.0.1:1/spotflow?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := postgres.NewStore(pool, []byte("0123456789abcdef0123456789abcdef"))
	ev := events.StatusEvent{Schema: events.SchemaStatus, ID: "r.routed", RequestID: "r", Status: events.StatusRouted, Agencies: []string{"tax"}, At: time.Now()}
	errs := store.Project(t.Context(), []events.Change{{Event: &ev}})
	if len(errs) != 1 || !errors.Is(errs[0], events.ErrUnavailable) || events.IsPermanent(errs[0]) {
		t.Errorf("Project on an unreachable database = %v; want an outage, not a permanent failure", errs)
	}
	if _, err := store.Accepted(t.Context(), "r"); !errors.Is(err, events.ErrUnavailable) {
		t.Errorf("Accepted on an unreachable database = %v; want an outage", err)
	}
}
