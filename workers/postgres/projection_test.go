package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

const (
	submittedS  = events.StatusSubmitted
	routedS     = events.StatusRouted
	dispatchedS = events.StatusDispatched
	acceptedS   = events.StatusAccepted
	inProgressS = events.StatusInProgress
	completedS  = events.StatusCompleted
	rejectedS   = events.StatusRejected
	failedS     = events.StatusFailed
)

func at(minutes int) time.Time { return t0.Add(time.Duration(minutes) * time.Minute) }

func TestProject_SubmittedRequestCreatesRequestAndTimelineEntry(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	r := newRequest("desk-a", "change-of-address", t0)
	r.VisitID = "visit-1"
	mustProject(t, s, submitted(r))

	var desk, municipality, service, visit, mediator string
	var status events.Status
	var citizenRef []byte
	var submittedAt, updatedAt time.Time
	err := s.Pool().QueryRow(ctx, `
		SELECT desk_id, municipality, service_code, visit_id, mediator, citizen_ref, status, submitted_at, updated_at
		FROM requests WHERE id = $1`, r.ID).
		Scan(&desk, &municipality, &service, &visit, &mediator, &citizenRef, &status, &submittedAt, &updatedAt)
	if err != nil {
		t.Fatalf("read request: %v", err)
	}
	if desk != "desk-a" || municipality != "lisboa" || service != "change-of-address" || visit != "visit-1" || mediator != "ana.sousa" {
		t.Errorf("request row = %s %s %s %s %s, want the request's desk, municipality, service, visit and mediator",
			desk, municipality, service, visit, mediator)
	}
	if status != submittedS {
		t.Errorf("status = %s, want submitted", status)
	}
	if !submittedAt.Equal(t0) || !updatedAt.Equal(t0) {
		t.Errorf("submitted_at %v, updated_at %v; want both %v", submittedAt, updatedAt, t0)
	}
	if bytes.Contains(citizenRef, []byte(r.Citizen.NationalID)) || len(citizenRef) < 16 {
		t.Errorf("citizen_ref %x is not a keyed hash of the national ID", citizenRef)
	}

	tl := timelineRows(t, s, r.ID)
	want := timelineRow{EventID: r.ID + ".submitted", Status: submittedS, At: t0, Actor: "desk:desk-a"}
	if len(tl) != 1 || tl[0].EventID != want.EventID || tl[0].Agency != "" || tl[0].Status != want.Status ||
		!tl[0].At.Equal(want.At) || tl[0].Actor != want.Actor {
		t.Errorf("timeline = %+v, want one entry %+v", tl, want)
	}
	if items := workItems(t, s, r.ID); len(items) != 0 {
		t.Errorf("a submitted request has work items %v", items)
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_CitizenRefLinksACitizensRequestsOnly(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	a, b, c := newRequest("d", "x", t0), newRequest("d", "y", t0), newRequest("d", "x", t0)
	c.Citizen = events.Citizen{NationalID: "987654321", Name: "Rui Costa"}
	mustProject(t, s, submitted(a), submitted(b), submitted(c))
	ref := func(id string) []byte {
		var out []byte
		if err := s.Pool().QueryRow(ctx, `SELECT citizen_ref FROM requests WHERE id = $1`, id).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if !bytes.Equal(ref(a.ID), ref(b.ID)) {
		t.Error("two requests of one citizen have different citizen_refs")
	}
	if bytes.Equal(ref(a.ID), ref(c.ID)) {
		t.Error("requests of two citizens share a citizen_ref")
	}
}

func TestProject_RoutedEventCreatesOneWorkItemPerAgency(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "change-of-address", t0)
	mustProject(t, s, submitted(r), routed(r, at(1), "civil-registry", "tax", "sns"))

	items := workItems(t, s, r.ID)
	if len(items) != 3 {
		t.Fatalf("work items = %v, want one per agency", items)
	}
	for _, a := range []string{"civil-registry", "tax", "sns"} {
		if items[a] != routedS {
			t.Errorf("work item of %s is %q, want routed", a, items[a])
		}
	}
	if got := requestStatus(t, s, r.ID); got != routedS {
		t.Errorf("request status %s, want routed", got)
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_AgencyEventsMoveWorkItemsAndTheRequestFollowsTheLeastAdvanced(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "change-of-address", t0)
	mustProject(t, s, submitted(r), routed(r, at(1), "tax", "sns"))

	steps := []struct {
		change      events.Change
		wantItems   map[string]events.Status
		wantRequest events.Status
	}{
		{agencyEvent(r, "tax", dispatchedS, at(2)), map[string]events.Status{"tax": dispatchedS, "sns": routedS}, routedS},
		{agencyEvent(r, "tax", acceptedS, at(3)), map[string]events.Status{"tax": acceptedS, "sns": routedS}, routedS},
		{agencyEvent(r, "sns", dispatchedS, at(4)), map[string]events.Status{"tax": acceptedS, "sns": dispatchedS}, dispatchedS},
		{agencyEvent(r, "tax", inProgressS, at(5)), map[string]events.Status{"tax": inProgressS, "sns": dispatchedS}, dispatchedS},
		{agencyEvent(r, "sns", acceptedS, at(6)), map[string]events.Status{"tax": inProgressS, "sns": acceptedS}, acceptedS},
		{agencyEvent(r, "sns", inProgressS, at(7)), map[string]events.Status{"tax": inProgressS, "sns": inProgressS}, inProgressS},
	}
	for i, step := range steps {
		mustProject(t, s, step.change)
		items := workItems(t, s, r.ID)
		for a, want := range step.wantItems {
			if items[a] != want {
				t.Errorf("step %d (%s): work item of %s is %s, want %s", i, step.change.Event.ID, a, items[a], want)
			}
		}
		if got := requestStatus(t, s, r.ID); got != step.wantRequest {
			t.Errorf("step %d (%s): request is %s, want %s", i, step.change.Event.ID, got, step.wantRequest)
		}
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_ApplyingTheSameBatchTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "change-of-address", t0)
	other := newRequest("desk-b", "birth-certificate", t0.Add(30*time.Second))
	batch := []events.Change{
		submitted(r), submitted(other),
		routed(r, at(1), "tax", "sns"), routed(other, at(1), "civil-registry"),
		agencyEvent(r, "tax", acceptedS, at(2)),
		agencyEvent(r, "tax", completedS, at(3)),
		agencyEvent(r, "sns", completedS, at(4)),
		agencyEvent(other, "civil-registry", rejectedS, at(5)),
	}
	mustProject(t, s, batch...)
	before := snapshot(t, s)

	mustProject(t, s, batch...)
	assertSameSnapshot(t, before, snapshot(t, s))

	// Redelivered one by one, in reverse, the events change nothing either.
	for i := len(batch) - 1; i >= 0; i-- {
		mustProject(t, s, batch[i])
	}
	assertSameSnapshot(t, before, snapshot(t, s))
	assertRollupsMatchTimeline(t, s)

	if got := len(timelineRows(t, s, r.ID)); got != 1+1+3+1 {
		t.Errorf("timeline of %s has %d entries, want 6 (submitted, routed, 3 agency events, completed)", r.ID, got)
	}
}

func TestProject_DuplicateEventsInOneBatchApplyOnce(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "birth-certificate", t0)
	ev := agencyEvent(r, "civil-registry", acceptedS, at(2))
	mustProject(t, s, submitted(r), submitted(r), routed(r, at(1), "civil-registry"), routed(r, at(1), "civil-registry"), ev, ev, ev)
	if n := len(timelineRows(t, s, r.ID)); n != 3 {
		t.Errorf("timeline has %d entries, want 3", n)
	}
	if n := eventCount(t, s, ev.Event.ID); n != 1 {
		t.Errorf("event %s recorded %d times, want once", ev.Event.ID, n)
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_LateLowerRankedEventDoesNotMoveStatusBack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		batches func(r *events.Request) [][]events.Change
	}{
		{"in separate batches", func(r *events.Request) [][]events.Change {
			return [][]events.Change{
				{agencyEvent(r, "tax", inProgressS, at(5))},
				{agencyEvent(r, "tax", acceptedS, at(3))},
				{agencyEvent(r, "tax", dispatchedS, at(2))},
			}
		}},
		{"in one batch", func(r *events.Request) [][]events.Change {
			return [][]events.Change{{
				agencyEvent(r, "tax", inProgressS, at(5)),
				agencyEvent(r, "tax", acceptedS, at(3)),
				agencyEvent(r, "tax", dispatchedS, at(2)),
			}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := pgtest.Store(t)
			r := newRequest("desk-a", "tax-id-certificate", t0)
			mustProject(t, s, submitted(r), routed(r, at(1), "tax"))
			for _, b := range tt.batches(r) {
				mustProject(t, s, b...)
			}
			if got := workItems(t, s, r.ID)["tax"]; got != inProgressS {
				t.Errorf("work item is %s, want in_progress", got)
			}
			if got := requestStatus(t, s, r.ID); got != inProgressS {
				t.Errorf("request is %s, want in_progress", got)
			}
			for _, st := range []events.Status{dispatchedS, acceptedS, inProgressS} {
				if n := eventCount(t, s, events.EventID(r.ID, "tax", st)); n != 1 {
					t.Errorf("%s recorded %d times in the timeline, want once", st, n)
				}
			}
			assertRollupsMatchTimeline(t, s)
		})
	}
}

func TestProject_LateEventAfterCompletionDoesNotReopenTheRequest(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "tax-id-certificate", t0)
	mustProject(t, s, submitted(r), routed(r, at(1), "tax"), agencyEvent(r, "tax", completedS, at(9)))
	mustProject(t, s, agencyEvent(r, "tax", inProgressS, at(5)))
	// Another end in the same round is refused, and changes nothing.
	if errs := s.Project(t.Context(), []events.Change{agencyEvent(r, "tax", failedS, at(6))}); events.RefusedRule(errs[0]) != events.RuleTerminal || !events.IsPermanent(errs[0]) {
		t.Errorf("a failure after completion: %v, want it refused for good", errs[0])
	}
	if n := eventCount(t, s, events.EventID(r.ID, "tax", failedS)); n != 0 {
		t.Errorf("the refused failure is in the timeline %d times", n)
	}
	if got := requestStatus(t, s, r.ID); got != completedS {
		t.Errorf("request is %s after late events, want completed", got)
	}
	if got := workItems(t, s, r.ID)["tax"]; got != completedS {
		t.Errorf("work item is %s after late events, want completed", got)
	}
	if got := requestLevelTerminals(t, s, r.ID); len(got) != 1 || got[0] != r.ID+".completed" {
		t.Errorf("request-level terminal entries %v, want only %s.completed", got, r.ID)
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_RequestCompletesWhenAllWorkItemsComplete(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "change-of-address", t0)
	agencies := []string{"civil-registry", "tax", "social-security"}
	mustProject(t, s, submitted(r), routed(r, at(1), agencies...))

	mustProject(t, s, agencyEvent(r, "civil-registry", completedS, at(2)))
	mustProject(t, s, agencyEvent(r, "tax", inProgressS, at(3)))
	mustProject(t, s, agencyEvent(r, "tax", completedS, at(4)))
	if got := requestStatus(t, s, r.ID); got != routedS {
		t.Errorf("with social-security still routed, request is %s, want routed", got)
	}
	if got := requestLevelTerminals(t, s, r.ID); len(got) != 0 {
		t.Errorf("request-level terminal entries %v before every work item completed", got)
	}

	last := agencyEvent(r, "social-security", completedS, at(6))
	last.Event.Note = "address updated"
	mustProject(t, s, last)
	if got := requestStatus(t, s, r.ID); got != completedS {
		t.Errorf("with every work item completed, request is %s, want completed", got)
	}
	// Redelivering the completions writes no second request-level entry.
	mustProject(t, s, last, agencyEvent(r, "tax", completedS, at(4)))

	got := requestLevelTerminals(t, s, r.ID)
	if len(got) != 1 || got[0] != events.EventID(r.ID, "", completedS) {
		t.Fatalf("request-level terminal entries %v, want exactly %s", got, events.EventID(r.ID, "", completedS))
	}
	for _, e := range timelineRows(t, s, r.ID) {
		if e.EventID == got[0] && (!e.At.Equal(at(6)) || e.Actor != "spotflow") {
			t.Errorf("request completion entry %+v, want at %v by spotflow", e, at(6))
		}
	}
	var updated time.Time
	if err := s.Pool().QueryRow(t.Context(), `SELECT updated_at FROM requests WHERE id = $1`, r.ID).Scan(&updated); err != nil {
		t.Fatal(err)
	}
	if !updated.Equal(at(6)) {
		t.Errorf("updated_at = %v, want the last event's time %v", updated, at(6))
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_RequestCompletesWhenItsLastWorkItemDidWhateverTheOrderOfApplying(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "change-of-address", t0)
	mustProject(t, s, submitted(r), routed(r, at(1), "tax", "sns"))
	// sns finished last, but its event is applied first (a retried
	// delivery of tax's came later).
	mustProject(t, s, agencyEvent(r, "sns", completedS, at(9)))
	mustProject(t, s, agencyEvent(r, "tax", completedS, at(4)))

	for _, e := range timelineRows(t, s, r.ID) {
		if e.EventID == events.EventID(r.ID, "", completedS) && !e.At.Equal(at(9)) {
			t.Errorf("request completed at %v, want %v, when its last work item did", e.At, at(9))
		}
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_RequestIsRejectedAsSoonAsOneWorkItemRejects(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "change-of-address", t0)
	mustProject(t, s, submitted(r), routed(r, at(1), "tax", "sns", "civil-registry"))
	mustProject(t, s, agencyEvent(r, "tax", inProgressS, at(2)))
	mustProject(t, s, agencyEvent(r, "sns", rejectedS, at(3)))
	if got := requestStatus(t, s, r.ID); got != rejectedS {
		t.Fatalf("after one rejection the request is %s, want rejected", got)
	}
	// The others finishing, or rejecting too, leave it rejected with one entry.
	mustProject(t, s,
		agencyEvent(r, "tax", completedS, at(4)),
		agencyEvent(r, "civil-registry", rejectedS, at(5)),
		agencyEvent(r, "sns", rejectedS, at(3)))
	if got := requestStatus(t, s, r.ID); got != rejectedS {
		t.Errorf("request is %s, want rejected", got)
	}
	got := requestLevelTerminals(t, s, r.ID)
	if len(got) != 1 || got[0] != events.EventID(r.ID, "", rejectedS) {
		t.Errorf("request-level terminal entries %v, want exactly %s", got, events.EventID(r.ID, "", rejectedS))
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_RequestFailsOnlyWhenNothingElseIsUnderWay(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "change-of-address", t0)
	mustProject(t, s, submitted(r), routed(r, at(1), "tax", "sns"))
	mustProject(t, s, agencyEvent(r, "tax", failedS, at(2)), agencyEvent(r, "sns", acceptedS, at(2)))
	if got := requestStatus(t, s, r.ID); got != acceptedS {
		t.Errorf("with sns still under way, request is %s, want accepted", got)
	}
	mustProject(t, s, agencyEvent(r, "sns", completedS, at(3)))
	if got := requestStatus(t, s, r.ID); got != failedS {
		t.Errorf("with tax failed and sns completed, request is %s, want failed", got)
	}
	// Within its round, tax's failed work item cannot complete.
	if errs := s.Project(t.Context(), []events.Change{agencyEvent(r, "tax", completedS, at(10))}); events.RefusedRule(errs[0]) != events.RuleTerminal {
		t.Errorf("tax completing the work item that failed: %v, want it refused", errs[0])
	}
	// An operator replays tax's work item and the agency completes it.
	mustProject(t, s, inRound(agencyEvent(r, "tax", routedS, at(10)), 1), inRound(agencyEvent(r, "tax", completedS, at(11)), 1))
	if got := requestStatus(t, s, r.ID); got != completedS {
		t.Errorf("after the replay completed, request is %s, want completed", got)
	}
	got := requestLevelTerminals(t, s, r.ID)
	if len(got) != 2 || eventCount(t, s, r.ID+".failed") != 1 || eventCount(t, s, r.ID+".completed.r1") != 1 {
		t.Errorf("request-level terminal entries %v, want %s.failed then %s.completed.r1 once each", got, r.ID, r.ID)
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_UnknownRequestFailsAloneInItsBatch(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	known := newRequest("desk-a", "change-of-address", t0)
	ghost := newRequest("desk-a", "change-of-address", t0) // never submitted
	batch := []events.Change{
		submitted(known),
		routed(ghost, at(1), "tax"),
		routed(known, at(1), "tax", "sns"),
		agencyEvent(ghost, "tax", acceptedS, at(2)),
		agencyEvent(known, "imt", acceptedS, at(2)), // imt has no work item
		agencyEvent(known, "tax", acceptedS, at(2)),
	}
	errs := s.Project(withTimeout(t), batch)
	wantUnknown := []bool{false, true, false, true, true, false}
	for i, err := range errs {
		switch {
		case wantUnknown[i] && !errors.Is(err, events.ErrUnknownRequest):
			t.Errorf("change %d: error %v, want one wrapping events.ErrUnknownRequest", i, err)
		case wantUnknown[i] && events.IsPermanent(err):
			t.Errorf("change %d: %v is permanent; an unknown request may still be on its way", i, err)
		case !wantUnknown[i] && err != nil:
			t.Errorf("change %d: %v, want it applied despite its neighbours", i, err)
		}
	}
	if got := requestStatus(t, s, known.ID); got != routedS {
		t.Errorf("known request is %s, want routed", got)
	}
	if items := workItems(t, s, known.ID); len(items) != 2 || items["tax"] != acceptedS || items["sns"] != routedS {
		t.Errorf("known request's work items %v, want tax accepted and sns routed", items)
	}
	if n := eventCount(t, s, events.EventID(known.ID, "imt", acceptedS)); n != 0 {
		t.Errorf("event for an agency without a work item was recorded %d times", n)
	}
	if n := len(timelineRows(t, s, ghost.ID)); n != 0 {
		t.Errorf("unknown request has %d timeline entries", n)
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_AgencyEventBeforeRoutingIsUnknown(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "tax-id-certificate", t0)
	mustProject(t, s, submitted(r))
	errs := s.Project(withTimeout(t), []events.Change{agencyEvent(r, "tax", acceptedS, at(2))})
	if !errors.Is(errs[0], events.ErrUnknownRequest) {
		t.Errorf("agency event before routing: %v, want events.ErrUnknownRequest", errs[0])
	}
	// Once routed, the redelivered event applies.
	mustProject(t, s, routed(r, at(1), "tax"), agencyEvent(r, "tax", acceptedS, at(2)))
	if got := workItems(t, s, r.ID)["tax"]; got != acceptedS {
		t.Errorf("work item is %s after redelivery, want accepted", got)
	}
}

func TestProject_RefusesMalformedChangesPermanently(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "tax-id-certificate", t0)
	mustProject(t, s, submitted(r))
	invalid := agencyEvent(r, "", "closed", at(1))
	invalid.Event.ID = r.ID + ".closed"
	tests := []struct {
		name   string
		change events.Change
	}{
		{"an unknown status", invalid},
		{"an empty status", events.Change{Event: &events.StatusEvent{ID: r.ID + ".empty", RequestID: r.ID, At: at(1)}}},
		{"an empty change", events.Change{}},
		{"a routed event without agencies", routed(r, at(1))},
	}
	for _, tt := range tests {
		errs := s.Project(withTimeout(t), []events.Change{tt.change})
		if !events.IsPermanent(errs[0]) {
			t.Errorf("%s: error %v, want a permanent one", tt.name, errs[0])
		}
	}
	if got := requestStatus(t, s, r.ID); got != submittedS {
		t.Errorf("request is %s after refused changes, want submitted", got)
	}
	if tl := timelineRows(t, s, r.ID); len(tl) != 1 {
		t.Errorf("refused changes left timeline entries: %+v", tl)
	}
	if items := workItems(t, s, r.ID); len(items) != 0 {
		t.Errorf("refused changes left work items: %v", items)
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_CountsEventsPerMinuteDeskAndStatus(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	a1 := newRequest("desk-a", "birth-certificate", t0.Add(5*time.Second))
	a2 := newRequest("desk-a", "birth-certificate", t0.Add(50*time.Second))
	a3 := newRequest("desk-a", "birth-certificate", t0.Add(65*time.Second)) // next minute
	b1 := newRequest("desk-b", "birth-certificate", t0.Add(10*time.Second))
	mustProject(t, s, submitted(a1), submitted(a2), submitted(a3), submitted(b1),
		routed(a1, t0.Add(20*time.Second), "civil-registry"))
	assertRollupsMatchTimeline(t, s)

	count := func(minute time.Time, desk string, status events.Status) int64 {
		var n int64
		err := s.Pool().QueryRow(t.Context(), `
			SELECT coalesce(sum(events), 0) FROM throughput_minute
			WHERE minute = $1 AND desk_id = $2 AND status = $3`, minute, desk, status).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	tests := []struct {
		minute time.Time
		desk   string
		status events.Status
		want   int64
	}{
		{t0, "desk-a", submittedS, 2},
		{t0.Add(time.Minute), "desk-a", submittedS, 1},
		{t0, "desk-b", submittedS, 1},
		{t0, "desk-a", routedS, 1},
		{t0, "desk-b", routedS, 0},
	}
	for _, tt := range tests {
		if got := count(tt.minute, tt.desk, tt.status); got != tt.want {
			t.Errorf("%s %s events in minute %v: %d, want %d", tt.desk, tt.status, tt.minute.Format("15:04"), got, tt.want)
		}
	}
}

func TestProject_CancelledContextFailsEveryChange(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "birth-certificate", t0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	errs := s.Project(ctx, []events.Change{submitted(r), routed(r, at(1), "civil-registry")})
	for i, err := range errs {
		if err == nil || events.IsPermanent(err) {
			t.Errorf("change %d under a cancelled context: %v, want a transient error", i, err)
		}
	}
	var n int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM requests`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a cancelled Project left %d requests", n)
	}
}

func TestProject_ChangeTheDatabaseRefusesFailsAloneInItsBatch(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	reqs := make([]*events.Request, 6)
	var batch []events.Change
	for i := range reqs {
		reqs[i] = newRequest("desk-a", "change-of-address", t0)
		batch = append(batch, submitted(reqs[i]), routed(reqs[i], at(1), "tax"))
	}
	for _, r := range reqs {
		batch = append(batch, agencyEvent(r, "tax", acceptedS, at(2)))
	}
	// Postgres refuses text holding a NUL byte: the statement fails, and
	// with it the batch, until the change at fault stands alone.
	bad := len(batch) - 3
	batch[bad].Event.Note = "note with a \x00 byte"
	errs := s.Project(withTimeout(t), batch)
	for i, err := range errs {
		switch {
		case i == bad && err == nil:
			t.Errorf("change %d with a NUL byte was applied", i)
		case i != bad && err != nil:
			t.Errorf("change %d: %v, want it applied despite its neighbour", i, err)
		}
	}
	for i, r := range reqs {
		want := acceptedS
		if r.ID == batch[bad].Event.RequestID {
			want = routedS
		}
		if got := requestStatus(t, s, r.ID); got != want {
			t.Errorf("request %d is %s, want %s", i, got, want)
		}
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_AnEarlierRoundsEventArrivingAfterAReplayIsRecordedInItsPlace(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "tax-id-certificate", t0)
	// Round 0 fails; an operator's replay opens round 1, which completes.
	mustProject(t, s, submitted(r), routed(r, at(1), "tax"), agencyEvent(r, "tax", failedS, at(3)))
	mustProject(t, s, inRound(agencyEvent(r, "tax", routedS, at(5)), 1), inRound(agencyEvent(r, "tax", dispatchedS, at(6)), 1),
		inRound(agencyEvent(r, "tax", completedS, at(7)), 1))
	// Round 0's dispatched event comes last.
	mustProject(t, s, agencyEvent(r, "tax", dispatchedS, at(2)))

	v, err := s.RequestForDesk(t.Context(), r.DeskID, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range v.Timeline {
		got = append(got, string(e.Status)+" "+e.Agency)
	}
	want := []string{"submitted ", "routed ", "dispatched tax", "failed tax", "failed ", "routed tax", "dispatched tax", "completed tax", "completed "}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("timeline %q, want %q", got, want)
	}
	if v.Status != completedS || workItems(t, s, r.ID)["tax"] != completedS {
		t.Errorf("request %s, work item %s after the late event; want both still completed", v.Status, workItems(t, s, r.ID)["tax"])
	}
	assertRollupsMatchTimeline(t, s)
}

func TestProject_AnEventOfARoundNoReplayOpenedIsNotApplied(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "criminal-record-certificate", t0)
	mustProject(t, s, submitted(r), routed(r, at(1), "justice"), agencyEvent(r, "justice", completedS, at(2)))
	forged := inRound(agencyEvent(r, "justice", rejectedS, at(3)), 99)
	errs := s.Project(t.Context(), []events.Change{forged})
	if !errors.Is(errs[0], events.ErrRoundNotOpened) {
		t.Fatalf("an event of round 99: %v, want ErrRoundNotOpened", errs[0])
	}
	if got := requestStatus(t, s, r.ID); got != completedS {
		t.Errorf("request is %s, want still completed", got)
	}
	if n := eventCount(t, s, forged.Event.ID); n != 0 {
		t.Errorf("the event of round 99 is in the timeline %d times", n)
	}
	if got := requestLevelTerminals(t, s, r.ID); len(got) != 1 {
		t.Errorf("request-level terminal entries %v, want only the completion", got)
	}
	assertRollupsMatchTimeline(t, s)
}
