package workers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// UndeliveredConfig configures Undelivered.
type UndeliveredConfig struct {
	// JetStream to read advisories and work items from. Required.
	JetStream jetstream.JetStream
	// Store records the dead letters. Required.
	Store DeadLetters
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Undelivered turns JetStream's advisories that a work item was delivered
// as often as its agency's consumer allows into dead letters: it records the
// work item, marks it failed in the request's timeline, and only then removes
// it from the work queue. Nothing leaves the queue silently.
type Undelivered struct {
	cfg UndeliveredConfig
	pub *natsbus.Publisher
}

// NewUndelivered validates cfg.
func NewUndelivered(cfg UndeliveredConfig) (*Undelivered, error) {
	if cfg.JetStream == nil || cfg.Store == nil {
		return nil, errors.New("new undelivered: JetStream and Store are required")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Undelivered{cfg: cfg, pub: natsbus.NewPublisher(cfg.JetStream)}, nil
}

// Run handles advisories until ctx ends.
func (u *Undelivered) Run(ctx context.Context) error {
	cons, err := u.cfg.JetStream.Consumer(ctx, events.AdvisoryStream, events.UndeliveredConsumer)
	if err != nil {
		return fmt.Errorf("undelivered: %w", err)
	}
	return natsbus.Consume(ctx, cons, natsbus.Settings{
		Logger: u.cfg.Logger.With("role", "undelivered"),
	}, u.handle)
}

// maxDeliveriesAdvisory is the part of JetStream's advisory we read.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
}

func (u *Undelivered) handle(ctx context.Context, msg jetstream.Msg) error {
	var adv maxDeliveriesAdvisory
	if err := json.Unmarshal(msg.Data(), &adv); err != nil || adv.Stream == "" || adv.StreamSeq == 0 {
		return events.Permanent(fmt.Errorf("undelivered: not a max-deliveries advisory: %v", err))
	}
	stream, err := u.cfg.JetStream.Stream(ctx, adv.Stream)
	if err != nil {
		return fmt.Errorf("undelivered: %w", err)
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // acknowledged at the last moment, or handled already
	}
	if err != nil {
		return fmt.Errorf("undelivered: read work item: %w", err)
	}
	d := events.DeadLetter{
		Stream:    adv.Stream,
		StreamSeq: adv.StreamSeq,
		Subject:   raw.Subject,
		Reason:    events.ReasonMaxDeliveries,
		LastError: fmt.Sprintf("delivered %d times to %s without being acknowledged", adv.Deliveries, adv.Consumer),
		Attempts:  adv.Deliveries,
		Payload:   raw.Data,
	}
	item, decodeErr := decodeWorkItem(raw.Data)
	if decodeErr == nil {
		d.RequestID, d.WorkItemID, d.Agency = item.RequestID, item.ID, queueOwner(item)
	}
	if err := record(ctx, u.cfg.Store, d); err != nil {
		return err
	}
	if decodeErr == nil && raw.Subject == item.Queue() {
		failed := statusEvent(item, events.StatusFailed, d.LastError)
		if err := u.pub.Publish(ctx, natsbus.Outgoing{Subject: events.StatusSubject(events.SourceOf(&failed)), ID: failed.ID, Value: failed}); err != nil {
			return err
		}
	}
	if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) &&
		!strings.Contains(err.Error(), "no message found") {
		return fmt.Errorf("undelivered: remove work item: %w", err)
	}
	u.cfg.Logger.Warn("work item dead-lettered after its deliveries ran out",
		"agency", d.Agency, "work_item", d.WorkItemID, "deliveries", adv.Deliveries)
	return nil
}
