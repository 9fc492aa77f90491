package workers

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
)

// DeadLetters stores messages that leave their queue unhandled. Recording
// the same stream message twice stores it once.
type DeadLetters interface {
	RecordDeadLetter(ctx context.Context, d events.DeadLetter) (bool, error)
}

// deadLetterOf describes msg as a dead letter for reason; the caller adds
// what it can decode of the message.
func deadLetterOf(msg jetstream.Msg, reason string, cause error) events.DeadLetter {
	d := events.DeadLetter{
		Subject:   msg.Subject(),
		Reason:    reason,
		LastError: cause.Error(),
		Attempts:  1,
		Payload:   msg.Data(),
	}
	if meta, err := msg.Metadata(); err == nil {
		d.Stream, d.StreamSeq, d.Attempts = meta.Stream, meta.Sequence.Stream, int(meta.NumDelivered)
	}
	return d
}

// record stores d if a store is configured.
func record(ctx context.Context, store DeadLetters, d events.DeadLetter) error {
	if store == nil {
		return nil
	}
	_, err := store.RecordDeadLetter(ctx, d)
	return err
}
