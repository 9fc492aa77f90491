package loadprofile_test

import (
	"encoding/json"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/schemas"
	"github.com/spotflow/spotflow/workers/loadprofile"
)

// TestNationalDay_PlansEveryRequestValidWithinTheDayAndPeaksMidMorning
// checks the plan the day's runs follow: the same plan for the same seed,
// every submission valid for its service and within the day, in time
// order, from every desk, with the morning peak busier than the start of
// the day and a change of address among the services.
func TestNationalDay_PlansEveryRequestValidWithinTheDayAndPeaksMidMorning(t *testing.T) {
	t.Parallel()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	day := loadprofile.NationalDay
	plan := day.Plan(c, 42)
	if len(plan) != day.Requests {
		t.Fatalf("%d submissions planned, want %d", len(plan), day.Requests)
	}
	again := day.Plan(c, 42)
	if string(again[100].Body) != string(plan[100].Body) || again[100].At != plan[100].At {
		t.Error("the same seed planned another day")
	}
	desks := make(map[int]bool)
	services := make(map[string]int)
	var tenths [10]int // submissions in each tenth of the day
	for i, s := range plan {
		if s.At < 0 || s.At > day.Length || (i > 0 && s.At < plan[i-1].At) {
			t.Fatalf("submission %d at %v: outside the day or out of order", i, s.At)
		}
		desks[s.Desk] = true
		services[s.Service]++
		tenths[min(int(10*s.At/day.Length), 9)]++
		if i%97 == 0 {
			var sub events.Submission
			if err := json.Unmarshal(s.Body, &sub); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Validate(&sub); err != nil {
				t.Errorf("submission %d (%s) is not valid: %v", i, s.Service, err)
			}
		}
	}
	if len(desks) < day.Desks*9/10 {
		t.Errorf("%d of %d desks submit", len(desks), day.Desks)
	}
	busiest := 0
	for i := range tenths {
		if tenths[i] > tenths[busiest] {
			busiest = i
		}
	}
	// The tenths of 09:36–10:42 and 10:42–11:48 hold the morning peak,
	// 13:00–14:06 the lunch dip, 14:06–15:12 the afternoon peak.
	if (busiest != 1 && busiest != 2) || 2*tenths[busiest] < 3*tenths[0] || tenths[5] < tenths[3]*3/2 || tenths[9] > tenths[5]/2 {
		t.Errorf("submissions by tenth of the day %v: want a morning peak half as busy again as the opening, an afternoon peak over lunch, a quiet evening", tenths)
	}
	if services["change-of-address"] == 0 || services["citizen-card-renewal"] < services["patent-application"]*5 {
		t.Errorf("service mix %v: want changes of address, and common services far more than rare ones", services)
	}
	if d := day.Municipality(day.Municipalities); d != day.Municipality(0) {
		t.Errorf("desk %d is in %s, want the first municipality again", day.Municipalities, d)
	}
}
