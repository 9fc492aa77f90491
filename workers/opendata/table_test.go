package opendata_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/opendata"
)

// histogramOf counts n completions that each took d.
func histogramOf(n int64, d time.Duration) *events.Histogram {
	h := new(events.Histogram)
	h[events.LatencyBucket(d)] = n
	return h
}

func TestPublish_SuppressesEveryFigureThatRestsOnFewerThanFiveCases(t *testing.T) {
	t.Parallel()
	june := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	type want struct {
		published                   bool
		submitted, completed        bool
		median, p90, withinSLAShare bool
	}
	for _, tc := range []struct {
		name  string
		tally events.Tally
		want  want
	}{
		{"a cell with four submissions and nothing else is left out",
			events.Tally{Submitted: 4}, want{}},
		{"a cell with no submission and four completions is left out",
			events.Tally{Completed: 4, WithinSLA: 4}, want{}},
		{"five submissions are published, four completions are not, nor their times or share",
			events.Tally{Submitted: 5, Completed: 4, WithinSLA: 2, Breached: 2},
			want{published: true, submitted: true}},
		{"five completions give a median but no 90th percentile",
			events.Tally{Completed: 5, WithinSLA: 5},
			want{published: true, completed: true, median: true}},
		{"ten completions give a 90th percentile",
			events.Tally{Submitted: 10, Completed: 10, WithinSLA: 5, Breached: 5},
			want{published: true, submitted: true, completed: true, median: true, p90: true, withinSLAShare: true}},
		{"a share that would give away four breaches is suppressed",
			events.Tally{Completed: 20, WithinSLA: 16, Breached: 4},
			want{published: true, completed: true, median: true, p90: true}},
		{"a share that would give away four completions within the service level is suppressed",
			events.Tally{Completed: 20, WithinSLA: 4, Breached: 16},
			want{published: true, completed: true, median: true, p90: true}},
		{"a share of one, which says no completion was late, is suppressed like a zero count",
			events.Tally{Completed: 20, WithinSLA: 20},
			want{published: true, completed: true, median: true, p90: true}},
		{"zero submissions count as a small count",
			events.Tally{Submitted: 0, Completed: 6, WithinSLA: 6},
			want{published: true, completed: true, median: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.tally.Key = "change-of-address"
			r, ok := opendata.Publish(june, "lisboa", tc.tally, histogramOf(tc.tally.Completed, time.Hour))
			if ok != tc.want.published {
				t.Fatalf("published = %v, want %v (%+v)", ok, tc.want.published, r)
			}
			if !ok {
				return
			}
			if r.Month != "2026-06" || r.Municipality != "lisboa" || r.ServiceCode != "change-of-address" {
				t.Errorf("cell = %s %s %s, want 2026-06 lisboa change-of-address", r.Month, r.Municipality, r.ServiceCode)
			}
			for _, f := range []struct {
				name string
				got  bool
				want bool
			}{
				{"submitted", r.Submitted != nil, tc.want.submitted},
				{"completed", r.Completed != nil, tc.want.completed},
				{"median", r.MedianHours != nil, tc.want.median},
				{"p90", r.P90Hours != nil, tc.want.p90},
				{"within_service_level_share", r.WithinServiceLevelShare != nil, tc.want.withinSLAShare},
			} {
				if f.got != f.want {
					t.Errorf("%s published = %v, want %v (%+v)", f.name, f.got, f.want, r)
				}
			}
			if r.Submitted != nil && *r.Submitted != tc.tally.Submitted {
				t.Errorf("submitted = %d, want %d", *r.Submitted, tc.tally.Submitted)
			}
			if r.Completed != nil && *r.Completed != tc.tally.Completed {
				t.Errorf("completed = %d, want %d", *r.Completed, tc.tally.Completed)
			}
		})
	}
}

func TestPublish_GivesTimesInHoursToTwoSignificantDigitsAndTheShareToThreeDecimals(t *testing.T) {
	t.Parallel()
	h := new(events.Histogram)
	// Seven completions after about 10 minutes, three after about 5 hours.
	h[events.LatencyBucket(10*time.Minute)] = 7
	h[events.LatencyBucket(5*time.Hour)] = 3
	r, ok := opendata.Publish(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), "porto",
		events.Tally{Key: "tax-id-certificate", Completed: 10, WithinSLA: 7, Breached: 6}, h)
	if !ok || r.MedianHours == nil || r.P90Hours == nil || r.WithinServiceLevelShare == nil {
		t.Fatalf("row = %+v, want every figure", r)
	}
	if want := roundTo2(h.Quantile(0.5).Hours()); *r.MedianHours != want {
		t.Errorf("median = %v h, want %v", *r.MedianHours, want)
	}
	if m := *r.MedianHours * 60; m < 10/1.42 || m > 10*1.42 {
		t.Errorf("median = %v min, want about 10 (within the bucket's √2)", m)
	}
	if p := *r.P90Hours; p < 5/1.42 || p > 5*1.42 {
		t.Errorf("p90 = %v h, want about 5 (within the bucket's √2)", p)
	}
	if got, want := *r.WithinServiceLevelShare, 0.538; got != want {
		t.Errorf("share = %v, want %v (7 of 13, to three decimals)", got, want)
	}
}

// roundTo2 rounds x to two significant digits.
func roundTo2(x float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 2, 64), 64)
	return r
}
