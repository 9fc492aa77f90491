package natsbus

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Raw is a message body published exactly as it is, not encoded as JSON.
type Raw []byte

// Outgoing is one message to publish: Value is encoded as JSON (unless it is
// Raw) and ID becomes its Nats-Msg-Id, so JetStream stores it once however
// often it is sent.
type Outgoing struct {
	Subject string
	ID      string
	Value   any
}

// Publisher publishes JSON messages to JetStream and returns only once they
// are stored. It is safe for concurrent use.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a publisher over js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Publish stores one message and waits for JetStream's acknowledgement.
func (p *Publisher) Publish(ctx context.Context, out Outgoing) error {
	msg, err := encode(out)
	if err != nil {
		return err
	}
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(out.ID)); err != nil {
		return fmt.Errorf("publish %s: %w", out.Subject, err)
	}
	return nil
}

// PublishAll stores every message, sending them without waiting for each
// other, and returns once all are acknowledged or the first has failed. On
// error some may have been stored; resending all is safe, since their IDs
// deduplicate.
func (p *Publisher) PublishAll(ctx context.Context, outs []Outgoing) error {
	if len(outs) == 1 {
		return p.Publish(ctx, outs[0])
	}
	futures := make([]jetstream.PubAckFuture, 0, len(outs))
	for _, out := range outs {
		msg, err := encode(out)
		if err != nil {
			return err
		}
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(out.ID))
		if err != nil {
			return fmt.Errorf("publish %s: %w", out.Subject, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", outs[i].Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w", outs[i].Subject, ctx.Err())
		}
	}
	return nil
}

func encode(out Outgoing) (*nats.Msg, error) {
	data, ok := out.Value.(Raw)
	if !ok {
		var err error
		if data, err = json.Marshal(out.Value); err != nil {
			return nil, fmt.Errorf("encode %s: %w", out.Subject, err)
		}
	}
	return &nats.Msg{Subject: out.Subject, Data: data, Header: nats.Header{}}, nil
}
