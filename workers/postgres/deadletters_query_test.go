package postgres_test

import (
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
