package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/spotflow/spotflow/events"
)

// groupCommit runs calls that arrive together as one batch, one statement
// and one commit for all of them: whatever arrives while a batch is in the
// database goes into the next, so a batch grows with load and a lone call
// is not held back. It is safe for concurrent use; its goroutine lives only
// while there is work.
type groupCommit[T, R any] struct {
	// run handles a batch and returns one result per item, or an error that
	// fails them all.
	run func(ctx context.Context, items []T) ([]R, error)
	// max caps a batch.
	max int
	// timeout bounds one batch; a batch runs on its own context, since it
	// serves many callers.
	timeout time.Duration

	mu      sync.Mutex
	pending []*groupCall[T, R]
	running bool
}

type groupCall[T, R any] struct {
	item T
	res  R
	err  error
	done chan struct{}
}

func newGroupCommit[T, R any](max int, run func(context.Context, []T) ([]R, error)) *groupCommit[T, R] {
	return &groupCommit[T, R]{run: run, max: max, timeout: 30 * time.Second}
}

// do adds item to the next batch and waits for its result. If ctx ends
// first, do returns ctx's error; the batch may still store the item.
func (g *groupCommit[T, R]) do(ctx context.Context, item T) (R, error) {
	c := &groupCall[T, R]{item: item, done: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if !g.running {
		g.running = true
		go g.loop()
	}
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		var zero R
		return zero, ctx.Err()
	}
}

func (g *groupCommit[T, R]) loop() {
	for {
		g.mu.Lock()
		n := min(len(g.pending), g.max)
		if n == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		calls := g.pending[:n:n]
		g.pending = append([]*groupCall[T, R](nil), g.pending[n:]...)
		g.mu.Unlock()

		items := make([]T, n)
		for i, c := range calls {
			items[i] = c.item
		}
		g.settle(calls, items)
	}
}

// settle runs a batch and hands each call its result. A batch the database
// refuses as a whole, short of an outage, is run again one item at a time,
// so that one bad item does not fail its neighbours.
func (g *groupCommit[T, R]) settle(calls []*groupCall[T, R], items []T) {
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	res, err := g.run(ctx, items)
	if err != nil && len(items) > 1 && ctx.Err() == nil && !errors.Is(classify(err), events.ErrUnavailable) {
		for i, c := range calls {
			g.settle([]*groupCall[T, R]{c}, items[i:i+1])
		}
		return
	}
	for i, c := range calls {
		if err != nil {
			c.err = err
		} else {
			c.res = res[i]
		}
		close(c.done)
	}
}
