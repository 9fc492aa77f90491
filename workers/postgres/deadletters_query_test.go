package postgres_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// TestListDeadLetters_FiltersByAgencyMunicipalityAndPending lists dead
// letters of requests of two municipalities and of no request, each filter
// alone and together.
func TestListDeadLetters_FiltersByAgencyMunicipalityAndPending(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	at := time.Now().UTC().Truncate(time.Second)
	lisboa, porto := newRequest("desk-l", "driving-licence-renewal", at), newRequest("desk-p", "driving-licence-renewal", at.Add(time.Second))
	porto.Municipality = "porto"
	mustProject(t, s, submitted(lisboa), submitted(porto))
	record := func(seq uint64, requestID, agency string) {
		t.Helper()
		if _, err := s.RecordDeadLetter(ctx, events.DeadLetter{Stream: events.WorkStream, StreamSeq: seq, Subject: events.WorkSubject(agency),
			RequestID: requestID, Agency: agency, Reason: events.ReasonPermanent, LastError: "refused", Attempts: 1, Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	record(1, lisboa.ID, "imt")
	record(2, porto.ID, "imt")
	record(3, porto.ID, "tax")
	record(4, "", "imt") // a message of no request
	for _, c := range []struct {
		q    events.DeadLetterQuery
		want []uint64
	}{
		{events.DeadLetterQuery{}, []uint64{4, 3, 2, 1}},
		{events.DeadLetterQuery{Municipality: "porto"}, []uint64{3, 2}},
		{events.DeadLetterQuery{Municipality: "porto", Agency: "imt"}, []uint64{2}},
		{events.DeadLetterQuery{Municipality: "lisboa", Pending: true}, []uint64{1}},
		{events.DeadLetterQuery{Municipality: "faro"}, nil},
		{events.DeadLetterQuery{Agency: "imt", Limit: 2}, []uint64{4, 2}},
	} {
		dead, err := s.ListDeadLetters(ctx, c.q)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, d := range dead {
			got = append(got, d.StreamSeq)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("ListDeadLetters(%+v) = %v, want %v", c.q, got, c.want)
		}
	}
}

// TestListDeadLetters_SelectsOneByIDAndNamesItsRequestsServiceDeskAndMunicipality
// reads a dead letter by its ID, in the list and alone, with what its
// request says of it; a dead letter of no request has none of it.
func TestListDeadLetters_SelectsOneByIDAndNamesItsRequestsServiceDeskAndMunicipality(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	r := newRequest("desk-p", "driving-licence-renewal", time.Now().UTC().Truncate(time.Second))
	r.Municipality = "porto"
	mustProject(t, s, submitted(r))
	for seq, requestID := range map[uint64]string{1: r.ID, 2: "", 3: r.ID} {
		if _, err := s.RecordDeadLetter(ctx, events.DeadLetter{Stream: events.WorkStream, StreamSeq: seq, Subject: events.WorkSubject("imt"),
			RequestID: requestID, Agency: "imt", Reason: events.ReasonPermanent, LastError: "refused", Attempts: 1, Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ListDeadLetters(ctx, events.DeadLetterQuery{})
	if err != nil || len(all) != 3 {
		t.Fatalf("ListDeadLetters = %+v, %v", all, err)
	}
	ids := map[uint64]int64{}
	for _, d := range all {
		ids[d.StreamSeq] = d.ID
	}
	for seq, want := range map[uint64]string{1: "driving-licence-renewal desk-p porto", 2: "  "} {
		one, err := s.ListDeadLetters(ctx, events.DeadLetterQuery{ID: ids[seq]})
		if err != nil || len(one) != 1 || one[0].StreamSeq != seq {
			t.Fatalf("ListDeadLetters of ID %d = %+v, %v; want that dead letter alone", ids[seq], one, err)
		}
		if got := one[0].ServiceCode + " " + one[0].DeskID + " " + one[0].Municipality; got != want {
			t.Errorf("dead letter %d names its request's service, desk and municipality %q, want %q", seq, got, want)
		}
		d, err := s.DeadLetter(ctx, ids[seq])
		if err != nil || d.ServiceCode+" "+d.DeskID+" "+d.Municipality != want || string(d.Payload) != `{}` {
			t.Errorf("DeadLetter %d = %+v, %v; want %q and its message", seq, d, err, want)
		}
		v, err := s.ViewDeadLetter(ctx, ids[seq], events.By{Actor: "operator:ana", Reason: "checking"})
		if err != nil || v.ServiceCode+" "+v.DeskID+" "+v.Municipality != want {
			t.Errorf("ViewDeadLetter %d = %+v, %v; want %q", seq, v, err, want)
		}
	}
	for _, q := range []events.DeadLetterQuery{
		{ID: ids[1], Agency: "tax"},
		{ID: ids[2], Municipality: "porto"},
		{ID: ids[3] + 100},
	} {
		if got, err := s.ListDeadLetters(ctx, q); err != nil || len(got) != 0 {
			t.Errorf("ListDeadLetters(%+v) = %+v, %v; want none", q, got, err)
		}
	}
}

// TestMarkReplayed_RecordsWhoAndWhyInTheAuditLog replays a dead letter
// twice, with a reason and without, and once on behalf of no one.
func TestMarkReplayed_RecordsWhoAndWhyInTheAuditLog(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	if _, err := s.RecordDeadLetter(ctx, events.DeadLetter{Stream: events.WorkStream, StreamSeq: 9, Subject: events.WorkSubject("imt"),
		RequestID: "req-1", WorkItemID: "req-1.imt", Agency: "imt", Reason: events.ReasonPermanent, LastError: "refused", Attempts: 1,
		Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	dead, err := s.ListDeadLetters(ctx, events.DeadLetterQuery{})
	if err != nil || len(dead) != 1 {
		t.Fatalf("ListDeadLetters = %+v, %v", dead, err)
	}
	id := dead[0].ID
	if n, err := s.MarkReplayed(ctx, id, events.By{Actor: "token:replay-script", Reason: "the back office is up again"}); err != nil || n != 1 {
		t.Fatalf("first replay: %d, %v", n, err)
	}
	if n, err := s.MarkReplayed(ctx, id, events.By{Actor: "operator:rui"}); err != nil || n != 2 {
		t.Fatalf("second replay: %d, %v", n, err)
	}
	if _, err := s.MarkReplayed(ctx, id, events.By{Reason: "no one asked"}); err == nil {
		t.Error("a replay on behalf of no one was counted")
	}
	if _, err := s.MarkReplayed(ctx, id+1, events.By{Actor: "operator:rui"}); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("replaying an unknown dead letter: %v, want ErrNotFound", err)
	}
	if d, _ := s.DeadLetter(ctx, id); d.Replays != 2 || d.ReplayedAt == nil {
		t.Errorf("after two replays and a refused one: %d replays, replayed at %v", d.Replays, d.ReplayedAt)
	}
	want := []string{"replay by token:replay-script for the back office is up again", "replay by operator:rui"}
	if got := auditedActions(t, s, "req-1.imt"); !slices.Equal(got, want) {
		t.Errorf("audit log of the work item\n got %q\nwant %q", got, want)
	}
	entries, err := s.AuditEntries(ctx, events.AuditQuery{Action: events.AuditReplay, Limit: 1})
	if err != nil || len(entries) != 1 || entries[0].Detail["replay"] != float64(2) || entries[0].Detail["dead_letter"] != float64(id) {
		t.Errorf("the replay's entry %+v (err %v), want the dead letter and the replay's number", entries, err)
	}
}
