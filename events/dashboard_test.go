package events

import (
	"testing"
	"time"
)

func TestLatencyBucket_HoldsEachTimeBetweenItsBounds(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 11 * time.Millisecond,
		time.Second, 90 * time.Minute, 240 * time.Hour, 30 * 24 * time.Hour} {
		b := LatencyBucket(d)
		if d > LatencyBucketUpper(b) {
			t.Errorf("%v in bucket %d, above its upper bound %v", d, b, LatencyBucketUpper(b))
		}
		if b > 0 && d <= LatencyBucketUpper(b-1) {
			t.Errorf("%v in bucket %d, not above the previous bound %v", d, b, LatencyBucketUpper(b-1))
		}
	}
	if b := LatencyBucket(10 * 365 * 24 * time.Hour); b != LatencyBuckets-1 {
		t.Errorf("ten years in bucket %d, want the last, %d", b, LatencyBuckets-1)
	}
}

func TestHistogram_QuantilesAreWithinTheirBucket(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h[LatencyBucket(time.Duration(i)*time.Second)]++
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Second}, {0.95, 950 * time.Second}, {0.99, 990 * time.Second}} {
		got := h.Quantile(tc.q)
		if got < tc.want*7/10 || got > tc.want*14/10 {
			t.Errorf("quantile %v = %v, want within a factor of √2 of %v", tc.q, got, tc.want)
		}
	}
	var empty Histogram
	if got := empty.Quantile(0.5); got != 0 {
		t.Errorf("median of nothing = %v, want 0", got)
	}
}

func TestRange_StartsAtTheFirstBucketOfItsGrain(t *testing.T) {
	now := time.Date(2026, 6, 10, 14, 35, 20, 0, time.UTC)
	for _, tc := range []struct {
		r    Range
		want time.Time
	}{
		{RangeHour, time.Date(2026, 6, 10, 13, 36, 0, 0, time.UTC)},
		{RangeDay, time.Date(2026, 6, 9, 15, 0, 0, 0, time.UTC)},
		{RangeWeek, time.Date(2026, 6, 4, 0, 0, 0, 0, time.UTC)},
		{RangeMonth, time.Date(2026, 5, 12, 0, 0, 0, 0, time.UTC)},
	} {
		if got := tc.r.Since(now); !got.Equal(tc.want) {
			t.Errorf("%s starts at %v, want %v", tc.r, got, tc.want)
		}
	}
}

func TestTally_SLAShareCountsOnlyCompletionsWithAnExpectedTime(t *testing.T) {
	if _, ok := (Tally{Completed: 3}).SLAShare(); ok {
		t.Error("a share without completions that have an SLA, want none")
	}
	if s, _ := (Tally{Completed: 4, WithinSLA: 3, Breached: 1}).SLAShare(); s != 0.75 {
		t.Errorf("share = %v, want 0.75", s)
	}
}
