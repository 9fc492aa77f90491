package postgres_test

import (
	"maps"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
)

func TestOpenRequestsByDesk_CountsWhatWasSubmittedAndHasNotEnded(t *testing.T) {
	t.Parallel()
	s := slaStore(t)
	var changes []events.Change
	// desk-1: two under way, one completed, one rejected; desk-2: one
	// completed; desk-3: one under way, submitted long before the window.
	for i, c := range []struct {
		desk   string
		status events.Status
	}{{"desk-1", ""}, {"desk-1", ""}, {"desk-1", events.StatusCompleted}, {"desk-1", events.StatusRejected}, {"desk-2", events.StatusCompleted}} {
		r := newRequest(c.desk, "change-of-address", t0.Add(time.Duration(i)*time.Minute))
		if c.status == "" {
			changes = append(changes, submitted(r), routed(r, r.SubmittedAt.Add(time.Second), "tax"))
		} else {
			changes = append(changes, complete(r, r.SubmittedAt.Add(time.Hour), c.status, "tax")...)
		}
	}
	old := newRequest("desk-3", "change-of-address", t0.Add(-40*24*time.Hour))
	changes = append(changes, submitted(old))
	mustProject(t, s, changes...)

	open, err := s.OpenRequestsByDesk(t.Context(), 30*24*time.Hour, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"desk-1": 2}; !maps.Equal(open, want) {
		t.Errorf("open requests %v, want %v", open, want)
	}
}
