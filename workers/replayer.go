package workers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
)

// ReplayStore is what replaying needs of the database.
type ReplayStore interface {
	DeadLetter(ctx context.Context, id int64) (events.DeadLetter, error)
	MarkReplayed(ctx context.Context, id int64, by events.By) (int, error)
}

// Replayer puts dead letters back in their queues at an operator's request.
// A replayed work item keeps its ID, so an agency that applied it already
// recognises it; it starts a new round, so its events supersede the failure
// in the request's timeline. Every replay is recorded in the audit log
// first. Safe for concurrent use.
type Replayer struct {
	store ReplayStore
	pub   *natsbus.Publisher
}

// NewReplayer returns a replayer.
func NewReplayer(store ReplayStore, js jetstream.JetStream) *Replayer {
	return &Replayer{store: store, pub: natsbus.NewPublisher(js)}
}

// Replay puts dead letter id back where it came from on behalf of by, whose
// reason (optional) is in the audit log with the replay.
func (r *Replayer) Replay(ctx context.Context, id int64, by events.By) error {
	actor := by.Actor
	if strings.TrimSpace(actor) == "" {
		return errors.New("replay: an actor is required")
	}
	dl, err := r.store.DeadLetter(ctx, id)
	if err != nil {
		return fmt.Errorf("replay dead letter %d: %w", id, err)
	}
	n, err := r.store.MarkReplayed(ctx, id, by)
	if err != nil {
		return fmt.Errorf("replay dead letter %d: %w", id, err)
	}
	note := fmt.Sprintf("replayed by %s (dead letter %d)", actor, id)
	var outs []natsbus.Outgoing
	switch {
	case events.IsWorkSubject(dl.Subject):
		item, err := decodeWorkItem(dl.Payload)
		if err != nil {
			outs = append(outs, raw(dl, n))
			break
		}
		item.Round++
		// The routed event of the new round moves the work item out of
		// failed before the agency is asked again.
		routed := statusEvent(item, events.StatusRouted, note)
		routed.Actor = actor
		outs = append(outs,
			natsbus.Outgoing{Subject: events.StatusSubject(events.SourceOf(&routed)), ID: routed.ID, Value: routed},
			natsbus.Outgoing{Subject: dl.Subject, ID: events.MsgID(item.ID, item.Round), Value: item})
	case events.IsRequestSubject(dl.Subject):
		req, err := decodeRequest(dl.Payload)
		if err != nil {
			outs = append(outs, raw(dl, n))
			break
		}
		req.Round++
		outs = append(outs, natsbus.Outgoing{Subject: dl.Subject, ID: events.MsgID(req.ID, req.Round), Value: req})
	default:
		outs = append(outs, raw(dl, n))
	}
	for _, out := range outs {
		if err := r.pub.Publish(ctx, out); err != nil {
			return fmt.Errorf("replay dead letter %d: %w", id, err)
		}
	}
	return nil
}

// raw republishes a dead letter's message as it was.
func raw(dl events.DeadLetter, replay int) natsbus.Outgoing {
	return natsbus.Outgoing{
		Subject: dl.Subject,
		ID:      fmt.Sprintf("dead-letter-%d.r%d", dl.ID, replay),
		Value:   natsbus.Raw(dl.Payload),
	}
}
