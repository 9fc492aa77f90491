package workers_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

func TestFolder_BringsTheDashboardUpToDateWithTheProjection(t *testing.T) {
	t.Parallel()
	store := pgtest.Store(t)
	ctx := t.Context()
	f, err := workers.NewFolder(workers.FolderConfig{Store: store, Every: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "Folder", f.Run)

	submitted := func() (int, error) {
		var n int
		err := store.Pool().QueryRow(ctx, `
			SELECT coalesce(sum(submitted), 0) FROM dashboard_counts
			WHERE grain = 'day' AND scope = '' AND dim = 'total'`).Scan(&n)
		return n, err
	}
	for round := 1; round <= 2; round++ {
		// Projected while the folder runs: the roll-ups catch up within a
		// few ticks, each request counted once.
		for i := range 3 {
			req := eventstest.Request(fmt.Sprintf("req-%d-%d", round, i), "tax-id-certificate", map[string]any{"tax_number": "123456789", "year": 2025})
			for _, err := range store.Project(ctx, []events.Change{{Request: req}}) {
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		workertest.WaitFor(t, "the dashboard to count every submission", func() error {
			n, err := submitted()
			if err == nil && n != 3*round {
				err = fmt.Errorf("the dashboard counts %d submissions, want %d", n, 3*round)
			}
			return err
		})
	}
}
