package postgres_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
)

// t0 is the time the tests' requests are submitted at; whole seconds, so
// values survive Postgres's microsecond precision unchanged.
var t0 = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

// newRequest is a submitted request of desk for service, with a fresh ID.
func newRequest(desk, service string, at time.Time) *events.Request {
	return &events.Request{
		Schema:       events.SchemaRequest,
		ID:           events.NewID(at),
		DeskID:       desk,
		Municipality: "lisboa",
		Mediator:     "ana.sousa",
		ServiceCode:  service,
		Citizen:      events.Citizen{NationalID: "123456789", Name: "Maria da Silva"},
		Attributes:   map[string]json.RawMessage{"street": json.RawMessage(`"Rua Augusta 1"`)},
		SubmittedAt:  at,
	}
}

func submitted(r *events.Request) events.Change { return events.Change{Request: r} }

func routed(r *events.Request, at time.Time, agencies ...string) events.Change {
	return events.Change{Event: &events.StatusEvent{
		Schema:    events.SchemaStatus,
		ID:        events.EventID(r.ID, "", events.StatusRouted),
		RequestID: r.ID,
		Status:    events.StatusRouted,
		At:        at,
		Actor:     events.SourceRouter,
		Agencies:  agencies,
	}}
}

func agencyEvent(r *events.Request, agency string, status events.Status, at time.Time) events.Change {
	return events.Change{Event: &events.StatusEvent{
		Schema:    events.SchemaStatus,
		ID:        events.EventID(r.ID, agency, status),
		RequestID: r.ID,
		Agency:    agency,
		Status:    status,
		At:        at,
		Actor:     "agency:" + agency,
		Note:      "reported by " + agency,
	}}
}

// inRound moves c's event into a replay round.
func inRound(c events.Change, round int) events.Change {
	c.Event.Round = round
	c.Event.ID = events.RoundEventID(c.Event.RequestID, c.Event.Agency, c.Event.Status, round)
	return c
}

// mustProject projects changes and fails the test on any error.
func mustProject(t *testing.T, s *postgres.Store, changes ...events.Change) {
	t.Helper()
	errs := s.Project(t.Context(), changes)
	defer fold(t, s)
	if len(errs) != len(changes) {
		t.Fatalf("Project returned %d errors for %d changes", len(errs), len(changes))
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Project: change %d (request %s): %v", i, changes[i].RequestID(), err)
		}
	}
}

func requestStatus(t *testing.T, s *postgres.Store, id string) events.Status {
	t.Helper()
	var st events.Status
	if err := s.Pool().QueryRow(t.Context(), `SELECT status FROM requests WHERE id = $1`, id).Scan(&st); err != nil {
		t.Fatalf("read status of request %s: %v", id, err)
	}
	return st
}

func workItems(t *testing.T, s *postgres.Store, id string) map[string]events.Status {
	t.Helper()
	rows, err := s.Pool().Query(t.Context(), `SELECT agency, status FROM work_items WHERE request_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	items := map[string]events.Status{}
	var agency string
	var st events.Status
	_, err = pgx.ForEachRow(rows, []any{&agency, &st}, func() error {
		items[agency] = st
		return nil
	})
	if err != nil {
		t.Fatalf("read work items of %s: %v", id, err)
	}
	return items
}

// timelineRow is a timeline entry as stored, without recorded_at.
type timelineRow struct {
	EventID, Agency string
	Status          events.Status
	At              time.Time
	Actor, Note     string
}

func timelineRows(t *testing.T, s *postgres.Store, id string) []timelineRow {
	t.Helper()
	rows, err := s.Pool().Query(t.Context(), `
		SELECT event_id, agency, status, at, actor, note FROM timeline
		WHERE request_id = $1 ORDER BY event_id`, id)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[timelineRow])
	if err != nil {
		t.Fatalf("read timeline of %s: %v", id, err)
	}
	return out
}

// eventCount is how many timeline entries of a request have eventID.
func eventCount(t *testing.T, s *postgres.Store, eventID string) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM timeline WHERE event_id = $1`, eventID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// requestLevelTerminals lists the terminal entries of the request as a whole.
func requestLevelTerminals(t *testing.T, s *postgres.Store, id string) []string {
	t.Helper()
	var out []string
	for _, r := range timelineRows(t, s, id) {
		if r.Agency == "" && r.Status.Terminal() {
			out = append(out, r.EventID)
		}
	}
	return out
}

// assertRollupsMatchTimeline folds what waits for the roll-ups and checks
// that throughput_minute holds exactly one count per timeline entry, in the
// right bucket.
func assertRollupsMatchTimeline(t *testing.T, s *postgres.Store) {
	t.Helper()
	fold(t, s)
	ctx := t.Context()
	var timeline, rollup int64
	err := s.Pool().QueryRow(ctx, `SELECT
		(SELECT count(*) FROM timeline),
		(SELECT coalesce(sum(events), 0) FROM throughput_minute)`).Scan(&timeline, &rollup)
	if err != nil {
		t.Fatal(err)
	}
	if timeline != rollup {
		t.Errorf("throughput_minute counts %d events, timeline holds %d", rollup, timeline)
	}
	var mismatched int
	err = s.Pool().QueryRow(ctx, `
		WITH expected AS (
			SELECT date_trunc('minute', t.at) AS minute, r.desk_id, r.municipality, r.service_code,
			       t.agency, t.status, count(*) AS events
			FROM timeline t JOIN requests r ON r.id = t.request_id
			GROUP BY 1, 2, 3, 4, 5, 6),
		diff AS (
			(SELECT * FROM expected EXCEPT SELECT * FROM throughput_minute)
			UNION ALL
			(SELECT * FROM throughput_minute EXCEPT SELECT * FROM expected))
		SELECT count(*) FROM diff`).Scan(&mismatched)
	if err != nil {
		t.Fatal(err)
	}
	if mismatched != 0 {
		t.Errorf("%d throughput_minute buckets differ from the timeline grouped by minute", mismatched)
	}
}

// snapshot is every projected row, for comparing before and after.
func snapshot(t *testing.T, s *postgres.Store) []string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT r::text FROM (SELECT id, desk_id, municipality, service_code, visit_id, mediator,
		        citizen_ref, status, submitted_at, updated_at FROM requests) r ORDER BY 1`,
		`SELECT w::text FROM work_items w ORDER BY 1`,
		`SELECT t::text FROM (SELECT event_id, request_id, agency, status, at, actor, note FROM timeline) t ORDER BY 1`,
		`SELECT m::text FROM throughput_minute m ORDER BY 1`,
	} {
		rows, err := s.Pool().Query(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got...)
		out = append(out, "--")
	}
	return out
}

func assertSameSnapshot(t *testing.T, before, after []string) {
	t.Helper()
	if !slices.Equal(before, after) {
		t.Errorf("projected rows changed:\nbefore: %q\nafter:  %q", before, after)
	}
}

// withTimeout bounds a test's database work.
func withTimeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fold adds what the projection left for the roll-ups to them, as the
// projector role's folder does every two seconds.
func fold(t *testing.T, s *postgres.Store) {
	t.Helper()
	if _, err := s.FoldRollups(t.Context()); err != nil {
		t.Fatalf("fold roll-ups: %v", err)
	}
}
