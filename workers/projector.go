package workers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// Projection applies changes to the store that desks and dashboards read.
// Project returns one error per change (see workers/postgres.Store.Project);
// Accepted tells whether intake accepted a request, so that an event that
// overtook its request is waited for rather than taken for poison.
type Projection interface {
	Project(ctx context.Context, changes []events.Change) []error
	Accepted(ctx context.Context, requestID string) (bool, error)
}

// ProjectorConfig configures a Projector.
type ProjectorConfig struct {
	// JetStream the projector consumes from. Required.
	JetStream jetstream.JetStream
	// Store applies the changes. Required.
	Store Projection
	// MaxBatch caps how many events go into one transaction. Default 2000.
	MaxBatch int
	// Concurrency is how many batches one process applies at once, each in
	// its own transaction: one is written while the next is read, so the
	// database and the process work at the same time. A request's messages
	// all go to the same one of them, in the order they arrived, so that no
	// event is applied before an earlier one of its request. Default 2.
	Concurrency int
	// Linger is how long a small batch waits for more events before its
	// transaction (natsbus.Settings.Linger): at moderate load a request's
	// events, which follow one another within milliseconds, then share one
	// commit instead of paying one each. Default 10 ms; negative: none.
	Linger time.Duration
	// UnknownRequestFor is how long an event may name a request that
	// neither the projection nor intake knows before it counts as poison.
	// An event of a request intake accepted is retried every second until
	// its request is projected, however long that takes. Default 2 minutes.
	UnknownRequestFor time.Duration
	// DeadLetters records events that can never be applied. Optional.
	DeadLetters DeadLetters
	// Metrics counts batches, their lag and the consumer's outcomes.
	// Optional.
	Metrics *Metrics
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Projector records submitted requests and status events in Postgres, a
// batch per transaction, and acknowledges them only after the commit.
type Projector struct {
	cfg ProjectorConfig
}

// NewProjector validates cfg and returns a projector.
func NewProjector(cfg ProjectorConfig) (*Projector, error) {
	if cfg.JetStream == nil || cfg.Store == nil {
		return nil, errors.New("new projector: JetStream and Store are required")
	}
	cfg.MaxBatch = cmp.Or(cfg.MaxBatch, 2000)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 2)
	cfg.Linger = cmp.Or(cfg.Linger, 10*time.Millisecond)
	cfg.UnknownRequestFor = cmp.Or(cfg.UnknownRequestFor, 2*time.Minute)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Projector{cfg: cfg}, nil
}

// Run projects events until ctx ends, then returns nil once the batch in
// hand is settled.
func (p *Projector) Run(ctx context.Context) error {
	cons, err := p.cfg.JetStream.Consumer(ctx, events.EventsStream, events.ProjectorConsumer)
	if err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	return natsbus.ConsumeBatches(ctx, cons, natsbus.Settings{
		MaxBatch:    p.cfg.MaxBatch,
		Concurrency: p.cfg.Concurrency,
		Linger:      p.cfg.Linger,
		Key:         requestOf,
		Logger:      p.cfg.Logger.With("role", "projector"),
		DeadLetter:  p.deadLetter,
		Settled:     p.cfg.Metrics.Settled(events.ProjectorConsumer),
	}, p.cfg.Metrics.ProjectorBatches(p.handle))
}

// deadLetter records an event that can never be applied, and counts a
// refused one by the rule it broke.
func (p *Projector) deadLetter(ctx context.Context, msg jetstream.Msg, reason error) error {
	dl := deadLetterOf(msg, events.ReasonPermanent, reason)
	rule := events.RefusedRule(reason)
	if rule != "" {
		dl.Reason = events.ReasonRefused
	}
	var ev events.StatusEvent
	if events.IsRequestSubject(msg.Subject()) {
		if req, err := decodeRequest(msg.Data()); err == nil {
			dl.RequestID = req.ID
		}
	} else if json.Unmarshal(msg.Data(), &ev) == nil {
		dl.RequestID, dl.Agency = ev.RequestID, ev.Agency
	}
	if p.cfg.DeadLetters == nil {
		return nil
	}
	fresh, err := p.cfg.DeadLetters.RecordDeadLetter(ctx, dl)
	if err == nil && fresh && rule != "" {
		p.cfg.Metrics.StatusRefused(rule)
	}
	return err
}

// handle projects a batch of messages. A status message may stand for two
// events (events.StatusEvent.Split); it succeeds when both do.
func (p *Projector) handle(ctx context.Context, msgs []jetstream.Msg) []error {
	errs := make([]error, len(msgs))
	changes := make([]events.Change, 0, len(msgs))
	index := make([]int, 0, len(msgs)) // the message of each change
	for i, msg := range msgs {
		c, err := decodeChange(msg)
		if err != nil {
			errs[i] = err
			continue
		}
		if c.Event == nil {
			changes, index = append(changes, c), append(index, i)
			continue
		}
		for _, ev := range c.Event.Split() {
			changes, index = append(changes, events.Change{Event: &ev}), append(index, i)
		}
	}
	if len(changes) == 0 {
		return errs
	}
	unknown := make(map[int]string) // message → its request, not projected yet
	for j, err := range p.cfg.Store.Project(ctx, changes) {
		i := index[j]
		if errors.Is(err, events.ErrUnknownRequest) {
			unknown[i] = changes[j].RequestID()
		}
		errs[i] = cmp.Or(errs[i], err)
	}
	for i, requestID := range unknown {
		if errors.Is(errs[i], events.ErrUnknownRequest) {
			errs[i] = p.unknownRequest(ctx, msgs[i], requestID, errs[i])
		}
	}
	for i, err := range errs {
		if errors.Is(err, events.ErrRoundNotOpened) {
			errs[i] = p.unopenedRound(msgs[i], err)
		}
	}
	return errs
}

// unopenedRound decides about an event of a round the projection has not
// seen opened: the replay's routed event may be in a batch another
// projector process is writing, so a young event is retried as an unknown
// request is; one older than UnknownRequestFor is refused.
func (p *Projector) unopenedRound(msg jetstream.Msg, err error) error {
	meta, merr := msg.Metadata()
	if merr != nil {
		return natsbus.RetryIn(time.Second, err)
	}
	if time.Since(meta.Timestamp) > p.cfg.UnknownRequestFor {
		return events.Refuse(events.RuleRound, "%w", err)
	}
	return natsbus.RetryIn(unknownRequestRetry(meta.NumDelivered), err)
}

// unknownRequest decides about an event whose request the projection does
// not know: wait for a request intake accepted, or a young one; give up on
// an old event that names a request nobody accepted. Most often the request
// is in a batch another projector process is writing at the same time, so
// the first retry comes soon; later ones wait longer, up to a second.
func (p *Projector) unknownRequest(ctx context.Context, msg jetstream.Msg, requestID string, err error) error {
	meta, merr := msg.Metadata()
	if merr != nil {
		return natsbus.RetryIn(time.Second, err)
	}
	if time.Since(meta.Timestamp) > p.cfg.UnknownRequestFor {
		accepted, lookupErr := p.cfg.Store.Accepted(ctx, requestID)
		if lookupErr != nil {
			return lookupErr
		}
		if !accepted {
			return events.Permanent(err)
		}
	}
	return natsbus.RetryIn(unknownRequestRetry(meta.NumDelivered), err)
}

// unknownRequestRetry is the wait before the next delivery of an event
// whose request is not projected yet, after delivered deliveries: 50 ms,
// doubling up to a second.
func unknownRequestRetry(delivered uint64) time.Duration {
	d := 50 * time.Millisecond
	for i := uint64(1); i < delivered && d < time.Second; i++ {
		d *= 2
	}
	return min(d, time.Second)
}

// requestOf names the request a message is about: the key by which the
// projector applies a request's messages in the order they arrived.
// Applied in a batch written alongside, an event could otherwise come before
// the one that makes it known (its request, or the routed event that gives
// it its work item), be retried after the events that followed it, and
// leave a desk reading the request past an event not yet recorded. A
// message that does not decode has no request ("").
func requestOf(msg jetstream.Msg) string {
	var ids struct {
		ID        string `json:"id"`
		RequestID string `json:"request_id"`
	}
	_ = json.Unmarshal(msg.Data(), &ids) // handle reports what does not decode
	if events.IsRequestSubject(msg.Subject()) {
		return ids.ID
	}
	return ids.RequestID
}

func decodeChange(msg jetstream.Msg) (events.Change, error) {
	if events.IsRequestSubject(msg.Subject()) {
		req, err := decodeRequestOn(msg.Subject(), msg.Data())
		return events.Change{Request: req}, err
	}
	arrived := time.Now()
	if meta, err := msg.Metadata(); err == nil {
		arrived = meta.Timestamp
	}
	ev, err := decodeStatus(msg.Subject(), msg.Data(), arrived)
	if err != nil {
		return events.Change{}, err
	}
	return events.Change{Event: ev}, nil
}

// decodeStatus decodes the status event data published on subject and
// stored by JetStream at arrived, and checks it against the rules every
// event keeps. Its errors are permanent.
func decodeStatus(subject string, data []byte, arrived time.Time) (*events.StatusEvent, error) {
	var ev events.StatusEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, events.Permanent(fmt.Errorf("decode status event: %w", err))
	}
	if ev.Schema != events.SchemaStatus || ev.ID == "" || ev.RequestID == "" || ev.At.IsZero() {
		return nil, events.Permanent(fmt.Errorf("decode status event: unexpected schema %q or missing fields", ev.Schema))
	}
	// Decoding replaced what is not UTF-8; the projection could not store
	// or look up IDs that are not clean text.
	if !utf8.Valid(data) {
		return nil, events.Permanent(errors.New("decode status event: not UTF-8"))
	}
	if err := ev.CheckText(); err != nil {
		return nil, events.Permanent(fmt.Errorf("decode status event %q: %w", ev.ID, err))
	}
	// A source speaks only for itself, within the rules every event keeps.
	source, _ := events.StatusSource(subject)
	if err := ev.CheckFrom(source, arrived); err != nil {
		return nil, err
	}
	return &ev, nil
}
