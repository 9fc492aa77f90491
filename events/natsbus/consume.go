package natsbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spotflow/spotflow/events"
)

// Handler handles one message. nil means ack; an error marked with
// events.Permanent means the message can never succeed (it is dead-lettered
// and terminated); an error wrapping events.ErrUnavailable is an outage
// (NAK with a short delay, and the loop pauses); any other error is
// transient (NAK with a growing delay). A handler that panics on a message
// has failed permanently on it.
type Handler func(ctx context.Context, msg jetstream.Msg) error

// BatchHandler handles several messages at once and returns one error per
// message, in order, with the same meaning as Handler's. When it panics on a
// batch, the batch is handled again one message at a time, so that the
// panic is held against the message that causes it alone, as with Handler.
type BatchHandler func(ctx context.Context, msgs []jetstream.Msg) []error

// Outcome is how a consume loop settled a message: what it told JetStream.
type Outcome string

// The outcomes of a message; their values are the metrics' labels.
const (
	// Acked: handled; acknowledged.
	Acked Outcome = "ack"
	// Retried: failed for now; NAK'd with a delay that grows with its
	// deliveries, or the one it asked for (RetryIn, Retry-After).
	Retried Outcome = "retry"
	// Outage: failed because something it needs is down (or its dead
	// letter could not be recorded); NAK'd with Settings.OutageRetry, and
	// the loop pauses as long before fetching again.
	Outage Outcome = "outage"
	// DeadLettered: failed permanently; recorded as a dead letter, then
	// terminated.
	DeadLettered Outcome = "dead_letter"
)

// Settings tune a consume loop. Zero values take the documented defaults.
type Settings struct {
	// Concurrency is how many messages a Handler, or how many batches a
	// BatchHandler, works on at once. Default 1.
	Concurrency int
	// MaxBatch caps how many messages a BatchHandler gets at once: it gets
	// whatever has arrived, up to this many. Default 500.
	MaxBatch int
	// Linger lets a small batch wait for company: when what has arrived
	// makes fewer than LingerBelow messages, the batch waits up to Linger
	// after its first message for more, so that at moderate load a batch's
	// fixed costs (a commit, an fsync) are shared rather than paid by a
	// message or two; a full batch never waits. Zero: never wait.
	// ConsumeBatches only.
	Linger time.Duration
	// LingerBelow is the size under which a batch lingers. Default 32.
	LingerBelow int
	// Key, when set, names what a message is about (for the projector, its
	// request), and ConsumeBatches keeps each key's messages in order: it
	// shares the keys out among its Concurrency handlers, so that one key's
	// messages are handled one batch after another, in the order they
	// arrived, while other keys' are handled alongside. A message then never
	// overtakes an earlier one of its key that is still in hand. Without it,
	// whichever handler is free takes the next batch. ConsumeBatches only.
	Key func(msg jetstream.Msg) string
	// KeepAlive, when set, tells the server every KeepAlive that a message is
	// still being worked on, so a slow call does not run past the ack wait.
	KeepAlive time.Duration
	// Retry gives the NAK delay after the given number of deliveries.
	// Default: 1s doubling to a 1 minute ceiling.
	Retry func(delivered uint64) time.Duration
	// DeadLetter records a message that failed permanently. It runs before
	// the message is terminated; if it fails, the message is NAK'd instead,
	// so nothing leaves the queue unrecorded. Default: log only.
	DeadLetter func(ctx context.Context, msg jetstream.Msg, reason error) error
	// Grace is how long in-flight messages may finish after the loop's
	// context ends. Default 10 seconds.
	Grace time.Duration
	// OutageRetry is the NAK delay of a message that failed because of an
	// outage (events.ErrUnavailable), and how long the loop then pauses
	// before fetching again, so that the backlog drains as soon as the
	// outage ends. Default 1 second.
	OutageRetry time.Duration
	// Settled, when set, is told how each message was settled, once, right
	// after it was: metrics count what the loop decided rather than work it
	// out again. It must not block.
	Settled func(msg jetstream.Msg, outcome Outcome)
	// Logger; default slog.Default().
	Logger *slog.Logger
}

func (s *Settings) fill() {
	s.Concurrency = cmp.Or(s.Concurrency, 1)
	s.MaxBatch = cmp.Or(s.MaxBatch, 500)
	s.LingerBelow = min(cmp.Or(s.LingerBelow, 32), s.MaxBatch)
	s.Grace = cmp.Or(s.Grace, 10*time.Second)
	s.OutageRetry = cmp.Or(s.OutageRetry, time.Second)
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Retry == nil {
		s.Retry = DefaultRetry
	}
}

// DefaultRetry waits one second after the first delivery and doubles up to a
// one-minute ceiling.
func DefaultRetry(delivered uint64) time.Duration {
	d := time.Second
	for i := uint64(1); i < delivered && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// Consume runs h on every message of cons, Concurrency at a time, until ctx
// ends; then it stops pulling, lets in-flight messages finish within Grace,
// and returns nil.
func Consume(ctx context.Context, cons jetstream.Consumer, s Settings, h Handler) error {
	s.fill()
	msgs := pull(ctx, cons, s.Concurrency*2, 0, s.Logger)
	work, cancel := graceful(ctx, s.Grace)
	defer cancel()
	var wg sync.WaitGroup
	for range s.Concurrency {
		wg.Go(func() {
			for msg := range msgs {
				if work.Err() != nil {
					// Past the grace period: release it untouched.
					s.settle(work, msg, work.Err())
					continue
				}
				if s.settle(work, msg, s.run(work, msg, h)) == Outage {
					pause(ctx, s.OutageRetry)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// ConsumeBatches runs h on batches of whatever messages have arrived,
// Concurrency batches at a time (see Settings.Key for the order they keep),
// until ctx ends; then it finishes the batches in hand within Grace and
// returns nil. A batch is gathered when a handler is free to take it, so it
// holds everything that arrived while the handlers were busy.
func ConsumeBatches(ctx context.Context, cons jetstream.Consumer, s Settings, h BatchHandler) error {
	s.fill()
	msgs := pull(ctx, cons, s.MaxBatch, s.MaxBatch, s.Logger)
	work, cancel := graceful(ctx, s.Grace)
	defer cancel()
	if s.Key == nil {
		s.batches(ctx, work, msgs, s.Concurrency, h)
		return nil
	}
	var wg sync.WaitGroup
	for _, lane := range s.lanes(msgs) {
		wg.Go(func() { s.batches(ctx, work, lane, 1, h) })
	}
	wg.Wait()
	return nil
}

// batches runs h on batches gathered from msgs, concurrency at a time,
// until msgs is closed and every batch is settled.
func (s *Settings) batches(ctx, work context.Context, msgs <-chan jetstream.Msg, concurrency int, h BatchHandler) {
	free := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for first := range msgs {
		free <- struct{}{}
		batch := s.gather(first, msgs)
		wg.Go(func() {
			defer func() { <-free }()
			errs := s.runBatch(work, batch, h)
			if ctx.Err() != nil {
				s.retrySoonWhileStopping(work, batch, errs, h)
			}
			outage := false
			for i, msg := range batch {
				outage = s.settle(work, msg, errs[i]) == Outage || outage
			}
			if outage {
				pause(ctx, s.OutageRetry)
			}
		})
	}
	wg.Wait()
}

// gather makes a batch of first and what else has arrived on msgs, up to
// MaxBatch; a batch under LingerBelow waits up to Linger after its first
// message for more.
func (s *Settings) gather(first jetstream.Msg, msgs <-chan jetstream.Msg) []jetstream.Msg {
	batch := make([]jetstream.Msg, 1, s.MaxBatch)
	batch[0] = first
	var deadline <-chan time.Time
	for len(batch) < s.MaxBatch {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
			continue
		default:
		}
		if s.Linger <= 0 || len(batch) >= s.LingerBelow {
			return batch
		}
		if deadline == nil {
			t := time.NewTimer(s.Linger)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
		case <-deadline:
			return batch
		}
	}
	return batch
}

// lanes shares the messages of msgs out by key among Concurrency channels,
// each buffering up to MaxBatch (what arrives while its handler is busy
// makes its next batch), and closes them once msgs is closed. A key always
// goes to the same channel.
func (s *Settings) lanes(msgs <-chan jetstream.Msg) []chan jetstream.Msg {
	lanes := make([]chan jetstream.Msg, s.Concurrency)
	for i := range lanes {
		lanes[i] = make(chan jetstream.Msg, s.MaxBatch)
	}
	go func() {
		defer func() {
			for _, lane := range lanes {
				close(lane)
			}
		}()
		for msg := range msgs {
			h := fnv.New64a()
			_, _ = h.Write([]byte(s.Key(msg))) // a hash.Hash never fails to write
			lanes[h.Sum64()%uint64(len(lanes))] <- msg
		}
	}()
	return lanes
}

// pullExpiry bounds each pull request. The server may deliver to an open
// request until it expires, so it also bounds how long a stopping loop keeps
// receiving.
const pullExpiry = time.Second

// pull feeds messages from cons into a channel, pulling up to batch at a
// time, until ctx ends; the channel holds up to buffer messages (for a batch
// handler, what arrives while it is busy makes its next batch) and closes
// once the last pull request has expired. Messages that arrive on that last request are handed over too,
// to be finished within the grace period: releasing them instead (NAK)
// would only have the server deliver them again to the same open request,
// and leave them pending if the server itself is stopping.
func pull(ctx context.Context, cons jetstream.Consumer, batch, buffer int, logger *slog.Logger) <-chan jetstream.Msg {
	out := make(chan jetstream.Msg, buffer)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			msgs, err := cons.Fetch(batch, jetstream.FetchMaxWait(pullExpiry))
			if err != nil {
				logger.Warn("consume: pull failed; retrying", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
				continue
			}
			for msg := range msgs.Messages() {
				out <- msg
			}
		}
	}()
	return out
}

// graceful returns a context that ends Grace after parent does, so handlers
// can finish what they hold when the loop is told to stop.
func graceful(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(ctx, func() { t.Stop() })
	})
	return ctx, func() { stop(); cancel() }
}

func (s *Settings) run(ctx context.Context, msg jetstream.Msg, h Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = PanicError(r)
		}
	}()
	if s.KeepAlive > 0 {
		done := make(chan struct{})
		defer close(done)
		go func() {
			t := time.NewTicker(s.KeepAlive)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					_ = msg.InProgress()
				case <-done:
					return
				}
			}
		}()
	}
	return h(ctx, msg)
}

// retrySoonWhileStopping runs h again, in process, on the messages of
// batch that failed with RetryIn, after the delay they asked for, until they
// succeed, fail otherwise, or ctx (the grace period) ends; it updates errs.
// A loop that is stopping pulls no more, so a message handed back for a
// quick retry would stay unacknowledged until the next start; most often
// what it waited for (its request, in a batch written at the same time) is
// stored by now.
func (s *Settings) retrySoonWhileStopping(ctx context.Context, batch []jetstream.Msg, errs []error, h BatchHandler) {
	for ctx.Err() == nil {
		var again []int
		var delay time.Duration
		for i, err := range errs {
			var in *retryInError
			if errors.As(err, &in) {
				again, delay = append(again, i), max(delay, in.delay)
			}
		}
		if len(again) == 0 {
			return
		}
		if pause(ctx, delay); ctx.Err() != nil {
			return
		}
		msgs := make([]jetstream.Msg, len(again))
		for j, i := range again {
			msgs[j] = batch[i]
		}
		for j, err := range s.runBatch(ctx, msgs, h) {
			errs[again[j]] = err
		}
	}
}

// runBatch runs h on msgs. If h panics on a batch of several messages, each
// is handled again alone, so that only the message that makes it panic fails
// for it; handlers are idempotent, so handling the others again is harmless.
func (s *Settings) runBatch(ctx context.Context, msgs []jetstream.Msg, h BatchHandler) []error {
	errs, r := runBatchOnce(ctx, msgs, h)
	if r == nil {
		return errs
	}
	if len(msgs) == 1 {
		return []error{PanicError(r)}
	}
	s.Logger.Error("batch handler panicked; handling the batch one message at a time", "messages", len(msgs), "panic", fmt.Sprint(r))
	errs = make([]error, len(msgs))
	for i, msg := range msgs {
		errs[i] = s.runBatch(ctx, []jetstream.Msg{msg}, h)[0]
	}
	return errs
}

// runBatchOnce runs h on msgs and returns its errors, or what it panicked
// with.
func runBatchOnce(ctx context.Context, msgs []jetstream.Msg, h BatchHandler) (errs []error, recovered any) {
	defer func() {
		if r := recover(); r != nil {
			errs, recovered = nil, r
		}
	}()
	errs = h(ctx, msgs)
	if len(errs) != len(msgs) {
		panic(fmt.Sprintf("natsbus: batch handler returned %d results for %d messages", len(errs), len(msgs)))
	}
	return errs, nil
}

// PanicError is the error of a handler that panicked on one message, given
// what recover returned: a fault that handling the message again would only
// repeat, so it is permanent. Work a handler hands to a goroutine of its own
// recovers a panic into this error too, so that a panic is classified the
// same way wherever it happens.
func PanicError(r any) error {
	return events.Permanent(fmt.Errorf("handler panicked: %v", r))
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// settle is the one place where a handler's outcome becomes an ack, a NAK
// with delay or a termination. It returns what it decided, and tells
// Settled.
func (s *Settings) settle(ctx context.Context, msg jetstream.Msg, err error) Outcome {
	o := s.decide(ctx, msg, err)
	if s.Settled != nil {
		s.Settled(msg, o)
	}
	return o
}

func (s *Settings) decide(ctx context.Context, msg jetstream.Msg, err error) Outcome {
	if err == nil {
		if aerr := msg.Ack(); aerr != nil {
			s.Logger.Warn("ack failed; the message will be redelivered", "subject", msg.Subject(), "err", aerr)
		}
		return Acked
	}
	if errors.Is(err, events.ErrUnavailable) {
		s.Logger.Debug("outage; will retry", "subject", msg.Subject(), "retry_in", s.OutageRetry, "err", err)
		_ = msg.NakWithDelay(s.OutageRetry)
		return Outage
	}
	var delivered uint64 = 1
	if meta, merr := msg.Metadata(); merr == nil {
		delivered = meta.NumDelivered
	}
	if events.IsPermanent(err) {
		if s.DeadLetter != nil {
			if dlErr := s.DeadLetter(ctx, msg, err); dlErr != nil {
				s.Logger.Error("dead letter not recorded; keeping the message", "subject", msg.Subject(), "err", dlErr)
				_ = msg.NakWithDelay(s.OutageRetry)
				return Outage
			}
		}
		s.Logger.Warn("message failed permanently", "subject", msg.Subject(), "reason", err.Error())
		_ = msg.TermWithReason(truncate(err.Error(), 200))
		return DeadLettered
	}
	var delay time.Duration
	var ra retryAfter
	var in *retryInError
	switch {
	case errors.As(err, &in):
		delay = in.delay
	case errors.As(err, &ra):
		delay = min(max(s.Retry(delivered), ra.RetryAfter()), maxRetryAfter)
	default:
		delay = s.Retry(delivered)
	}
	s.Logger.Info("message failed; will retry", "subject", msg.Subject(), "delivered", delivered, "retry_in", delay, "err", err)
	_ = msg.NakWithDelay(delay)
	return Retried
}

// RetryIn marks err as transient, to be retried after exactly d rather than
// along the growing schedule: for a failure expected to clear soon, such as
// an event that overtook its request.
func RetryIn(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &retryInError{delay: d, err: err}
}

type retryInError struct {
	delay time.Duration
	err   error
}

func (e *retryInError) Error() string { return e.err.Error() }
func (e *retryInError) Unwrap() error { return e.err }

// retryAfter is implemented by errors that say how long to wait before
// trying again, such as an agency's Retry-After.
type retryAfter interface{ RetryAfter() time.Duration }

// maxRetryAfter caps the wait an error may ask for.
const maxRetryAfter = 5 * time.Minute

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
