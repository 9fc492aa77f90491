package workers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// DispatcherConfig configures a Dispatcher.
type DispatcherConfig struct {
	// JetStream the dispatcher consumes from and publishes to. Required.
	JetStream jetstream.JetStream
	// Adapters by agency code: the dispatcher consumes the work queue of
	// each agency listed here. Required, at least one.
	Adapters map[string]Adapter
	// Concurrency is how many work items of one agency one process delivers
	// at once. Many: each waits on the agency and on JetStream, and what is
	// published at the same time shares one stored batch. Default 256.
	Concurrency int
	// ReportDispatchedAfter is how long a delivery may take before its
	// dispatched event is published on its own; the answer of an agency that
	// answers sooner carries it, in one message. Default 100 milliseconds.
	ReportDispatchedAfter time.Duration
	// RetryFor bounds the in-process retries of one delivery; after it the
	// work item goes back to the queue (NAK with delay) and is retried
	// later. Default 10 seconds.
	RetryFor time.Duration
	// KeepAlive is how often a slow delivery tells JetStream it is still in
	// progress. Default 10 seconds; keep it well under the ack wait.
	KeepAlive time.Duration
	// DeadLetters records work items that fail permanently before they
	// leave the queue. Optional: without it they are only marked failed.
	DeadLetters DeadLetters
	// Publisher stores what the dispatcher publishes; roles of one process that
	// share one have their messages stored in the same batches. Default: a
	// publisher of its own.
	Publisher *natsbus.Publisher
	// Metrics counts dispatched work items and the consumers' outcomes.
	// Optional.
	Metrics *Metrics
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Dispatcher consumes agencies' work queues and delivers each work item
// through the agency's adapter, publishing that it dispatched the work item
// and the agency's answer. It acknowledges a work item only
// once the answer is stored, so a crash in between re-delivers it to the
// adapter, which the agency deduplicates by the work item's ID.
type Dispatcher struct {
	cfg DispatcherConfig
	pub *natsbus.Publisher
}

// NewDispatcher validates cfg and returns a dispatcher.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.JetStream == nil || len(cfg.Adapters) == 0 {
		return nil, errors.New("new dispatcher: JetStream and at least one adapter are required")
	}
	for agency, a := range cfg.Adapters {
		if a == nil || !events.ValidToken(agency) {
			return nil, fmt.Errorf("new dispatcher: bad adapter for agency %q", agency)
		}
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 256)
	cfg.ReportDispatchedAfter = cmp.Or(cfg.ReportDispatchedAfter, 100*time.Millisecond)
	cfg.RetryFor = cmp.Or(cfg.RetryFor, 10*time.Second)
	cfg.KeepAlive = cmp.Or(cfg.KeepAlive, 10*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Dispatcher{cfg: cfg, pub: cmp.Or(cfg.Publisher, natsbus.NewPublisher(cfg.JetStream))}, nil
}

// Run delivers work items of every configured agency until ctx ends, then
// returns nil once in-flight deliveries are settled.
func (d *Dispatcher) Run(ctx context.Context) error {
	agencies := make([]string, 0, len(d.cfg.Adapters))
	for a := range d.cfg.Adapters {
		agencies = append(agencies, a)
	}
	slices.Sort(agencies)
	// Find every queue before consuming any, so that a missing one fails Run
	// without leaving the others' loops running.
	consumers := make([]jetstream.Consumer, len(agencies))
	for i, agency := range agencies {
		cons, err := d.cfg.JetStream.Consumer(ctx, events.WorkStream, events.AgencyConsumer(agency))
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		if err != nil {
			return fmt.Errorf("dispatcher: agency %s: %w", agency, err)
		}
		consumers[i] = cons
	}
	g, ctx := errgroup.WithContext(ctx)
	for i, agency := range agencies {
		cons := consumers[i]
		adapter := d.cfg.Adapters[agency]
		g.Go(func() error {
			return natsbus.Consume(ctx, cons, natsbus.Settings{
				Concurrency: d.cfg.Concurrency,
				KeepAlive:   d.cfg.KeepAlive,
				Logger:      d.cfg.Logger.With("role", "dispatcher", "agency", agency),
				DeadLetter:  d.deadLetterFor(agency),
				Settled:     d.cfg.Metrics.Settled(events.AgencyConsumer(agency)),
			}, func(ctx context.Context, msg jetstream.Msg) error {
				item, err := decodeWorkItem(msg.Data())
				if err != nil {
					return err
				}
				if item.Queue() != events.WorkSubject(agency) {
					return events.Permanent(fmt.Errorf("work item %s of %s does not belong on the queue of %s", item.ID, item.Agency, agency))
				}
				return d.Deliver(ctx, adapter, item)
			})
		})
	}
	return g.Wait()
}

// Deliver hands item to adapter, retrying transient failures with backoff
// for up to RetryFor, and publishes the outcome. The dispatched event is
// stored no later than the outcome: in the outcome's message (as its
// DispatchedAt) when the agency answers within ReportDispatchedAfter, or on
// its own once that has passed.
func (d *Dispatcher) Deliver(ctx context.Context, adapter Adapter, item *events.WorkItem) error {
	dispatched := statusEvent(item, events.StatusDispatched, "")
	type answer struct {
		receipt Receipt
		err     error
	}
	answered := make(chan answer, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				answered <- answer{err: natsbus.PanicError(p)}
			}
		}()
		r, err := d.call(ctx, adapter, item)
		answered <- answer{r, err}
	}()
	// pending is the dispatched event while it has not been published.
	var pending []events.StatusEvent
	timer := time.NewTimer(d.cfg.ReportDispatchedAfter)
	var a answer
	select {
	case a = <-answered:
		timer.Stop()
		pending = []events.StatusEvent{dispatched}
	case <-timer.C:
		err := d.publish(ctx, item, dispatched)
		a = <-answered
		if err != nil {
			return err
		}
	}
	if a.err != nil {
		// The attempt shows in the timeline even when it must be retried.
		if err := d.publish(ctx, item, pending...); err != nil {
			return err
		}
		return fmt.Errorf("deliver work item %s: %w", item.ID, a.err)
	}
	switch a.receipt.Status {
	case events.StatusAccepted, events.StatusInProgress, events.StatusCompleted, events.StatusRejected:
	default:
		if err := d.publish(ctx, item, pending...); err != nil {
			return err
		}
		return events.Permanent(fmt.Errorf("deliver work item %s: adapter answered with status %q", item.ID, a.receipt.Status))
	}
	outcome := statusEvent(item, a.receipt.Status, a.receipt.Note)
	if len(pending) > 0 {
		// One message carries both: the answer, and when it was dispatched.
		outcome.DispatchedAt = dispatched.At
	}
	return d.publish(ctx, item, outcome)
}

// call delivers item, retrying transient failures with backoff for up to
// RetryFor.
func (d *Dispatcher) call(ctx context.Context, adapter Adapter, item *events.WorkItem) (Receipt, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxElapsedTime = d.cfg.RetryFor
	return backoff.RetryWithData(func() (Receipt, error) {
		r, err := adapter.Deliver(ctx, *item)
		if events.IsPermanent(err) {
			return r, backoff.Permanent(err)
		}
		return r, err
	}, backoff.WithContext(b, ctx))
}

// publish stores evs of item together, in order.
func (d *Dispatcher) publish(ctx context.Context, item *events.WorkItem, evs ...events.StatusEvent) error {
	if len(evs) == 0 {
		return nil
	}
	outs := make([]natsbus.Outgoing, len(evs))
	for i, ev := range evs {
		outs[i] = natsbus.Outgoing{Subject: events.StatusSubject(events.SourceOf(&ev)), ID: ev.ID, Value: ev}
	}
	if err := d.pub.PublishAll(ctx, outs); err != nil {
		return fmt.Errorf("report %s of work item %s: %w", evs[len(evs)-1].Status, item.ID, err)
	}
	for _, ev := range evs {
		if !ev.Practice && (ev.Status == events.StatusDispatched || !ev.DispatchedAt.IsZero()) {
			d.cfg.Metrics.wasDispatched(item.Agency)
		}
	}
	return nil
}

func (d *Dispatcher) publishStatus(ctx context.Context, item *events.WorkItem, status events.Status, note string) error {
	return d.publish(ctx, item, statusEvent(item, status, note))
}

// deadLetterFor returns the hook that records a message of agency's queue
// that cannot be delivered, and marks the work item failed, with the reason
// in its note, when it is the agency's own.
func (d *Dispatcher) deadLetterFor(agency string) func(context.Context, jetstream.Msg, error) error {
	return func(ctx context.Context, msg jetstream.Msg, reason error) error {
		dl := deadLetterOf(msg, events.ReasonPermanent, reason)
		item, err := decodeWorkItem(msg.Data())
		if err == nil {
			dl.RequestID, dl.WorkItemID, dl.Agency = item.RequestID, item.ID, queueOwner(item)
		} else {
			dl.Agency = agency
		}
		if err := record(ctx, d.cfg.DeadLetters, dl); err != nil {
			return err
		}
		if err != nil || item.Queue() != events.WorkSubject(agency) {
			d.cfg.Logger.Error("dispatcher: dead-lettered a message that is not a work item of this queue",
				"agency", agency, "subject", msg.Subject(), "reason", reason.Error())
			return nil
		}
		return d.publishStatus(ctx, item, events.StatusFailed, reason.Error())
	}
}

// queueOwner is whose queue item travels on: its agency's, or the practice
// agency's for a work item made in training mode, whose dead letter is
// never counted or listed as its agency's.
func queueOwner(item *events.WorkItem) string {
	if item.Practice != nil {
		return events.SourcePractice
	}
	return item.Agency
}

func decodeWorkItem(data []byte) (*events.WorkItem, error) {
	var item events.WorkItem
	if err := json.Unmarshal(data, &item); err != nil {
		return nil, events.Permanent(fmt.Errorf("decode work item: %w", err))
	}
	if item.Schema != events.SchemaWorkItem || item.ID == "" || item.RequestID == "" || item.Agency == "" {
		return nil, events.Permanent(fmt.Errorf("decode work item: unexpected schema %q or missing ids", item.Schema))
	}
	// Nor could its dead letter be recorded by IDs Postgres refuses.
	if err := item.CheckText(); err != nil {
		return nil, events.Permanent(fmt.Errorf("decode work item %q: %w", item.ID, err))
	}
	return &item, nil
}

// statusEvent is the event that moves item to status in its round.
func statusEvent(item *events.WorkItem, status events.Status, note string) events.StatusEvent {
	ev := events.StatusEvent{
		Schema:    events.SchemaStatus,
		ID:        events.RoundEventID(item.RequestID, item.Agency, status, item.Round),
		RequestID: item.RequestID,
		Agency:    item.Agency,
		Status:    status,
		At:        time.Now().UTC(),
		Actor:     "agency:" + item.Agency,
		Note:      events.CleanNote(note),
		Round:     item.Round,
		Practice:  item.Practice != nil,
	}
	if item.Practice != nil {
		ev.Actor = "agency:" + events.SourcePractice
	}
	if status == events.StatusDispatched || status == events.StatusFailed {
		ev.Actor = events.ActorDispatcher
	}
	return ev
}
