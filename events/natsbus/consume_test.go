package natsbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// recorder notes what a consume loop did, safely across its goroutines.
type recorder struct {
	mu          sync.Mutex
	deliveries  []uint64 // NumDelivered of every message handed to the handler
	retries     []uint64 // arguments of every Retry call
	deadLetters []string // reasons given to the DeadLetter hook
	// queued is how many work-stream messages the DeadLetter hook saw, to
	// show that it runs before the message is terminated.
	queued []uint64
}

func (r *recorder) delivered(msg jetstream.Msg) uint64 {
	n := uint64(0)
	if meta, err := msg.Metadata(); err == nil {
		n = meta.NumDelivered
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deliveries = append(r.deliveries, n)
	return n
}

func (r *recorder) retry(delivered uint64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retries = append(r.retries, delivered)
	return 10 * time.Millisecond
}

func (r *recorder) snapshot() (deliveries, retries []uint64, deadLetters []string, queued []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.deliveries), slices.Clone(r.retries), slices.Clone(r.deadLetters), slices.Clone(r.queued)
}

// deadLetter returns a DeadLetter hook that records its calls and fails the
// first failures of them.
func (r *recorder) deadLetter(js jetstream.JetStream, failures int) func(context.Context, jetstream.Msg, error) error {
	return func(ctx context.Context, msg jetstream.Msg, reason error) error {
		var queued uint64
		if s, err := js.Stream(ctx, events.WorkStream); err == nil {
			if info, err := s.Info(ctx); err == nil {
				queued = info.State.Msgs
			}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.deadLetters = append(r.deadLetters, reason.Error())
		r.queued = append(r.queued, queued)
		if len(r.deadLetters) <= failures {
			return errors.New("dead-letter store unavailable")
		}
		return nil
	}
}

// terminations subscribes to the advisories JetStream publishes when a
// consumer terminates a message, and returns their reasons as they come.
func terminations(t *testing.T, js jetstream.JetStream, consumer string) <-chan string {
	t.Helper()
	out := make(chan string, 16)
	sub, err := js.Conn().Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."+events.WorkStream+"."+consumer, func(m *nats.Msg) {
		var adv struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(m.Data, &adv)
		out <- adv.Reason
	})
	if err != nil {
		t.Fatalf("subscribe to termination advisories: %v", err)
	}
	if err := js.Conn().Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return out
}

func TestConsume_SettlesEachMessageByItsOutcome(t *testing.T) {
	t.Parallel()

	t.Run("a nil error acks the message and it leaves the work queue", func(t *testing.T) {
		t.Parallel()
		js, cons := oneWorkItem(t)
		var rec recorder
		workertest.Run(t, "Consume", func(ctx context.Context) error {
			return natsbus.Consume(ctx, cons, natsbus.Settings{Retry: rec.retry, Logger: quiet},
				func(ctx context.Context, msg jetstream.Msg) error {
					rec.delivered(msg)
					return nil
				})
		})
		workertest.WaitFor(t, "the message to be acked", settled(t, js, cons, 0))
		deliveries, retries, _, _ := rec.snapshot()
		if !slices.Equal(deliveries, []uint64{1}) || len(retries) != 0 {
			t.Errorf("deliveries %v, retries %v; want one delivery and no retry", deliveries, retries)
		}
		if info := consumerInfo(t, cons); info.NumRedelivered != 0 || info.AckFloor.Stream != 1 {
			t.Errorf("redelivered %d, ack floor %d; want 0 and 1", info.NumRedelivered, info.AckFloor.Stream)
		}
	})

	t.Run("a transient error redelivers the message after the retry delay", func(t *testing.T) {
		t.Parallel()
		js, cons := oneWorkItem(t)
		var rec recorder
		workertest.Run(t, "Consume", func(ctx context.Context) error {
			return natsbus.Consume(ctx, cons, natsbus.Settings{Retry: rec.retry, Logger: quiet, DeadLetter: rec.deadLetter(js, 0)},
				func(ctx context.Context, msg jetstream.Msg) error {
					if rec.delivered(msg) < 3 {
						return errors.New("agency unreachable")
					}
					return nil
				})
		})
		workertest.WaitFor(t, "the third delivery to be acked", settled(t, js, cons, 0))
		deliveries, retries, deadLetters, _ := rec.snapshot()
		if !slices.Equal(deliveries, []uint64{1, 2, 3}) {
			t.Errorf("deliveries = %v, want [1 2 3]", deliveries)
		}
		if !slices.Equal(retries, []uint64{1, 2}) {
			t.Errorf("Retry called with %v, want [1 2]", retries)
		}
		if len(deadLetters) != 0 {
			t.Errorf("a transient failure was dead-lettered: %v", deadLetters)
		}
	})

	t.Run("a permanent error is dead-lettered once and the message terminated", func(t *testing.T) {
		t.Parallel()
		js := natstest.JetStream(t, "tax")
		cons := agencyConsumer(t, js, "tax")
		terminated := terminations(t, js, "agency-tax")
		publishWork(t, js, "tax", "w1")
		var rec recorder
		workertest.Run(t, "Consume", func(ctx context.Context) error {
			return natsbus.Consume(ctx, cons, natsbus.Settings{Retry: rec.retry, Logger: quiet, DeadLetter: rec.deadLetter(js, 0)},
				func(ctx context.Context, msg jetstream.Msg) error {
					rec.delivered(msg)
					return fmt.Errorf("handle: %w", events.Permanent(errors.New("malformed work item")))
				})
		})
		reason := receive(t, terminated, "the termination advisory")
		if !strings.Contains(reason, "malformed work item") {
			t.Errorf("termination reason = %q, want the handler's error", reason)
		}
		workertest.WaitFor(t, "the terminated message to leave the work queue", settled(t, js, cons, 0))
		deliveries, retries, deadLetters, queued := rec.snapshot()
		if !slices.Equal(deliveries, []uint64{1}) || len(retries) != 0 {
			t.Errorf("deliveries %v, retries %v; want one delivery and no retry", deliveries, retries)
		}
		if len(deadLetters) != 1 || deadLetters[0] != "handle: malformed work item" {
			t.Errorf("dead letters = %q, want one with the handler's error", deadLetters)
		}
		if !slices.Equal(queued, []uint64{1}) {
			t.Errorf("the dead-letter hook saw %v messages queued, want [1]: it must run before the message is terminated", queued)
		}
		if info := consumerInfo(t, cons); info.NumRedelivered != 0 {
			t.Errorf("a terminated message was redelivered %d times", info.NumRedelivered)
		}
	})

	t.Run("a failing dead-letter hook keeps the message for another try", func(t *testing.T) {
		t.Parallel()
		js := natstest.JetStream(t, "tax")
		cons := agencyConsumer(t, js, "tax")
		terminated := terminations(t, js, "agency-tax")
		publishWork(t, js, "tax", "w1")
		var rec recorder
		workertest.Run(t, "Consume", func(ctx context.Context) error {
			return natsbus.Consume(ctx, cons, natsbus.Settings{Retry: rec.retry, OutageRetry: 10 * time.Millisecond, Logger: quiet, DeadLetter: rec.deadLetter(js, 2)},
				func(ctx context.Context, msg jetstream.Msg) error {
					rec.delivered(msg)
					return events.Permanent(errors.New("refused by the agency"))
				})
		})
		receive(t, terminated, "the termination advisory")
		workertest.WaitFor(t, "the message to be terminated once recorded", settled(t, js, cons, 0))
		deliveries, retries, deadLetters, queued := rec.snapshot()
		if !slices.Equal(deliveries, []uint64{1, 2, 3}) {
			t.Errorf("deliveries = %v, want [1 2 3]: a message whose dead letter failed must be redelivered", deliveries)
		}
		// A dead letter that cannot be recorded is an outage (the store is
		// down): the message comes back after OutageRetry, not the schedule.
		if len(retries) != 0 {
			t.Errorf("Retry called with %v, want no call", retries)
		}
		if len(deadLetters) != 3 || !slices.Equal(queued, []uint64{1, 1, 1}) {
			t.Errorf("dead-letter hook calls %d seeing %v queued, want 3 seeing the message each time", len(deadLetters), queued)
		}
	})

	t.Run("a panicking handler is dead-lettered like a permanent failure", func(t *testing.T) {
		t.Parallel()
		js, cons := oneWorkItem(t)
		var rec recorder
		workertest.Run(t, "Consume", func(ctx context.Context) error {
			return natsbus.Consume(ctx, cons, natsbus.Settings{Retry: rec.retry, Logger: quiet, DeadLetter: rec.deadLetter(js, 0)},
				func(ctx context.Context, msg jetstream.Msg) error {
					rec.delivered(msg)
					panic("nil map")
				})
		})
		workertest.WaitFor(t, "the message to be terminated", settled(t, js, cons, 0))
		_, _, deadLetters, _ := rec.snapshot()
		if len(deadLetters) != 1 || !strings.Contains(deadLetters[0], "panicked: nil map") {
			t.Errorf("dead letters = %q, want one naming the panic", deadLetters)
		}
	})
}

func TestConsume_KeepsSlowMessagesAlive(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ns := natstest.Server(t)
	nc, js, err := natsbus.Connect(ns.ClientURL(), t.Name(), natsbus.Credential{}, quiet)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	if err := natsbus.Provision(ctx, js, natsbus.Topology{Agencies: []string{"tax"}, AckWait: 300 * time.Millisecond}); err != nil {
		t.Fatalf("provision: %v", err)
	}
	cons := agencyConsumer(t, js, "tax")
	publishWork(t, js, "tax", "w1")
	var rec recorder
	workertest.Run(t, "Consume", func(ctx context.Context) error {
		return natsbus.Consume(ctx, cons, natsbus.Settings{Concurrency: 2, KeepAlive: 50 * time.Millisecond, Retry: rec.retry, Logger: quiet},
			func(ctx context.Context, msg jetstream.Msg) error {
				rec.delivered(msg)
				// Four ack waits: without in-progress signals the server
				// would redeliver meanwhile.
				select {
				case <-time.After(1200 * time.Millisecond):
				case <-ctx.Done():
				}
				return nil
			})
	})
	workertest.WaitFor(t, "the slow message to be acked", settled(t, js, cons, 0))
	deliveries, _, _, _ := rec.snapshot()
	if !slices.Equal(deliveries, []uint64{1}) {
		t.Errorf("deliveries = %v, want [1]: the slow message was redelivered while in progress", deliveries)
	}
}

func TestConsumeBatches_AcksEachMessageByItsOwnResult(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t, "tax")
	cons := agencyConsumer(t, js, "tax")
	for i := 1; i <= 7; i++ {
		publishWork(t, js, "tax", fmt.Sprintf("w%d", i))
	}
	var (
		mu      sync.Mutex
		batches [][]string
		seen    = map[string]int{}
	)
	var rec recorder
	workertest.Run(t, "ConsumeBatches", func(ctx context.Context) error {
		return natsbus.ConsumeBatches(ctx, cons, natsbus.Settings{MaxBatch: 3, Retry: fastRetry, Logger: quiet, DeadLetter: rec.deadLetter(js, 0)},
			func(ctx context.Context, msgs []jetstream.Msg) []error {
				mu.Lock()
				defer mu.Unlock()
				ids := make([]string, len(msgs))
				errs := make([]error, len(msgs))
				for i, msg := range msgs {
					var body map[string]string
					_ = json.Unmarshal(msg.Data(), &body)
					ids[i] = body["id"]
					seen[ids[i]]++
					switch {
					case ids[i] == "w3" && seen["w3"] == 1:
						errs[i] = errors.New("database busy")
					case ids[i] == "w5":
						errs[i] = events.Permanent(errors.New("not a status event"))
					}
				}
				batches = append(batches, ids)
				return errs
			})
	})
	workertest.WaitFor(t, "every message to be settled", settled(t, js, cons, 0))

	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, b := range batches {
		if len(b) == 0 || len(b) > 3 {
			t.Errorf("a batch of %d messages, want 1 to MaxBatch (3): %v", len(b), batches)
		}
		total += len(b)
	}
	if total != 8 {
		t.Errorf("handed over %d messages in %v, want 8 (seven, and w3 again)", total, batches)
	}
	for i := 1; i <= 7; i++ {
		id := fmt.Sprintf("w%d", i)
		want := 1
		if id == "w3" {
			want = 2
		}
		if seen[id] != want {
			t.Errorf("%s handed over %d times, want %d", id, seen[id], want)
		}
	}
	if _, _, deadLetters, _ := rec.snapshot(); len(deadLetters) != 1 || !strings.Contains(deadLetters[0], "not a status event") {
		t.Errorf("dead letters = %q, want only w5's", deadLetters)
	}
}

// TestConsumeBatches_LetsASmallBatchWaitForCompany publishes one message,
// then two more a moment later: with Linger, the first waits for them and
// the three make one batch, which goes as soon as it reaches LingerBelow;
// a lone message later goes alone once Linger is over.
func TestConsumeBatches_LetsASmallBatchWaitForCompany(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t, "tax")
	cons := agencyConsumer(t, js, "tax")
	var (
		mu      sync.Mutex
		batches [][]string
	)
	got := make(chan struct{}, 10)
	workertest.Run(t, "ConsumeBatches", func(ctx context.Context) error {
		return natsbus.ConsumeBatches(ctx, cons, natsbus.Settings{MaxBatch: 10, Linger: 30 * time.Second, LingerBelow: 3, Retry: fastRetry, Logger: quiet},
			func(ctx context.Context, msgs []jetstream.Msg) []error {
				ids := make([]string, len(msgs))
				for i, msg := range msgs {
					var body map[string]string
					_ = json.Unmarshal(msg.Data(), &body)
					ids[i] = body["id"]
				}
				mu.Lock()
				batches = append(batches, ids)
				mu.Unlock()
				got <- struct{}{}
				return make([]error, len(msgs))
			})
	})
	publishWork(t, js, "tax", "w1")
	// Time enough for w1 to reach the handler, were it not waiting.
	time.Sleep(200 * time.Millisecond)
	publishWork(t, js, "tax", "w2")
	publishWork(t, js, "tax", "w3")
	receive(t, got, "the first batch")
	mu.Lock()
	first := slices.Clone(batches)
	mu.Unlock()
	if len(first) != 1 || !slices.Equal(first[0], []string{"w1", "w2", "w3"}) {
		t.Errorf("batches %q, want w1 to wait for w2 and w3 and go with them at three", first)
	}
}

func TestConsumeBatches_HoldsConcurrencyBatchesAtOnce(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t, "tax")
	cons := agencyConsumer(t, js, "tax")
	for i := 1; i <= 6; i++ {
		publishWork(t, js, "tax", fmt.Sprintf("w%d", i))
	}
	// Each handler waits until another batch is in hand too, or gives up:
	// with one batch at a time, none would ever see a second.
	var (
		mu             sync.Mutex
		inHand, most   int
		handled        int
		bothInHand     = make(chan struct{})
		bothInHandOnce sync.Once
	)
	workertest.Run(t, "ConsumeBatches", func(ctx context.Context) error {
		return natsbus.ConsumeBatches(ctx, cons, natsbus.Settings{MaxBatch: 2, Concurrency: 2, Logger: quiet},
			func(ctx context.Context, msgs []jetstream.Msg) []error {
				mu.Lock()
				inHand++
				most = max(most, inHand)
				if inHand == 2 {
					bothInHandOnce.Do(func() { close(bothInHand) })
				}
				mu.Unlock()
				select {
				case <-bothInHand:
				case <-time.After(5 * time.Second):
				}
				mu.Lock()
				inHand--
				handled += len(msgs)
				mu.Unlock()
				return make([]error, len(msgs))
			})
	})
	workertest.WaitFor(t, "every message to be settled", settled(t, js, cons, 0))
	mu.Lock()
	defer mu.Unlock()
	if most != 2 {
		t.Errorf("at most %d batches were in hand at once, want 2 (Concurrency)", most)
	}
	if handled != 6 {
		t.Errorf("handled %d messages, want 6", handled)
	}
}

func TestConsumeBatches_HandlesAKeysMessagesInTheOrderTheyArrived(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t, "tax")
	cons := agencyConsumer(t, js, "tax")
	idOf := func(msg jetstream.Msg) string {
		var body map[string]string
		_ = json.Unmarshal(msg.Data(), &body)
		return body["id"]
	}
	// A message's key is the first letter of its ID. The batch of a1 is held
	// until a message of another key has been handled alongside it (b's and
	// d's share of the keys is not a's), or gives up.
	var (
		mu            sync.Mutex
		handled       []string
		held          = make(chan struct{})
		alongside     = make(chan struct{})
		alongsideOnce sync.Once
	)
	workertest.Run(t, "ConsumeBatches", func(ctx context.Context) error {
		return natsbus.ConsumeBatches(ctx, cons, natsbus.Settings{
			MaxBatch: 2, Concurrency: 2, Logger: quiet,
			Key: func(msg jetstream.Msg) string { return idOf(msg)[:1] },
		}, func(ctx context.Context, msgs []jetstream.Msg) []error {
			ids := make([]string, len(msgs))
			for i, msg := range msgs {
				ids[i] = idOf(msg)
			}
			if slices.Contains(ids, "a1") {
				close(held)
				select {
				case <-alongside:
				case <-time.After(5 * time.Second):
				}
			} else if !slices.ContainsFunc(ids, func(id string) bool { return strings.HasPrefix(id, "a") }) {
				alongsideOnce.Do(func() { close(alongside) })
			}
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, ids...)
			return make([]error, len(msgs))
		})
	})
	publishWork(t, js, "tax", "a1")
	receive(t, held, "a1's batch to be in hand")
	for _, id := range []string{"a2", "b1", "a3", "c1", "d1"} {
		publishWork(t, js, "tax", id)
	}
	workertest.WaitFor(t, "every message to be settled", settled(t, js, cons, 0))

	mu.Lock()
	defer mu.Unlock()
	other := slices.IndexFunc(handled, func(id string) bool { return !strings.HasPrefix(id, "a") })
	if other < 0 || other > slices.Index(handled, "a1") {
		t.Errorf("handled %v; want another key's message handled while a1's batch was held", handled)
	}
	var a []string
	for _, id := range handled {
		if strings.HasPrefix(id, "a") {
			a = append(a, id)
		}
	}
	if !slices.Equal(a, []string{"a1", "a2", "a3"}) {
		t.Errorf("handled a's messages as %v (all: %v), want a1, a2, a3: none before a1's batch was done", a, handled)
	}
	if len(handled) != 6 {
		t.Errorf("handled %v, want six messages", handled)
	}
}

func TestConsume_ReturnsNilOnceInFlightMessagesFinish(t *testing.T) {
	t.Parallel()

	t.Run("a message in hand when the context ends is finished and acked", func(t *testing.T) {
		t.Parallel()
		js, cons := oneWorkItem(t)
		started, release := make(chan struct{}), make(chan struct{})
		var handlerCtxErr error
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- natsbus.Consume(ctx, cons, natsbus.Settings{Retry: fastRetry, Logger: quiet},
				func(hctx context.Context, msg jetstream.Msg) error {
					close(started)
					<-release
					handlerCtxErr = hctx.Err()
					return nil
				})
		}()
		receive(t, started, "the handler to start")
		cancel()
		close(release)
		if err := receive(t, done, "Consume to return"); err != nil {
			t.Errorf("Consume returned %v, want nil", err)
		}
		if handlerCtxErr != nil {
			t.Errorf("the handler's context ended within the grace period: %v", handlerCtxErr)
		}
		workertest.WaitFor(t, "the finished message to be acked", settled(t, js, cons, 0))
	})

	t.Run("a message still in hand after the grace period stays queued", func(t *testing.T) {
		t.Parallel()
		js, cons := oneWorkItem(t)
		started := make(chan struct{})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- natsbus.Consume(ctx, cons, natsbus.Settings{Grace: 50 * time.Millisecond, Retry: fastRetry, Logger: quiet},
				func(hctx context.Context, msg jetstream.Msg) error {
					close(started)
					<-hctx.Done()
					return hctx.Err()
				})
		}()
		receive(t, started, "the handler to start")
		cancel()
		if err := receive(t, done, "Consume to return"); err != nil {
			t.Errorf("Consume returned %v, want nil", err)
		}
		if n := natstest.StreamMessages(t, js, events.WorkStream); n != 1 {
			t.Errorf("the work stream holds %d messages, want the unfinished one kept", n)
		}
	})

	t.Run("a batch's message to be retried soon is retried in hand, not left unacknowledged", func(t *testing.T) {
		t.Parallel()
		js, cons := oneWorkItem(t)
		first := make(chan struct{})
		var calls atomic.Int32
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- natsbus.ConsumeBatches(ctx, cons, natsbus.Settings{Retry: fastRetry, Logger: quiet},
				func(hctx context.Context, msgs []jetstream.Msg) []error {
					errs := make([]error, len(msgs))
					if calls.Add(1) == 1 {
						cancel()
						close(first)
						// Longer than a pull request lives: handed back, it
						// would come back to no one.
						errs[0] = natsbus.RetryIn(1500*time.Millisecond, errors.New("overtook its request"))
					}
					return errs
				})
		}()
		receive(t, first, "the first handling")
		if err := receive(t, done, "ConsumeBatches to return"); err != nil {
			t.Errorf("ConsumeBatches returned %v, want nil", err)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("handled %d times, want twice: once, then again in hand", n)
		}
		workertest.WaitFor(t, "the message to be acked", settled(t, js, cons, 0))
	})

	t.Run("an idle batch loop returns nil when its context ends", func(t *testing.T) {
		t.Parallel()
		js := natstest.JetStream(t, "tax")
		cons := agencyConsumer(t, js, "tax")
		workertest.Run(t, "ConsumeBatches", func(ctx context.Context) error {
			return natsbus.ConsumeBatches(ctx, cons, natsbus.Settings{Logger: quiet},
				func(ctx context.Context, msgs []jetstream.Msg) []error { return make([]error, len(msgs)) })
		})
	})
}

func TestDefaultRetry_DoublesFromOneSecondToOneMinute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		delivered uint64
		want      time.Duration
	}{
		{0, time.Second},
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{6, 32 * time.Second},
		{7, time.Minute},
		{8, time.Minute},
		{1 << 40, time.Minute},
	}
	for _, tt := range tests {
		if got := natsbus.DefaultRetry(tt.delivered); got != tt.want {
			t.Errorf("DefaultRetry(%d) = %v, want %v", tt.delivered, got, tt.want)
		}
	}
}

// receive waits up to 20s for a value from ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("gave up after 20s waiting for %s", what)
	}
	panic("unreachable")
}

func TestConsume_RetriesOutagesPromptlyAndNeverDeadLettersThem(t *testing.T) {
	t.Parallel()
	js, cons := oneWorkItem(t)
	var rec recorder
	workertest.Run(t, "Consume", func(ctx context.Context) error {
		return natsbus.Consume(ctx, cons, natsbus.Settings{
			Retry: rec.retry, OutageRetry: 20 * time.Millisecond, Logger: quiet, DeadLetter: rec.deadLetter(js, 0),
		}, func(ctx context.Context, msg jetstream.Msg) error {
			if rec.delivered(msg) < 4 {
				return events.Unavailable(errors.New("dial tcp 127.0.0.1:5432: connection refused"))
			}
			return nil
		})
	})
	workertest.WaitFor(t, "the message to be acked once the outage ends", settled(t, js, cons, 0))
	deliveries, retries, deadLetters, _ := rec.snapshot()
	if !slices.Equal(deliveries, []uint64{1, 2, 3, 4}) {
		t.Errorf("deliveries = %v, want [1 2 3 4]", deliveries)
	}
	if len(retries) != 0 || len(deadLetters) != 0 {
		t.Errorf("an outage used the retry schedule %v or dead-lettered %v; want neither", retries, deadLetters)
	}
}

func TestConsume_RetryInOverridesTheSchedule(t *testing.T) {
	t.Parallel()
	js, cons := oneWorkItem(t)
	var rec recorder
	workertest.Run(t, "Consume", func(ctx context.Context) error {
		return natsbus.Consume(ctx, cons, natsbus.Settings{Retry: rec.retry, Logger: quiet},
			func(ctx context.Context, msg jetstream.Msg) error {
				if rec.delivered(msg) == 1 {
					return natsbus.RetryIn(10*time.Millisecond, errors.New("overtook its request"))
				}
				return nil
			})
	})
	workertest.WaitFor(t, "the message to be acked on its second delivery", settled(t, js, cons, 0))
	if _, retries, _, _ := rec.snapshot(); len(retries) != 0 {
		t.Errorf("Retry called with %v; RetryIn should have set the delay", retries)
	}
}

func TestConsume_TellsSettledWhatItDecided(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		// failingDeadLetters is how many dead-letter hook calls fail.
		failingDeadLetters int
		want               natsbus.Outcome
	}{
		{"a nil error is acked", nil, 0, natsbus.Acked},
		{"a transient error is retried", errors.New("agency unreachable"), 0, natsbus.Retried},
		{"an outage is an outage", events.Unavailable(errors.New("postgres down")), 0, natsbus.Outage},
		{"a permanent error is dead-lettered", events.Permanent(errors.New("malformed")), 0, natsbus.DeadLettered},
		{"a permanent error whose dead letter cannot be recorded is kept, as an outage", events.Permanent(errors.New("malformed")), 1, natsbus.Outage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			js, cons := oneWorkItem(t)
			var rec recorder
			outcomes := make(chan natsbus.Outcome, 16)
			workertest.Run(t, "Consume", func(ctx context.Context) error {
				return natsbus.Consume(ctx, cons, natsbus.Settings{
					Retry: rec.retry, OutageRetry: time.Hour, Logger: quiet, DeadLetter: rec.deadLetter(js, tc.failingDeadLetters),
					Settled: func(msg jetstream.Msg, o natsbus.Outcome) { outcomes <- o },
				}, func(ctx context.Context, msg jetstream.Msg) error {
					if rec.delivered(msg) > 1 {
						return nil
					}
					return tc.err
				})
			})
			if got := receive(t, outcomes, "the first outcome"); got != tc.want {
				t.Errorf("Settled told %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConsumeBatches_HoldsAPanicAgainstTheMessageThatCausesIt(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t, "tax")
	cons := agencyConsumer(t, js, "tax")
	for i := 1; i <= 4; i++ {
		publishWork(t, js, "tax", fmt.Sprintf("w%d", i))
	}
	var rec recorder
	var mu sync.Mutex
	outcomes := map[string]natsbus.Outcome{}
	id := func(msg jetstream.Msg) string {
		var body map[string]string
		_ = json.Unmarshal(msg.Data(), &body)
		return body["id"]
	}
	workertest.Run(t, "ConsumeBatches", func(ctx context.Context) error {
		return natsbus.ConsumeBatches(ctx, cons, natsbus.Settings{
			MaxBatch: 4, Retry: fastRetry, Logger: quiet, DeadLetter: rec.deadLetter(js, 0),
			Settled: func(msg jetstream.Msg, o natsbus.Outcome) {
				mu.Lock()
				defer mu.Unlock()
				outcomes[id(msg)] = o
			},
		}, func(ctx context.Context, msgs []jetstream.Msg) []error {
			for _, msg := range msgs {
				if id(msg) == "w3" {
					panic("index out of range")
				}
			}
			return make([]error, len(msgs))
		})
	})
	workertest.WaitFor(t, "every message to be settled", settled(t, js, cons, 0))
	mu.Lock()
	defer mu.Unlock()
	want := map[string]natsbus.Outcome{"w1": natsbus.Acked, "w2": natsbus.Acked, "w3": natsbus.DeadLettered, "w4": natsbus.Acked}
	if !maps.Equal(outcomes, want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}
	if _, _, deadLetters, _ := rec.snapshot(); len(deadLetters) != 1 || !strings.Contains(deadLetters[0], "panicked: index out of range") {
		t.Errorf("dead letters %q, want w3's alone, naming the panic", deadLetters)
	}
}
