package workers

import (
	"testing"
	"time"
)

func TestUnknownRequestRetry_StartsSoonAndBacksOffToASecond(t *testing.T) {
	t.Parallel()
	for delivered, want := range map[uint64]time.Duration{
		0: 50 * time.Millisecond, 1: 50 * time.Millisecond, 2: 100 * time.Millisecond,
		3: 200 * time.Millisecond, 5: 800 * time.Millisecond, 6: time.Second, 100: time.Second,
	} {
		if got := unknownRequestRetry(delivered); got != want {
			t.Errorf("after %d deliveries: wait %v, want %v", delivered, got, want)
		}
	}
}
