package workers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
)

// counted is a count of open requests, as the store would give.
type counted map[string]int

func (c counted) OpenRequestsByDesk(context.Context, time.Duration, time.Time) (map[string]int, error) {
	return c, nil
}

func throttledFor(t *testing.T, err error) *events.Throttled {
	t.Helper()
	var th *events.Throttled
	if !errors.As(err, &th) {
		t.Fatalf("Admit = %v, want *events.Throttled", err)
	}
	return th
}

func TestDeskLimits_RefuseADeskOverItsRateAndNoOther(t *testing.T) {
	t.Parallel()
	l, err := workers.NewDeskLimits(workers.DeskLimitsConfig{Rate: 5, Burst: 5})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for i := range 5 {
		if err := l.Admit("noisy", now); err != nil {
			t.Fatalf("submission %d of the burst: %v", i+1, err)
		}
	}
	th := throttledFor(t, l.Admit("noisy", now))
	if th.Limit != events.LimitRate || th.RetryAfter != 200*time.Millisecond || th.RetryAfterSeconds() != 1 {
		t.Errorf("throttled %+v (Retry-After %d s), want the rate, 200ms, 1 s", th, th.RetryAfterSeconds())
	}
	if err := l.Admit("quiet", now); err != nil {
		t.Errorf("another desk was refused: %v", err)
	}
}

func TestDeskLimits_CapWhatADeskHasUnderWay(t *testing.T) {
	t.Parallel()
	store := counted{"busy": 9}
	l, err := workers.NewDeskLimits(workers.DeskLimitsConfig{MaxOpen: 10, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := l.Count(t.Context(), now); err != nil {
		t.Fatal(err)
	}
	if err := l.Admit("busy", now); err != nil {
		t.Fatalf("the tenth open request: %v", err)
	}
	l.Accepted("busy")
	if th := throttledFor(t, l.Admit("busy", now)); th.Limit != events.LimitOpen {
		t.Errorf("the eleventh: %+v, want the open-requests limit", th)
	}
	if err := l.Admit("other", now); err != nil {
		t.Errorf("another desk was refused: %v", err)
	}
	// Its requests end: the next count lets it in again.
	store["busy"] = 3
	if err := l.Count(t.Context(), now); err != nil {
		t.Fatal(err)
	}
	if err := l.Admit("busy", now); err != nil {
		t.Errorf("after its requests ended: %v", err)
	}
	if _, err := workers.NewDeskLimits(workers.DeskLimitsConfig{MaxOpen: 1}); err == nil {
		t.Error("a cap without a store to count with was accepted")
	}
}
