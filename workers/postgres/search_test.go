package postgres_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

func TestSearchRequests_FiltersADesksRequestsNewestFirst(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	other := newDesk(t, s, "porto")
	// Four projected requests of the desk, one of another desk.
	address := newRequest(desk.ID, "change-of-address", t0)
	licence := newRequest(desk.ID, "driving-licence-renewal", t0.Add(time.Hour))
	record := newRequest(desk.ID, "criminal-record-certificate", t0.Add(2*time.Hour))
	old := newRequest(desk.ID, "birth-certificate", t0.Add(-100*24*time.Hour))
	theirs := newRequest(other.ID, "birth-certificate", t0.Add(time.Hour))
	for _, r := range []*events.Request{address, licence, record, old, theirs} {
		mustProject(t, s, submitted(r))
	}
	mustProject(t, s, routed(address, at(1), "tax", "sns"), routed(licence, at(1), "imt"))
	mustProject(t, s, agencyEvent(address, "tax", events.StatusCompleted, at(5)), agencyEvent(address, "sns", events.StatusCompleted, at(6)))
	mustProject(t, s, agencyEvent(licence, "imt", events.StatusRejected, at(4)))
	// One accepted by intake and published, not projected yet.
	pending := events.NewID(time.Now())
	if _, _, err := s.ClaimKey(ctx, events.KeyClaim{DeskID: desk.ID, Key: "k-1", ServiceCode: "tax-id-certificate", Body: []byte(`{}`), NewID: pending}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPublished(ctx, pending, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// One whose key was claimed but whose publish never succeeded.
	if _, _, err := s.ClaimKey(ctx, events.KeyClaim{DeskID: desk.ID, Key: "k-2", ServiceCode: "tax-id-certificate", Body: []byte(`{}`), NewID: events.NewID(time.Now())}); err != nil {
		t.Fatal(err)
	}

	ids := func(found []events.RequestSummary) []string {
		var out []string
		for _, f := range found {
			out = append(out, f.ID)
		}
		return out
	}
	tests := []struct {
		name string
		q    events.RequestQuery
		want []string
	}{
		{"every request of the desk, newest first", events.RequestQuery{},
			[]string{pending, record.ID, licence.ID, address.ID, old.ID}},
		{"within a window", events.RequestQuery{From: t0, To: t0.Add(time.Hour)},
			[]string{licence.ID, address.ID}},
		{"by service", events.RequestQuery{ServiceCodes: []string{"change-of-address", "criminal-record-certificate"}},
			[]string{record.ID, address.ID}},
		{"by status", events.RequestQuery{Statuses: []events.Status{events.StatusCompleted, events.StatusRejected}},
			[]string{licence.ID, address.ID}},
		{"still submitted, projected or not", events.RequestQuery{Statuses: []events.Status{events.StatusSubmitted}},
			[]string{pending, record.ID, old.ID}},
		{"at most two", events.RequestQuery{Limit: 2},
			[]string{pending, record.ID}},
		{"by id, overriding the other filters", events.RequestQuery{IDs: []string{old.ID, address.ID, theirs.ID, "nope"}, ServiceCodes: []string{"tax-id-certificate"}, From: t0},
			[]string{address.ID, old.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.DeskID = desk.ID
			found, err := s.SearchRequests(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(found); !slices.Equal(got, tt.want) {
				t.Errorf("found %v, want %v", got, tt.want)
			}
		})
	}

	found, err := s.SearchRequests(ctx, events.RequestQuery{DeskID: desk.ID, IDs: []string{address.ID, licence.ID, pending}})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]events.RequestSummary{}
	for _, f := range found {
		byID[f.ID] = f
	}
	if a := byID[address.ID]; a.Status != events.StatusCompleted || a.Note != "reported by sns" || a.ServiceCode != "change-of-address" ||
		!a.SubmittedAt.Equal(t0) || !a.UpdatedAt.Equal(at(6)) {
		t.Errorf("change of address = %+v; want completed, the latest note, submitted at t0, updated at 6", a)
	}
	if l := byID[licence.ID]; l.Status != events.StatusRejected || l.Note != "reported by imt" {
		t.Errorf("licence = %+v; want rejected with the agency's note", l)
	}
	if p := byID[pending]; p.Status != events.StatusSubmitted || p.ServiceCode != "tax-id-certificate" || p.Note != "" || p.SubmittedAt.IsZero() {
		t.Errorf("pending = %+v; want submitted, its service and a time", p)
	}
}

func TestRequestUpdates_ListsADesksEventsInAWindowWithTheRequestsStatusAfterEach(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	other := newDesk(t, s, "porto")
	// A change of address that two agencies complete; a certificate that
	// fails, is replayed and completes in round 1; another desk's request.
	address := newRequest(desk.ID, "change-of-address", t0)
	record := newRequest(desk.ID, "criminal-record-certificate", t0.Add(30*time.Second))
	theirs := newRequest(other.ID, "birth-certificate", t0)
	mustProject(t, s, submitted(address), submitted(record), submitted(theirs))
	mustProject(t, s, routed(address, at(1), "tax", "sns"), routed(record, at(1).Add(30*time.Second), "justice"), routed(theirs, at(1), "irn"))
	mustProject(t, s, agencyEvent(address, "tax", completedS, at(2)), agencyEvent(record, "justice", failedS, at(3)))
	mustProject(t, s, agencyEvent(address, "sns", completedS, at(4)), agencyEvent(theirs, "irn", completedS, at(4)))
	mustProject(t, s, inRound(agencyEvent(record, "justice", routedS, at(5)), 1), inRound(agencyEvent(record, "justice", completedS, at(6)), 1))

	line := func(u events.RequestUpdate) string {
		who := "request"
		if u.RequestID == address.ID {
			who = "address"
		} else if u.RequestID == record.ID {
			who = "record"
		}
		return fmt.Sprintf("%02d %s %s %s → %s", int(u.At.Sub(t0)/time.Minute), who, u.Agency, u.Status, u.RequestStatus)
	}
	list := func(from, to time.Time, limit int) []string {
		t.Helper()
		found, err := s.RequestUpdates(ctx, events.UpdateQuery{DeskID: desk.ID, From: from, To: to, Limit: limit})
		if err != nil {
			t.Fatalf("RequestUpdates: %v", err)
		}
		var out []string
		for _, u := range found {
			if u.RequestID == theirs.ID {
				t.Errorf("another desk's update: %+v", u)
			}
			if u.EventID == "" || (u.RequestID == address.ID) != (u.ServiceCode == "change-of-address") {
				t.Errorf("update %+v lacks its event ID or names the wrong service", u)
			}
			if u.Agency != "" && u.Note != "reported by "+u.Agency {
				t.Errorf("update %+v lost the agency's note", u)
			}
			out = append(out, line(u))
		}
		return out
	}
	all := []string{
		"00 address  submitted → submitted",
		"00 record  submitted → submitted",
		"01 address  routed → routed",
		"01 record  routed → routed",
		"02 address tax completed → routed",
		"03 record justice failed → failed",
		"03 record  failed → failed",
		"04 address sns completed → completed",
		"04 address  completed → completed",
		"05 record justice routed → failed",
		"06 record justice completed → completed",
		"06 record  completed → completed",
	}
	if got := list(t0, at(10), 0); !slices.Equal(got, all) {
		t.Errorf("updates\n got %q\nwant %q", got, all)
	}
	if got, want := list(at(3), at(4), 0), all[5:9]; !slices.Equal(got, want) {
		t.Errorf("updates from minute 3 to 4 (both included)\n got %q\nwant %q", got, want)
	}
	if got, want := list(at(4), at(10), 2), all[7:9]; !slices.Equal(got, want) {
		t.Errorf("the first two updates from minute 4\n got %q\nwant %q", got, want)
	}
	if got := list(at(11), at(20), 0); len(got) != 0 {
		t.Errorf("updates after the last event: %q", got)
	}
}
