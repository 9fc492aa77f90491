package postgres_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// TestProject_DataPostgresRefusesIsPermanent covers issue 15: a change
// whose text Postgres refuses (SQLSTATE class 22) fails the same way
// however often it is retried, so its error must be permanent, for the
// projector to dead-letter it, and never an outage. Nothing between the
// events stream and the store checks a request's visit_id or mediator, or
// an event's actor: they reach Postgres as published.
func TestProject_DataPostgresRefusesIsPermanent(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	bad := []struct {
		name   string
		change func() events.Change
	}{
		{"a request whose visit_id holds NUL (22021)", func() events.Change {
			r := newRequest("desk-a", "change-of-address", t0)
			r.VisitID = "visit\x00-1"
			return submitted(r)
		}},
		{"a request whose mediator is not UTF-8 (22021)", func() events.Change {
			r := newRequest("desk-a", "change-of-address", t0)
			r.Mediator = "ana\xff"
			return submitted(r)
		}},
		{"an event whose actor holds NUL (22021)", func() events.Change {
			r := newRequest("desk-a", "change-of-address", t0)
			mustProject(t, s, submitted(r), routed(r, at(1), "civil-registry"))
			c := agencyEvent(r, "civil-registry", acceptedS, at(2))
			c.Event.Actor = "agency:civil\x00registry"
			return c
		}},
		{"an event of a time beyond Postgres's timestamps (22008)", func() events.Change {
			r := newRequest("desk-a", "change-of-address", t0)
			mustProject(t, s, submitted(r), routed(r, at(1), "civil-registry"))
			c := agencyEvent(r, "civil-registry", acceptedS, at(2))
			c.Event.At = c.Event.At.AddDate(300000, 0, 0)
			return c
		}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			// Alone, and among good changes that must still be applied.
			good := newRequest("desk-a", "change-of-address", t0)
			for _, changes := range [][]events.Change{{tt.change()}, {submitted(good), tt.change()}} {
				errs := s.Project(t.Context(), changes)
				err := errs[len(errs)-1]
				if !events.IsPermanent(err) || errors.Is(err, events.ErrUnavailable) {
					t.Errorf("Project: %v, want a permanent error, not an outage", err)
				}
				for _, err := range errs[:len(errs)-1] {
					if err != nil {
						t.Errorf("a good change beside it failed: %v", err)
					}
				}
			}
			if tl := timelineRows(t, s, good.ID); len(tl) != 1 {
				t.Errorf("the good request's timeline holds %d events, want its submission", len(tl))
			}
		})
	}
}

// TestRecordDeadLetter_StoresWhatItsMessageCouldNotHold covers the other
// half: the dead letter of a message Postgres refused carries the same
// text (its IDs), and a reason cut at 2,000 bytes could end within a
// character; refused in turn, the dead letter would never be recorded and
// its message retried for ever.
func TestRecordDeadLetter_StoresWhatItsMessageCouldNotHold(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	reason := strings.Repeat("a", 1999) + "é, and more" // é straddles byte 2,000
	fresh, err := s.RecordDeadLetter(t.Context(), events.DeadLetter{
		Stream: events.EventsStream, StreamSeq: 7, Subject: "spotflow.status.civil-registry",
		RequestID: "req\x00-1", WorkItemID: "req\x00-1.civil-registry", Agency: "civil\xffregistry",
		Reason: events.ReasonPermanent, LastError: reason, Attempts: 1, Payload: []byte(`{"request_id":"req\u0000-1"}`),
	})
	if err != nil || !fresh {
		t.Fatalf("RecordDeadLetter: %v (fresh %v), want it recorded", err, fresh)
	}
	list, err := s.ListDeadLetters(t.Context(), events.DeadLetterQuery{Limit: 10})
	if err != nil || len(list) != 1 {
		t.Fatalf("ListDeadLetters: %v, %d dead letters, want 1", err, len(list))
	}
	d := list[0]
	if d.RequestID != "req -1" || d.WorkItemID != "req -1.civil-registry" || d.Agency != "civilregistry" {
		t.Errorf("dead letter of %q, %q, %q; want its IDs with NUL as a space and what is not UTF-8 dropped", d.RequestID, d.WorkItemID, d.Agency)
	}
	if !utf8.ValidString(d.LastError) || len(d.LastError) > 2000 || !strings.HasPrefix(d.LastError, strings.Repeat("a", 1999)) {
		t.Errorf("last error of %d bytes, valid UTF-8 %v; want the reason cut before the character at byte 2,000", len(d.LastError), utf8.ValidString(d.LastError))
	}
}
