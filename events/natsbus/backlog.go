package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
)

// ConsumerState is what JetStream reports of one durable consumer: messages
// it has yet to deliver (Pending), delivered and not yet acknowledged
// (AckPending), delivered more than once and still unacknowledged
// (Redelivered), and pull requests waiting (Waiting).
type ConsumerState struct {
	Stream, Consumer                 string
	Pending, AckPending, Redelivered uint64
	Waiting                          int
}

// ConsumerStates reads the state of every consumer of spotflow's streams,
// one JetStream API request per stream. A stream that does not exist yet is
// skipped.
func ConsumerStates(ctx context.Context, js jetstream.JetStream) ([]ConsumerState, error) {
	var out []ConsumerState
	for _, name := range []string{events.EventsStream, events.WorkStream, events.AdvisoryStream} {
		stream, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read consumers of %s: %w", name, err)
		}
		lister := stream.ListConsumers(ctx)
		for info := range lister.Info() {
			out = append(out, ConsumerState{
				Stream: name, Consumer: info.Name,
				Pending: info.NumPending, AckPending: uint64(info.NumAckPending),
				Redelivered: uint64(info.NumRedelivered), Waiting: info.NumWaiting,
			})
		}
		if err := lister.Err(); err != nil {
			return nil, fmt.Errorf("read consumers of %s: %w", name, err)
		}
	}
	return out, nil
}

// Backlog reads the state of every agency's work queue (the practice queue
// is no agency's).
func Backlog(ctx context.Context, js jetstream.JetStream) ([]events.QueueBacklog, error) {
	states, err := ConsumerStates(ctx, js)
	if err != nil {
		return nil, err
	}
	var out []events.QueueBacklog
	for _, s := range states {
		agency, ok := strings.CutPrefix(s.Consumer, events.AgencyConsumer(""))
		if s.Stream != events.WorkStream || !ok || agency == events.SourcePractice {
			continue
		}
		out = append(out, events.QueueBacklog{Agency: agency, Pending: s.Pending, AckPending: s.AckPending, Redelivered: s.Redelivered})
	}
	return out, nil
}

// Health reads the storage of spotflow's streams against their limits and
// the lag of every consumer of them, one JetStream API request per stream
// and one per page of its consumers. A stream that does not exist yet is
// skipped.
func Health(ctx context.Context, js jetstream.JetStream) ([]events.StreamHealth, []events.ConsumerHealth, error) {
	var streams []events.StreamHealth
	var consumers []events.ConsumerHealth
	for _, name := range []string{events.EventsStream, events.WorkStream, events.AdvisoryStream} {
		stream, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read stream %s: %w", name, err)
		}
		info := stream.CachedInfo()
		streams = append(streams, events.StreamHealth{
			Name: name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
			MaxMsgs: info.Config.MaxMsgs, MaxBytes: info.Config.MaxBytes, Replicas: info.Config.Replicas,
		})
		lister := stream.ListConsumers(ctx)
		for c := range lister.Info() {
			consumers = append(consumers, events.ConsumerHealth{
				Stream: name, Name: c.Name, Pending: c.NumPending, AckPending: uint64(c.NumAckPending),
				Redelivered: uint64(c.NumRedelivered), LastDelivered: deref(c.Delivered.Last), LastAcked: deref(c.AckFloor.Last),
			})
		}
		if err := lister.Err(); err != nil {
			return nil, nil, fmt.Errorf("read consumers of %s: %w", name, err)
		}
	}
	return streams, consumers, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
