package postgres_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

func TestRequestForDesk_ShowsStatusWorkItemsAndOrderedTimeline(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	r := newRequest("desk-a", "change-of-address", t0)
	r.VisitID = "visit-9"
	mustProject(t, s, submitted(r), routed(r, at(1), "tax", "civil-registry"))
	// Agencies report out of order: later steps are projected first, and
	// two events share one instant.
	mustProject(t, s, agencyEvent(r, "tax", completedS, at(8)))
	mustProject(t, s, agencyEvent(r, "civil-registry", acceptedS, at(3)), agencyEvent(r, "tax", acceptedS, at(3)))
	mustProject(t, s, agencyEvent(r, "civil-registry", completedS, at(8)))

	v, err := s.RequestForDesk(ctx, "desk-a", r.ID)
	if err != nil {
		t.Fatalf("RequestForDesk: %v", err)
	}
	if v.ID != r.ID || v.ServiceCode != "change-of-address" || v.VisitID != "visit-9" || v.Status != completedS {
		t.Errorf("view = %s %s %s %s, want the request, its service, visit and status completed",
			v.ID, v.ServiceCode, v.VisitID, v.Status)
	}
	if !v.CreatedAt.Equal(t0) || !v.UpdatedAt.Equal(at(8)) {
		t.Errorf("created %v, updated %v; want %v and %v", v.CreatedAt, v.UpdatedAt, t0, at(8))
	}
	wantItems := []events.WorkItemView{
		{Agency: "civil-registry", Status: completedS, UpdatedAt: at(8)},
		{Agency: "tax", Status: completedS, UpdatedAt: at(8)},
	}
	if len(v.WorkItems) != len(wantItems) {
		t.Fatalf("work items %+v, want %+v", v.WorkItems, wantItems)
	}
	for i, w := range wantItems {
		got := v.WorkItems[i]
		if got.Agency != w.Agency || got.Status != w.Status || !got.UpdatedAt.Equal(w.UpdatedAt) {
			t.Errorf("work item %d = %+v, want %+v", i, got, w)
		}
	}
	want := []string{
		"00 submitted",
		"01 routed",
		"03 civil-registry accepted",
		"03 tax accepted",
		"08 civil-registry completed",
		"08 tax completed",
		"08 completed", // the request as a whole, after its work items
	}
	var got []string
	for _, e := range v.Timeline {
		line := fmt.Sprintf("%02d %s", int(e.At.Sub(t0)/time.Minute), e.Status)
		if e.Agency != "" {
			line = fmt.Sprintf("%02d %s %s", int(e.At.Sub(t0)/time.Minute), e.Agency, e.Status)
		}
		got = append(got, line)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("timeline\n got %q\nwant %q", got, want)
	}
	for _, e := range v.Timeline {
		if e.Agency != "" && e.Note != "reported by "+e.Agency {
			t.Errorf("timeline entry %+v lost the agency's note", e)
		}
	}
}

func TestRequestForDesk_TimelineBreaksTiesByStatusRank(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	r := newRequest("desk-a", "tax-id-certificate", t0)
	// Everything at one instant, projected in reverse order of the lifecycle.
	mustProject(t, s, submitted(r), routed(r, t0, "tax"))
	mustProject(t, s, agencyEvent(r, "tax", inProgressS, t0))
	mustProject(t, s, agencyEvent(r, "tax", acceptedS, t0))
	mustProject(t, s, agencyEvent(r, "tax", dispatchedS, t0))
	v, err := s.RequestForDesk(withTimeout(t), "desk-a", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []events.Status
	for _, e := range v.Timeline {
		got = append(got, e.Status)
	}
	want := []events.Status{submittedS, routedS, dispatchedS, acceptedS, inProgressS}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("timeline statuses %v, want %v", got, want)
	}
}

func TestRequestForDesk_AnotherDesksRequestIsNotFound(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	r := newRequest("desk-a", "birth-certificate", t0)
	mustProject(t, s, submitted(r))
	for name, q := range map[string]struct{ desk, id string }{
		"another desk's request":   {"desk-b", r.ID},
		"a request never made":     {"desk-a", events.NewID(t0)},
		"an empty ID":              {"desk-a", ""},
		"the request with no desk": {"", r.ID},
	} {
		v, err := s.RequestForDesk(ctx, q.desk, q.id)
		if !errors.Is(err, events.ErrNotFound) || v != nil {
			t.Errorf("%s: RequestForDesk = %+v, %v; want nil, events.ErrNotFound", name, v, err)
		}
	}
}

func TestRequestForDesk_PublishedButNotProjectedIsSubmitted(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	other := newDesk(t, s, "porto")
	c := claim(desk, "key-1", `{"service_code":"birth-certificate"}`)
	id, _, err := s.ClaimKey(ctx, c)
	if err != nil {
		t.Fatal(err)
	}

	// Claimed but not yet stored by JetStream: nothing to show.
	if v, err := s.RequestForDesk(ctx, desk.ID, id); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("unpublished request: RequestForDesk = %+v, %v; want events.ErrNotFound", v, err)
	}

	if err := s.MarkPublished(ctx, id, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	v, err := s.RequestForDesk(ctx, desk.ID, id)
	if err != nil {
		t.Fatalf("published request: RequestForDesk: %v", err)
	}
	if v.ID != id || v.Status != submittedS || v.ServiceCode != "birth-certificate" {
		t.Errorf("published request view = %+v, want %s submitted for birth-certificate", v, id)
	}
	if v.WorkItems == nil || len(v.WorkItems) != 0 || v.Timeline == nil || len(v.Timeline) != 0 {
		t.Errorf("published request has work items %v and timeline %v, want both empty and not nil", v.WorkItems, v.Timeline)
	}
	if v.CreatedAt.IsZero() || time.Since(v.CreatedAt) > time.Hour {
		t.Errorf("published request created at %v, want about now", v.CreatedAt)
	}
	if v, err := s.RequestForDesk(ctx, other.ID, id); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("another desk reading the published request: %+v, %v; want events.ErrNotFound", v, err)
	}

	// Once projected, the projection answers, with its timeline.
	r := newRequest(desk.ID, "birth-certificate", t0)
	r.ID = id
	mustProject(t, s, submitted(r))
	v, err = s.RequestForDesk(ctx, desk.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Timeline) != 1 || v.Timeline[0].Status != submittedS || !v.CreatedAt.Equal(t0) {
		t.Errorf("projected request view = %+v, want the projection's submitted entry at %v", v, t0)
	}
}
