package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// lifecycle is the stream of changes a run of requests produces, in the
// order JetStream would hold them: every request submitted, then routed,
// then each agency's steps.
func lifecycle(requests []*events.Request, agencies []string) []events.Change {
	var stream []events.Change
	for _, r := range requests {
		stream = append(stream, submitted(r))
	}
	for _, r := range requests {
		stream = append(stream, routed(r, at(1), agencies...))
	}
	for i, st := range []events.Status{dispatchedS, acceptedS, inProgressS, completedS} {
		for _, a := range agencies {
			for _, r := range requests {
				stream = append(stream, agencyEvent(r, a, st, at(2+i)))
			}
		}
	}
	return stream
}

// projectUntilApplied projects batch and projects again whatever failed, in
// order, as a projector does with NAKed messages; it gives up after a bound.
// It counts the retries that deadlocks caused.
func projectUntilApplied(ctx context.Context, s *postgres.Store, batch []events.Change, deadlocks *atomic.Int64) error {
	pending := batch
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == 50 {
			return fmt.Errorf("%d changes still failing after %d attempts", len(pending), attempt)
		}
		var again []events.Change
		for i, err := range s.Project(ctx, pending) {
			if err == nil {
				continue
			}
			if events.IsPermanent(err) {
				return fmt.Errorf("change for %s failed permanently: %w", pending[i].RequestID(), err)
			}
			if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "40P01" {
				deadlocks.Add(1)
			}
			again = append(again, pending[i])
		}
		pending = again
	}
	return nil
}

// staggered is the stream of the same lifecycles when request i starts i
// steps after request 0: any stretch of it holds requests at different steps,
// so a batch sorted by request ID takes the roll-up rows of their statuses in
// no particular order.
func staggered(requests []*events.Request, agencies []string) []events.Change {
	lives := make([][]events.Change, len(requests))
	longest := 0
	for i, r := range requests {
		lives[i] = lifecycle([]*events.Request{r}, agencies)
		longest = max(longest, len(lives[i])+i)
	}
	var stream []events.Change
	for tick := range longest {
		for i := range requests {
			if step := tick - i; step >= 0 && step < len(lives[i]) {
				stream = append(stream, lives[i][step])
			}
		}
	}
	return stream
}

func TestProject_ConcurrentOverlappingBatchesApplyEachEventOnce(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	agencies := []string{"civil-registry", "tax", "sns"}
	var requests []*events.Request
	for i := range 30 {
		// Two desks and one minute: the requests share roll-up rows.
		requests = append(requests, newRequest(fmt.Sprintf("desk-%d", i%2), "change-of-address", t0.Add(time.Duration(i)*time.Second)))
	}
	stream := staggered(requests, agencies)

	// Each projector takes the whole stream in batches of its own size, so
	// their batches overlap without lining up.
	var deadlocks atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for p, size := range []int{17, 29} {
		wg.Go(func() {
			<-start
			for i := 0; i < len(stream); i += size {
				batch := stream[i:min(i+size, len(stream))]
				if err := projectUntilApplied(ctx, s, batch, &deadlocks); err != nil {
					errs[p] = fmt.Errorf("projector %d, batch at %d: %w", p, i, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Requests are locked in ID order and roll-up rows in key order, last:
	// concurrent projectors wait on each other but never deadlock. (Each
	// deadlock costs a deadlock_timeout, a second by default, before the
	// retry.)
	if n := deadlocks.Load(); n > 0 {
		t.Errorf("%d changes failed with a deadlock and had to be retried", n)
	}

	assertEachEventAppliedOnce(t, s, requests, stream, agencies)
}

func TestProject_ConcurrentDisjointBatchesSharingRollupsApplyEachEventOnce(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	agencies := []string{"tax", "sns"}
	var requests []*events.Request
	for range 40 {
		requests = append(requests, newRequest("desk-a", "change-of-address", t0))
	}
	stream := staggered(requests, agencies)

	// Two projectors split the stream by request: neither ever waits on the
	// other's request rows, but all their events land in the same roll-up
	// rows, which each takes in the order of its own requests.
	parts := [2][]events.Change{}
	for _, c := range stream {
		n := 0
		for i, r := range requests {
			if r.ID == c.RequestID() {
				n = i
			}
		}
		parts[n%2] = append(parts[n%2], c)
	}
	var deadlocks atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for p := range parts {
		wg.Go(func() {
			<-start
			const size = 20
			for i := 0; i < len(parts[p]); i += size {
				batch := parts[p][i:min(i+size, len(parts[p]))]
				if err := projectUntilApplied(ctx, s, batch, &deadlocks); err != nil {
					errs[p] = fmt.Errorf("projector %d, batch at %d: %w", p, i, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Requests are locked in ID order and roll-up rows in key order, last:
	// concurrent projectors wait on each other but never deadlock. (Each
	// deadlock costs a deadlock_timeout, a second by default, before the
	// retry.)
	if n := deadlocks.Load(); n > 0 {
		t.Errorf("%d changes failed with a deadlock and had to be retried", n)
	}

	assertEachEventAppliedOnce(t, s, requests, stream, agencies)
}

func assertEachEventAppliedOnce(t *testing.T, s *postgres.Store, requests []*events.Request, stream []events.Change, agencies []string) {
	t.Helper()
	ctx := t.Context()
	for _, r := range requests {
		if got := requestStatus(t, s, r.ID); got != completedS {
			t.Errorf("request %s is %s, want completed", r.ID, got)
		}
		items := workItems(t, s, r.ID)
		if len(items) != len(agencies) {
			t.Errorf("request %s has work items %v, want one per agency", r.ID, items)
		}
		for a, st := range items {
			if st != completedS {
				t.Errorf("request %s: work item of %s is %s, want completed", r.ID, a, st)
			}
		}
		if got := requestLevelTerminals(t, s, r.ID); len(got) != 1 {
			t.Errorf("request %s has request-level terminal entries %v, want one", r.ID, got)
		}
	}

	want := map[string]bool{}
	for _, c := range stream {
		if c.Request != nil {
			want[events.EventID(c.Request.ID, "", submittedS)] = true
		} else {
			want[c.Event.ID] = true
		}
	}
	for _, r := range requests {
		want[events.EventID(r.ID, "", completedS)] = true
	}
	rows, err := s.Pool().Query(ctx, `SELECT event_id FROM timeline`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
		if !want[id] {
			t.Errorf("timeline holds unexpected event %s", id)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("event %s is in the timeline %d times, want once", id, seen[id])
		}
	}
	assertRollupsMatchTimeline(t, s)
}
