package workertest_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/spotflow/spotflow/workers/workertest"
)

func TestWaitFor_ReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	workertest.WaitFor(t, "the third call", func() error {
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n := calls.Load(); n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

func TestRun_StopsTheLoopWhenTheTestEnds(t *testing.T) {
	t.Parallel()
	stopped := make(chan struct{})
	t.Run("the loop's test", func(t *testing.T) {
		workertest.Run(t, "loop", func(ctx context.Context) error {
			<-ctx.Done()
			close(stopped)
			return nil
		})
	})
	select {
	case <-stopped:
	default:
		t.Error("the loop was still running after its test ended")
	}
}
