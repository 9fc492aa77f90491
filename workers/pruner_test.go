package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// prunerCalls records what a pruner asked of its store.
type prunerCalls struct {
	mu                     sync.Mutex
	dashboard, cleared     []time.Time
	reconcileAfter         []time.Duration
	prunedBefore           []time.Time
	visitsBefore           []time.Time
	trainingBefore         []time.Time
	failDashboard, failAll bool
}

func (c *prunerCalls) PruneTraining(_ context.Context, before time.Time) (events.Pruned, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trainingBefore = append(c.trainingBefore, before)
	if c.failAll {
		return events.Pruned{}, 0, errors.New("training: postgres down")
	}
	return events.Pruned{Requests: 1}, 1, nil
}

func (c *prunerCalls) EndIdleVisits(_ context.Context, cutoff time.Time) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.visitsBefore = append(c.visitsBefore, cutoff)
	if c.failAll {
		return 0, errors.New("visits: postgres down")
	}
	return 0, nil
}

func (c *prunerCalls) PruneDashboard(_ context.Context, now time.Time) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dashboard = append(c.dashboard, now)
	if c.failDashboard || c.failAll {
		return 0, errors.New("dashboard: postgres down")
	}
	return 1, nil
}

func (c *prunerCalls) ClearSealedCopies(_ context.Context, now time.Time, reconcileAfter time.Duration) (events.Pruned, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleared, c.reconcileAfter = append(c.cleared, now), append(c.reconcileAfter, reconcileAfter)
	if c.failAll {
		return events.Pruned{}, errors.New("sealed copies: postgres down")
	}
	return events.Pruned{SealedRequests: 2}, nil
}

func (c *prunerCalls) PruneRequests(_ context.Context, before time.Time) (events.Pruned, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prunedBefore = append(c.prunedBefore, before)
	if c.failAll {
		return events.Pruned{}, errors.New("requests: postgres down")
	}
	return events.Pruned{Requests: 3}, nil
}

func TestPruner_PrunesRollupsSealedCopiesAndRequestsPastTheirRetention(t *testing.T) {
	t.Parallel()
	now := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	for _, tc := range []struct {
		name                   string
		retention              time.Duration
		failDashboard, failAll bool
		wantBefore             []time.Time
		wantErrs               []string
	}{
		{name: "with a retention, requests that ended before it are removed", retention: 400 * 24 * time.Hour,
			wantBefore: []time.Time{now.Add(-400 * 24 * time.Hour)}},
		{name: "without one, requests are kept for ever"},
		{name: "a step that fails does not stop the others", retention: time.Hour, failDashboard: true,
			wantBefore: []time.Time{now.Add(-time.Hour)}, wantErrs: []string{"dashboard"}},
		{name: "every failure is returned", retention: time.Hour, failAll: true,
			wantBefore: []time.Time{now.Add(-time.Hour)}, wantErrs: []string{"dashboard", "sealed copies", "visits", "training", "requests"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &prunerCalls{failDashboard: tc.failDashboard, failAll: tc.failAll}
			p, err := workers.NewPruner(workers.PrunerConfig{Store: store, RequestRetention: tc.retention,
				ReconcileAfter: 7 * time.Minute, Now: clock, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			err = p.Prune(t.Context())
			if len(store.dashboard) != 1 || !store.dashboard[0].Equal(now) {
				t.Errorf("dashboard pruned at %v, want once at %v", store.dashboard, now)
			}
			if len(store.cleared) != 1 || !store.cleared[0].Equal(now) || store.reconcileAfter[0] != 7*time.Minute {
				t.Errorf("sealed copies cleared at %v for a reconciler after %v, want once at %v for 7m", store.cleared, store.reconcileAfter, now)
			}
			if len(store.visitsBefore) != 1 || !store.visitsBefore[0].Equal(now.Add(-12*time.Hour)) {
				t.Errorf("visits ended if started before %v, want once before %v (12 hours)", store.visitsBefore, now.Add(-12*time.Hour))
			}
			if len(store.trainingBefore) != 1 || !store.trainingBefore[0].Equal(now.Add(-7*24*time.Hour)) {
				t.Errorf("training pruned if before %v, want once before %v (7 days)", store.trainingBefore, now.Add(-7*24*time.Hour))
			}
			if fmt.Sprint(store.prunedBefore) != fmt.Sprint(tc.wantBefore) {
				t.Errorf("requests pruned before %v, want %v", store.prunedBefore, tc.wantBefore)
			}
			for _, want := range tc.wantErrs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Prune returned %v, want it to name %q", err, want)
				}
			}
			if len(tc.wantErrs) == 0 && err != nil {
				t.Errorf("Prune: %v", err)
			}
		})
	}
}

func TestNewPruner_RefusesANegativeRetentionAndNoStore(t *testing.T) {
	t.Parallel()
	if _, err := workers.NewPruner(workers.PrunerConfig{}); err == nil {
		t.Error("NewPruner without a store: no error")
	}
	if _, err := workers.NewPruner(workers.PrunerConfig{Store: &prunerCalls{}, RequestRetention: -time.Hour}); err == nil {
		t.Error("NewPruner with a negative retention: no error")
	}
}

// TestPruner_RemovesAnOldRequestAndItsSealedCopyFromPostgres runs the
// pruner on a real store: at start, it deletes the sealed copy of a request
// that ended and, once past the retention, the request itself.
func TestPruner_RemovesAnOldRequestAndItsSealedCopyFromPostgres(t *testing.T) {
	t.Parallel()
	store := pgtest.Store(t)
	ctx := t.Context()
	desk, _, err := store.CreateDesk(ctx, "lisboa", "Loja")
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().AddDate(-2, 0, 0).UTC().Truncate(time.Second)
	recent := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var ids []string
	for _, at := range []time.Time{old, recent} {
		req := eventstest.Request(events.NewID(at), "no-such-service", nil)
		req.DeskID, req.SubmittedAt = desk.ID, at
		msg, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := store.ClaimKey(ctx, events.KeyClaim{DeskID: desk.ID, Key: req.ID, ServiceCode: req.ServiceCode, Body: msg, NewID: req.ID}); err != nil {
			t.Fatal(err)
		}
		if err := store.MarkPublished(ctx, req.ID, msg); err != nil {
			t.Fatal(err)
		}
		// The router fails a request of an unknown service.
		failed := &events.StatusEvent{Schema: events.SchemaStatus, ID: events.EventID(req.ID, "", events.StatusFailed), RequestID: req.ID,
			Status: events.StatusFailed, At: at.Add(time.Second), Actor: events.SourceRouter, Note: "unknown service"}
		for _, err := range store.Project(ctx, []events.Change{{Request: req}, {Event: failed}}) {
			if err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, req.ID)
	}
	p, err := workers.NewPruner(workers.PrunerConfig{Store: store, Every: 20 * time.Millisecond, RequestRetention: 400 * 24 * time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "Pruner", p.Run)
	workertest.WaitFor(t, "the old request to be removed and the recent one's sealed copy deleted", func() error {
		var requests, sealed int
		err := store.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM intake_keys WHERE sealed_request IS NOT NULL)`).
			Scan(&requests, &sealed)
		if err == nil && (requests != 1 || sealed != 0) {
			err = fmt.Errorf("%d requests and %d sealed copies left, want 1 and none", requests, sealed)
		}
		return err
	})
	var kept string
	if err := store.Pool().QueryRow(ctx, `SELECT id FROM requests`).Scan(&kept); err != nil || kept != ids[1] {
		t.Errorf("kept request %s (err %v), want the recent one %s", kept, err, ids[1])
	}
}
