package postgres_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// sealedRequests tells, by request, whether intake still keeps its sealed
// copy.
func sealedRequests(t *testing.T, s *postgres.Store) map[string]bool {
	t.Helper()
	rows, err := s.Pool().Query(t.Context(), `SELECT request_id, sealed_request IS NOT NULL FROM intake_keys`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	var id string
	var sealed bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &sealed}, func() error {
		out[id] = sealed
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// stalled lists the IDs of the requests the reconciler would re-drive at
// cutoff.
func stalled(t *testing.T, s *postgres.Store, cutoff time.Time) []string {
	t.Helper()
	found, err := s.StalledRequests(t.Context(), cutoff, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range found {
		if r.Unreadable != nil {
			t.Errorf("stalled request %s cannot be read: %v", r.ID, r.Unreadable)
		}
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

func sortedIDs(rs ...*events.Request) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestClearSealedCopies_DeletesEachCopyOnceNoWorkerCanUseIt keeps a
// request's sealed copy exactly while the reconciler may still re-drive the
// request, and a dead letter's message while a replay may still change its
// request's outcome.
func TestClearSealedCopies_DeletesEachCopyOnceNoWorkerCanUseIt(t *testing.T) {
	t.Parallel()
	c := &citizenCase{store: pgtest.Store(t), keys: map[string]events.KeyClaim{}}
	s, ctx := c.store, withTimeout(t)
	c.desk = newDesk(t, s, "lisboa")
	request := func(service string, minute int) *events.Request {
		r := newRequest(c.desk.ID, service, at(minute))
		c.accept(t, r)
		return r
	}
	completed, rejected, failed := request("birth-certificate", 0), request("birth-certificate", 1), request("birth-certificate", 2)
	accepted, dispatched, unprojected := request("birth-certificate", 3), request("birth-certificate", 4), request("birth-certificate", 5)
	erased := newRequest(c.desk.ID, "tax-id-certificate", at(6))
	erased.Citizen.NationalID = "ERASED-1"
	c.accept(t, erased)
	var changes []events.Change
	changes = append(changes, complete(completed, at(30), events.StatusCompleted, "civil-registry")...)
	changes = append(changes, complete(rejected, at(30), events.StatusRejected, "civil-registry")...)
	changes = append(changes, submitted(failed), routed(failed, at(3), "civil-registry"), agencyEvent(failed, "civil-registry", events.StatusFailed, at(40)))
	changes = append(changes, submitted(accepted), routed(accepted, at(4), "civil-registry"), agencyEvent(accepted, "civil-registry", events.StatusAccepted, at(5)))
	changes = append(changes, submitted(dispatched), routed(dispatched, at(5), "civil-registry"), agencyEvent(dispatched, "civil-registry", events.StatusDispatched, at(6)))
	changes = append(changes, submitted(erased), routed(erased, at(7), "tax"), agencyEvent(erased, "tax", events.StatusDispatched, at(8)))
	mustProject(t, s, changes...)
	for i, r := range []*events.Request{completed, rejected, failed, accepted} {
		c.deadLetter(t, r, "civil-registry", "agency unreachable", uint64(i+1))
	}
	// A dead letter of no request, and one recorded after its citizen was
	// erased (the work item was still in its queue).
	if _, err := s.RecordDeadLetter(ctx, events.DeadLetter{Stream: events.EventsStream, StreamSeq: 9, Subject: "spotflow.requests.x.y",
		Reason: events.ReasonPermanent, LastError: "unreadable", Attempts: 1, Payload: []byte("garbage")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EraseCitizen(ctx, "ERASED-1", events.By{Actor: "operator:ana", Reason: "asked"}); err != nil {
		t.Fatal(err)
	}
	c.deadLetter(t, erased, "tax", "tax answered: no such taxpayer", 8)
	now := time.Now()

	p, err := s.ClearSealedCopies(ctx, now, 5*time.Minute)
	if err != nil {
		t.Fatalf("ClearSealedCopies: %v", err)
	}
	if p.SealedRequests != 4 || p.DeadLetterMessages != 3 {
		t.Errorf("cleared %+v, want 4 requests' copies (past dispatched) and 3 dead letters' messages (completed, rejected, erased)", p)
	}
	want := map[string]bool{completed.ID: false, rejected.ID: false, failed.ID: false, accepted.ID: false,
		dispatched.ID: true, unprojected.ID: true, erased.ID: false}
	if got := sealedRequests(t, s); !maps.Equal(got, want) {
		t.Errorf("sealed copies kept %v, want %v", got, want)
	}
	if got, want := stalled(t, s, now.Add(time.Hour)), sortedIDs(dispatched, unprojected); !slices.Equal(got, want) {
		t.Errorf("the reconciler would re-drive %v, want %v: the requests whose copies are kept", got, want)
	}
	dead, err := s.ListDeadLetters(ctx, events.DeadLetterQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dead {
		_, err := s.DeadLetter(ctx, d.ID)
		deleted := d.RequestID == completed.ID || d.RequestID == rejected.ID || d.RequestID == erased.ID
		switch {
		case deleted && !errors.Is(err, events.ErrPersonalDataDeleted):
			t.Errorf("dead letter of request %q: %v, want its message deleted", d.RequestID, err)
		case !deleted && err != nil:
			t.Errorf("dead letter of request %q: %v, want it kept for a replay", d.RequestID, err)
		case d.RequestID == completed.ID && d.LastError != "agency unreachable":
			t.Errorf("the completed request's dead letter lost its last error: %q", d.LastError)
		case d.RequestID == erased.ID && d.LastError != "":
			t.Errorf("the erased request's dead letter keeps its last error %q", d.LastError)
		}
	}

	t.Run("the copies the reconciler may use are kept until its look-back ends", func(t *testing.T) {
		inside := now.Add(postgres.SealedCopyKept(5*time.Minute) - time.Minute)
		if p, err := s.ClearSealedCopies(ctx, inside, 5*time.Minute); err != nil || p != (events.Pruned{}) {
			t.Errorf("a minute before the end: cleared %+v (err %v), want nothing", p, err)
		}
		if got, want := stalled(t, s, inside.Add(-5*time.Minute)), sortedIDs(dispatched, unprojected); !slices.Equal(got, want) {
			t.Errorf("then the reconciler would re-drive %v, want %v", got, want)
		}
		past := now.Add(postgres.SealedCopyKept(5*time.Minute) + time.Minute)
		if got := stalled(t, s, past.Add(-5*time.Minute)); len(got) != 0 {
			t.Errorf("a minute after, the reconciler would still re-drive %v", got)
		}
		if p, err := s.ClearSealedCopies(ctx, past, 5*time.Minute); err != nil || p.SealedRequests != 2 {
			t.Errorf("a minute after the end: cleared %+v (err %v), want the 2 copies left", p, err)
		}
		for id, sealed := range sealedRequests(t, s) {
			if sealed {
				t.Errorf("request %s keeps its sealed copy", id)
			}
		}
		var mark time.Time
		if err := s.Pool().QueryRow(ctx, `SELECT upto FROM pruner_marks`).Scan(&mark); err != nil || !mark.Equal(past.Add(-postgres.SealedCopyKept(5*time.Minute)).Truncate(time.Microsecond)) {
			t.Errorf("mark %v (err %v), want the look-back's start", mark, err)
		}
		if p, err := s.ClearSealedCopies(ctx, past, 5*time.Minute); err != nil || p != (events.Pruned{}) {
			t.Errorf("again: cleared %+v (err %v), want nothing", p, err)
		}
	})
}

// TestClearSealedCopies_WalksManyKeysInBatches clears more copies than one
// statement takes, across several passes of the walk.
func TestClearSealedCopies_WalksManyKeysInBatches(t *testing.T) {
	t.Parallel()
	s, ctx := pgtest.Store(t), withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	const n = 2500
	// One statement claims them all: they share their creation time, as a
	// group commit's keys do.
	_, err := s.Pool().Exec(ctx, `
		INSERT INTO intake_keys (desk_id, idempotency_key, body_hash, request_id, service_code, published_at, sealed_request)
		SELECT $1, 'key-' || i, '\x00', 'request-' || i, 'birth-certificate', now(), '\x01'
		FROM generate_series(1, $2) AS i`, desk.ID, n)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.ClearSealedCopies(ctx, time.Now().Add(48*time.Hour), 5*time.Minute)
	if err != nil || p.SealedRequests != n {
		t.Errorf("cleared %+v (err %v), want all %d copies", p, err, n)
	}
}

// TestPruneRequests_RemovesOnlyWhatEndedBeforeTheRetention removes the
// requests that ended before the cutoff with everything that belongs to
// them, keeps every other and every count.
func TestPruneRequests_RemovesOnlyWhatEndedBeforeTheRetention(t *testing.T) {
	t.Parallel()
	c := &citizenCase{store: pgtest.Store(t), keys: map[string]events.KeyClaim{}}
	s, ctx := c.store, withTimeout(t)
	c.desk = newDesk(t, s, "lisboa")
	now := time.Now().UTC().Truncate(time.Second)
	cutoff := now.AddDate(0, 0, -400)
	old := now.AddDate(0, 0, -500)
	request := func(at time.Time) *events.Request {
		r := newRequest(c.desk.ID, "birth-certificate", at)
		c.accept(t, r)
		return r
	}
	oldCompleted, oldFailed, oldUnderWay, lateCompleted := request(old), request(old.Add(time.Minute)), request(old.Add(2*time.Minute)), request(old.Add(3*time.Minute))
	recent := request(now.AddDate(0, 0, -10))
	var changes []events.Change
	changes = append(changes, complete(oldCompleted, old.Add(time.Hour), events.StatusCompleted, "civil-registry", "tax")...)
	changes = append(changes, submitted(oldFailed), routed(oldFailed, old.Add(2*time.Minute), "tax"), agencyEvent(oldFailed, "tax", events.StatusFailed, old.Add(time.Hour)))
	changes = append(changes, submitted(oldUnderWay), routed(oldUnderWay, old.Add(3*time.Minute), "tax"), agencyEvent(oldUnderWay, "tax", events.StatusInProgress, old.Add(time.Hour)))
	// Submitted long ago, completed ten days ago.
	changes = append(changes, complete(lateCompleted, now.AddDate(0, 0, -10), events.StatusCompleted, "tax")...)
	changes = append(changes, complete(recent, now.AddDate(0, 0, -9), events.StatusCompleted, "tax")...)
	mustProject(t, s, changes...)
	c.deadLetter(t, oldFailed, "tax", "tax down", 1)
	c.deadLetter(t, recent, "tax", "tax down", 2)
	// A dead letter and an idempotency key of no request, old and new.
	for i, created := range []time.Time{old, now} {
		if _, err := s.RecordDeadLetter(ctx, events.DeadLetter{Stream: events.EventsStream, StreamSeq: uint64(10 + i), Subject: "spotflow.requests.x.y",
			Reason: events.ReasonPermanent, LastError: "unreadable", Attempts: 1, Payload: []byte("garbage")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pool().Exec(ctx, `UPDATE dead_letters SET created_at = $1 WHERE stream_seq = $2`, created, 10+i); err != nil {
			t.Fatal(err)
		}
		key := events.KeyClaim{DeskID: c.desk.ID, Key: fmt.Sprintf("lost-%d", i), ServiceCode: "birth-certificate", Body: []byte("{}"), NewID: fmt.Sprintf("lost-%d", i)}
		if _, _, err := s.ClaimKey(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pool().Exec(ctx, `UPDATE intake_keys SET created_at = $1 WHERE request_id = $2`, created, key.NewID); err != nil {
			t.Fatal(err)
		}
	}
	rollupsBefore := rollups(t, s)

	p, err := s.PruneRequests(ctx, cutoff)
	if err != nil {
		t.Fatalf("PruneRequests: %v", err)
	}
	// oldCompleted: 2 work items, a timeline of submitted, routed, 2 ×
	// (dispatched, completed) and the request's completion; oldFailed: a
	// work item, submitted, routed, failed and the request's failure.
	if want := (events.Pruned{Requests: 2, WorkItems: 3, Timeline: 11, IntakeKeys: 3, DeadLetters: 2}); p != want {
		t.Errorf("pruned %+v, want %+v", p, want)
	}
	rows, err := s.Pool().Query(ctx, `SELECT id FROM requests ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if want := sortedIDs(oldUnderWay, lateCompleted, recent); err != nil || !slices.Equal(kept, want) {
		t.Errorf("kept requests %v (err %v), want %v", kept, err, want)
	}
	var orphans int
	if err := s.Pool().QueryRow(ctx, `SELECT
		(SELECT count(*) FROM work_items w WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = w.request_id)) +
		(SELECT count(*) FROM timeline t WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = t.request_id)) +
		(SELECT count(*) FROM intake_keys k WHERE k.created_at < $1 AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = k.request_id)) +
		(SELECT count(*) FROM dead_letters d WHERE d.created_at < $1 AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = d.request_id))`,
		cutoff).Scan(&orphans); err != nil || orphans != 0 {
		t.Errorf("%d rows of no request are left (err %v)", orphans, err)
	}
	var newOrphans int
	if err := s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM dead_letters WHERE request_id IS NULL) + (SELECT count(*) FROM intake_keys WHERE request_id = 'lost-1')`).Scan(&newOrphans); err != nil || newOrphans != 2 {
		t.Errorf("%d recent rows of no request kept (err %v), want 2", newOrphans, err)
	}
	if after := rollups(t, s); !slices.Equal(after, rollupsBefore) {
		t.Errorf("the roll-ups changed:\nbefore %q\nafter  %q", rollupsBefore, after)
	}
	var audited int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_submissions`).Scan(&audited); err != nil || audited != 5 {
		t.Errorf("the audit log holds %d submissions (err %v), want all 5", audited, err)
	}
	if p, err := s.PruneRequests(ctx, cutoff); err != nil || p != (events.Pruned{}) {
		t.Errorf("pruning again: %+v (err %v), want nothing", p, err)
	}
}

// TestPruneRequests_WorksInBatches removes more requests than one batch
// holds.
func TestPruneRequests_WorksInBatches(t *testing.T) {
	t.Parallel()
	s, ctx := pgtest.Store(t), withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	old := time.Now().AddDate(-2, 0, 0)
	var changes []events.Change
	const n = 2100
	for i := range n {
		r := newRequest(desk.ID, "birth-certificate", old.Add(time.Duration(i)*time.Millisecond))
		changes = append(changes, complete(r, old.Add(time.Hour), events.StatusRejected, "civil-registry")...)
	}
	mustProject(t, s, changes...)
	p, err := s.PruneRequests(ctx, time.Now().AddDate(-1, 0, 0))
	if err != nil || p.Requests != n || p.WorkItems != n || p.Timeline != 5*n {
		t.Errorf("pruned %+v (err %v), want %d requests with their work items and timelines", p, err, n)
	}
}
