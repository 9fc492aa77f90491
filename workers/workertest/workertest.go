// Package workertest helps test spotflow's long-running parts (consume
// loops, pipeline roles, whole processes): it runs one for the length of a
// test and waits, by polling, for what it should bring about. It imports
// nothing of spotflow's, so the tests of every package may use it.
package workertest

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// How long WaitFor waits by default, and how long Run gives a loop to
// return once its context ends.
const (
	Wait       = 20 * time.Second
	StopWithin = 30 * time.Second
)

// WaitFor polls cond until it returns nil, for up to Wait, and fails the
// test otherwise. cond returns an error describing what it sees while the
// awaited outcome does not hold yet; the failure message quotes the last.
func WaitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	WaitWithin(t, Wait, what, cond)
}

// WaitWithin is WaitFor with its own limit, for outcomes that take a whole
// system longer to reach.
func WaitWithin(t testing.TB, limit time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s: %v", limit, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Run runs loop in the background under a context that ends when the test
// does, then checks that loop returns nil within StopWithin, as every
// spotflow Run must on cancellation. The returned channel is closed when
// loop returns, so that a test can tell a loop that ended early; the test
// then fails with loop's error, if any.
func Run(t testing.TB, name string, loop func(ctx context.Context) error) (ended <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = loop(ctx)
	}()
	t.Cleanup(func() {
		early := ctx.Err() == nil && isClosed(done)
		cancel()
		select {
		case <-done:
			switch {
			case err != nil && early:
				t.Errorf("%s returned %v before its context ended", name, err)
			case err != nil:
				t.Errorf("%s returned %v after its context ended, want nil", name, err)
			}
		case <-time.After(StopWithin):
			t.Errorf("%s did not return within %s of its context ending", name, StopWithin)
		}
	})
	return done
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Log is a destination for a process's logs that a test reads while the
// process writes: safe for concurrent use. Its zero value is ready.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns what was written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
