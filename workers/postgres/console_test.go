package postgres_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// practised marks c's event as one of a request made in training mode.
func practised(c events.Change) events.Change {
	c.Event.Practice = true
	return c
}

// failedWith is agency's failure of r's work item, with note.
func failedWith(r *events.Request, agency string, at time.Time, note string) events.Change {
	c := agencyEvent(r, agency, events.StatusFailed, at)
	c.Event.Note = note
	return c
}

// TestStuckWork_ListsFailedAndOverdueWorkItemsButNotPracticeNorFinishedOnes
// projects work items in every state, some past their service's expected
// time, and reads what is stuck with each filter.
func TestStuckWork_ListsFailedAndOverdueWorkItemsButNotPracticeNorFinishedOnes(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	now := time.Now().UTC().Truncate(time.Second)
	const service, noSLA = "change-of-address", "tax-id-certificate"

	// failing: imt failed, tax accepted three hours ago, past the hour
	// its service is expected to take.
	failing := newRequest("desk-l", service, now.Add(-3*time.Hour))
	// recent: dispatched ten minutes ago, within the hour.
	recent := newRequest("desk-p", service, now.Add(-10*time.Minute))
	recent.Municipality = "porto"
	// unmeasured: two days under way, of a service with no expected time.
	unmeasured := newRequest("desk-l", noSLA, now.Add(-48*time.Hour))
	// finished: completed by imt, rejected by tax, long ago.
	finished := newRequest("desk-l", service, now.Add(-5*time.Hour))
	// practice: a trainee's request that failed, and another overdue.
	practice := newRequest("desk-l", service, now.Add(-6*time.Hour))
	practice.Practice = &events.Practice{Outcome: events.OutcomeFail}
	// porto: a request of porto whose tax work item failed.
	porto := newRequest("desk-p", service, now.Add(-2*time.Hour))
	porto.Municipality = "porto"
	mustProject(t, s, submitted(failing), submitted(recent), submitted(unmeasured), submitted(finished), submitted(practice), submitted(porto))
	mustProject(t, s,
		routed(failing, failing.SubmittedAt.Add(time.Second), "imt", "tax"),
		routed(recent, recent.SubmittedAt.Add(time.Second), "imt"),
		routed(unmeasured, unmeasured.SubmittedAt.Add(time.Second), "tax"),
		routed(finished, finished.SubmittedAt.Add(time.Second), "imt", "tax"),
		routed(practice, practice.SubmittedAt.Add(time.Second), "imt", "tax"),
		routed(porto, porto.SubmittedAt.Add(time.Second), "tax"),
	)
	mustProject(t, s,
		agencyEvent(failing, "imt", events.StatusDispatched, now.Add(-170*time.Minute)),
		failedWith(failing, "imt", now.Add(-2*time.Hour), "the back office is down"),
		agencyEvent(failing, "tax", events.StatusAccepted, now.Add(-150*time.Minute)),
		agencyEvent(recent, "imt", events.StatusDispatched, now.Add(-9*time.Minute)),
		agencyEvent(unmeasured, "tax", events.StatusDispatched, now.Add(-47*time.Hour)),
		agencyEvent(finished, "imt", events.StatusCompleted, now.Add(-4*time.Hour)),
		agencyEvent(finished, "tax", events.StatusRejected, now.Add(-4*time.Hour)),
		practised(failedWith(practice, "imt", now.Add(-5*time.Hour), "practice failure")),
		practised(agencyEvent(practice, "tax", events.StatusAccepted, now.Add(-5*time.Hour))),
		failedWith(porto, "tax", now.Add(-time.Hour), "refused by the back office"),
	)

	slas := map[string]time.Duration{service: time.Hour}
	name := func(w events.StuckWorkItem) string {
		for r, n := range map[*events.Request]string{failing: "failing", recent: "recent", unmeasured: "unmeasured",
			finished: "finished", practice: "practice", porto: "porto"} {
			if r.ID == w.RequestID {
				return n + "/" + w.Agency
			}
		}
		return w.RequestID + "/" + w.Agency
	}
	for _, c := range []struct {
		name string
		q    events.StuckQuery
		want []string
	}{
		{"failed and overdue work items are listed, oldest request first", events.StuckQuery{SLAs: slas},
			[]string{"failing/imt", "failing/tax", "porto/tax"}},
		{"without expected times only failed ones are", events.StuckQuery{}, []string{"failing/imt", "porto/tax"}},
		{"a tighter expected time makes more overdue", events.StuckQuery{SLAs: map[string]time.Duration{service: 5 * time.Minute}},
			[]string{"failing/imt", "failing/tax", "porto/tax", "recent/imt"}},
		{"an agency's", events.StuckQuery{SLAs: slas, Agency: "tax"}, []string{"failing/tax", "porto/tax"}},
		{"a municipality's", events.StuckQuery{SLAs: slas, Municipality: "porto"}, []string{"porto/tax"}},
		{"an agency's in a municipality", events.StuckQuery{SLAs: slas, Agency: "imt", Municipality: "porto"}, nil},
		{"at most the limit", events.StuckQuery{SLAs: slas, Limit: 2}, []string{"failing/imt", "failing/tax"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stuck, err := s.StuckWork(t.Context(), c.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range stuck {
				got = append(got, name(w))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("StuckWork(%+v) = %q, want %q", c.q, got, c.want)
			}
		})
	}

	stuck, err := s.StuckWork(ctx, events.StuckQuery{SLAs: slas, Agency: "imt"})
	if err != nil || len(stuck) != 1 {
		t.Fatalf("StuckWork of imt = %+v, %v", stuck, err)
	}
	want := events.StuckWorkItem{
		RequestID: failing.ID, Agency: "imt", ServiceCode: service, DeskID: "desk-l", Municipality: "lisboa",
		Status: events.StatusFailed, Note: "the back office is down",
		SubmittedAt: failing.SubmittedAt, UpdatedAt: now.Add(-2 * time.Hour), Overdue: false,
	}
	if got := stuck[0]; got.RequestID != want.RequestID || got.Agency != want.Agency || got.ServiceCode != want.ServiceCode ||
		got.DeskID != want.DeskID || got.Municipality != want.Municipality || got.Status != want.Status || got.Round != 0 ||
		got.Note != want.Note || !got.SubmittedAt.Equal(want.SubmittedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) || got.Overdue {
		t.Errorf("the failed work item reads\n %+v\nwant\n %+v", got, want)
	}
	stuck, err = s.StuckWork(ctx, events.StuckQuery{SLAs: slas, Agency: "tax", Municipality: "lisboa"})
	if err != nil || len(stuck) != 1 || !stuck[0].Overdue || stuck[0].Status != events.StatusAccepted {
		t.Errorf("the overdue work item reads %+v (err %v), want accepted and overdue", stuck, err)
	}
}

// TestReplayProgress_SaysWhereEachDeadLetterReplayedSinceStands replays
// dead letters of a work item, of a request and of no request, and reads
// where each stands as the replayed round moves on.
func TestReplayProgress_SaysWhereEachDeadLetterReplayedSinceStands(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	now := time.Now().UTC().Truncate(time.Second)
	r := newRequest("desk-l", "change-of-address", now.Add(-time.Hour))
	mustProject(t, s, submitted(r), routed(r, now.Add(-59*time.Minute), "imt"))
	mustProject(t, s, failedWith(r, "imt", now.Add(-58*time.Minute), "refused"))
	record := func(seq uint64, requestID, agency string) int64 {
		t.Helper()
		if _, err := s.RecordDeadLetter(ctx, events.DeadLetter{Stream: events.WorkStream, StreamSeq: seq, Subject: "x",
			RequestID: requestID, Agency: agency, Reason: events.ReasonPermanent, LastError: "refused", Attempts: 1, Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		dead, err := s.ListDeadLetters(ctx, events.DeadLetterQuery{Limit: 1})
		if err != nil || len(dead) != 1 || dead[0].StreamSeq != seq {
			t.Fatalf("the dead letter just recorded: %+v, %v", dead, err)
		}
		return dead[0].ID
	}
	ofWorkItem, ofRequest, ofNothing, notReplayed := record(1, r.ID, "imt"), record(2, r.ID, ""), record(3, "", "imt"), record(4, r.ID, "tax")
	before := time.Now().Add(-time.Second)
	for _, id := range []int64{ofWorkItem, ofRequest, ofNothing} {
		if _, err := s.MarkReplayed(ctx, id, events.By{Actor: "operator:ana"}); err != nil {
			t.Fatal(err)
		}
	}
	progress := func() map[int64]string {
		t.Helper()
		states, err := s.ReplayProgress(ctx, before)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int64]string{}
		for _, st := range states {
			out[st.DeadLetterID] = fmt.Sprintf("%t/%s replay %d: %s round %d at %s", st.RequestID == r.ID, st.Agency, st.Replays, st.Status, st.Round, st.UpdatedAt.UTC().Format(time.TimeOnly))
		}
		return out
	}
	at := func(d time.Duration) string { return now.Add(d).Format(time.TimeOnly) }
	want := map[int64]string{
		ofWorkItem: "true/imt replay 1: failed round 0 at " + at(-58*time.Minute),
		ofRequest:  "true/ replay 1: failed round 0 at " + at(-58*time.Minute),
		ofNothing:  "false/imt replay 1:  round 0 at 00:00:00",
	}
	if got := progress(); !maps.Equal(got, want) {
		t.Errorf("before the replayed round moves:\n got %v\nwant %v", got, want)
	}

	// The replay's round reaches the projection: imt's work item is routed
	// again in round 1, then completed.
	mustProject(t, s, inRound(routed(r, now.Add(-time.Minute), "imt"), 1))
	mustProject(t, s, inRound(agencyEvent(r, "imt", events.StatusCompleted, now), 1))
	got := progress()
	if w := "true/imt replay 1: completed round 1 at " + at(0); got[ofWorkItem] != w {
		t.Errorf("the work item's dead letter after its replay completed: %q, want %q", got[ofWorkItem], w)
	}
	if w := "true/ replay 1: completed round 1 at " + at(0); got[ofRequest] != w {
		t.Errorf("the request's dead letter after its replay completed: %q, want %q", got[ofRequest], w)
	}
	if _, ok := got[notReplayed]; ok {
		t.Errorf("a dead letter not replayed is listed: %q", got[notReplayed])
	}
	if states, err := s.ReplayProgress(ctx, time.Now().Add(time.Hour)); err != nil || len(states) != 0 {
		t.Errorf("ReplayProgress since a later time = %+v, %v; want none", states, err)
	}
}

// TestAuditLinks_AnExportVerifiesOfflineAndAnyChangeToItBreaksIt reads
// links of the audit log, checks them without the database, after a JSON
// round trip too, and checks that each kind of alteration is caught.
func TestAuditLinks_AnExportVerifiesOfflineAndAnyChangeToItBreaksIt(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	someHistory(t, s) // four actions now, then four submissions at t0
	chain(t, s)
	far := time.Now().Add(time.Hour)

	links, err := s.AuditLinks(ctx, time.Time{}, far, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 8 {
		t.Fatalf("AuditLinks read %d links, want 8", len(links))
	}
	for i, l := range links {
		if l.Seq != int64(i+1) || l.ID == 0 || l.At.IsZero() || len(l.Hash) != 64 || len(l.Fields) == 0 {
			t.Errorf("link %d: %+v", i, l)
		}
	}
	if links[0].PrevHash != strings.Repeat("0", 64) {
		t.Errorf("the first link's prev_hash is %s, want zeros", links[0].PrevHash)
	}
	if st := verify(t, s); links[7].Hash != st.HeadHash {
		t.Errorf("the last link's hash %s is not the chain's head %s", links[7].Hash, st.HeadHash)
	}
	if err := postgres.VerifyAuditLinks(links); err != nil {
		t.Fatalf("VerifyAuditLinks of links as read: %v", err)
	}
	b, err := json.Marshal(links)
	if err != nil {
		t.Fatal(err)
	}
	var back []postgres.AuditLink
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := postgres.VerifyAuditLinks(back); err != nil {
		t.Errorf("VerifyAuditLinks after a JSON round trip: %v", err)
	}

	kinds := func(ls []postgres.AuditLink) []string {
		var out []string
		for _, l := range ls {
			out = append(out, fmt.Sprintf("%d:%s", l.Seq, l.Kind))
		}
		return out
	}
	for _, c := range []struct {
		name     string
		from, to time.Time
		limit    int
		want     []string
	}{
		{"the submissions' time reads theirs", t0, t0.Add(time.Hour), 100, []string{"5:submission", "6:submission", "7:submission", "8:submission"}},
		{"the end is exclusive", t0, t0.Add(2 * time.Second), 100, []string{"5:submission", "6:submission"}},
		{"the actions' time reads theirs", time.Now().Add(-time.Hour), far, 100, []string{"1:log", "2:log", "3:log", "4:log"}},
		{"at most the limit", time.Time{}, far, 3, []string{"1:log", "2:log", "3:log"}},
	} {
		got, err := s.AuditLinks(ctx, c.from, c.to, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(kinds(got), c.want) {
			t.Errorf("%s: AuditLinks = %q, want %q", c.name, kinds(got), c.want)
		}
		if err := postgres.VerifyAuditLinks(got); err != nil {
			t.Errorf("%s: VerifyAuditLinks: %v", c.name, err)
		}
	}

	other := "operator:nobody"
	for _, c := range []struct {
		name    string
		alter   func(ls []postgres.AuditLink)
		seq     int64
		problem string
	}{
		{"an actor rewritten", func(ls []postgres.AuditLink) { ls[2].Fields[0] = &other }, 3, "altered"},
		{"a field made null", func(ls []postgres.AuditLink) { ls[5].Fields[3] = nil }, 6, "altered"},
		{"a field added", func(ls []postgres.AuditLink) { ls[1].Fields = append(ls[1].Fields, &other) }, 2, "altered"},
		{"the time moved by a microsecond", func(ls []postgres.AuditLink) { ls[4].At = ls[4].At.Add(time.Microsecond) }, 5, "altered"},
		{"the entry's id changed", func(ls []postgres.AuditLink) { ls[3].ID++ }, 4, "altered"},
		{"the kind changed", func(ls []postgres.AuditLink) { ls[0].Kind = "submission" }, 1, "altered"},
		{"a hash replaced", func(ls []postgres.AuditLink) { ls[6].Hash = strings.Repeat("ab", 32) }, 7, "altered"},
		{"a hash and the next link's prev_hash replaced", func(ls []postgres.AuditLink) {
			ls[6].Hash, ls[7].PrevHash = strings.Repeat("ab", 32), strings.Repeat("ab", 32)
		}, 7, "altered"},
		{"a prev_hash not following the link before", func(ls []postgres.AuditLink) { ls[3].PrevHash = ls[1].Hash }, 4, "hash of the link before"},
		{"a prev_hash not hex", func(ls []postgres.AuditLink) { ls[2].PrevHash = "not hex" }, 3, "not 32 bytes"},
		{"a prev_hash cut short", func(ls []postgres.AuditLink) { ls[2].PrevHash = ls[2].PrevHash[:62] }, 3, "not 32 bytes"},
		{"two links swapped", func(ls []postgres.AuditLink) { ls[3], ls[4] = ls[4], ls[3] }, 5, "missing or out of order"},
		{"a link left out", func(ls []postgres.AuditLink) { copy(ls[4:], ls[5:]); ls[len(ls)-1] = ls[len(ls)-2] }, 6, "missing or out of order"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			altered := make([]postgres.AuditLink, len(links))
			for i, l := range links {
				l.Fields = slices.Clone(l.Fields)
				altered[i] = l
			}
			c.alter(altered)
			err := postgres.VerifyAuditLinks(altered)
			var broken *postgres.BrokenChainError
			if !errors.As(err, &broken) || broken.Seq != c.seq || !strings.Contains(broken.Problem, c.problem) {
				t.Errorf("VerifyAuditLinks = %v; want link %d broken, %q", err, c.seq, c.problem)
			}
			if err := postgres.VerifyAuditLinks(links); err != nil {
				t.Errorf("the alteration reached the links as read: %v", err)
			}
		})
	}
	if _, err := hex.DecodeString(links[0].Hash); err != nil {
		t.Errorf("a link's hash is not hex: %v", err)
	}
}

// TestOldestWaiting_IsPerAgencyTheOldestWorkItemNotAcceptedYet projects
// work items routed, dispatched, accepted and of practice, and reads when
// each agency's oldest waiting one last moved.
func TestOldestWaiting_IsPerAgencyTheOldestWorkItemNotAcceptedYet(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	now := time.Now().UTC().Truncate(time.Second)
	older := newRequest("desk-l", "change-of-address", now.Add(-3*time.Hour))
	newer := newRequest("desk-l", "change-of-address", now.Add(-2*time.Hour))
	practice := newRequest("desk-l", "change-of-address", now.Add(-10*time.Hour))
	practice.Practice = &events.Practice{Outcome: events.OutcomeComplete}
	mustProject(t, s, submitted(older), submitted(newer), submitted(practice))
	mustProject(t, s,
		routed(older, now.Add(-170*time.Minute), "imt", "tax"),
		routed(newer, now.Add(-110*time.Minute), "imt", "sns"),
		routed(practice, now.Add(-9*time.Hour), "imt", "tax"))
	mustProject(t, s,
		agencyEvent(older, "imt", events.StatusDispatched, now.Add(-90*time.Minute)), // imt's oldest moved since
		agencyEvent(older, "tax", events.StatusAccepted, now.Add(-100*time.Minute)),  // tax has it: not waiting
		agencyEvent(newer, "sns", events.StatusDispatched, now.Add(-30*time.Minute)))

	got, err := s.OldestWaiting(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"imt": now.Add(-110 * time.Minute), "sns": now.Add(-30 * time.Minute)}
	if !maps.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("OldestWaiting = %v, want %v", got, want)
	}
}
