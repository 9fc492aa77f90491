package natsbus_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

// quiet is a logger for consume loops that keeps test output readable.
var quiet = slog.New(slog.DiscardHandler)

// fastRetry keeps redeliveries quick in tests.
func fastRetry(uint64) time.Duration { return 10 * time.Millisecond }

func agencyConsumer(t *testing.T, js jetstream.JetStream, agency string) jetstream.Consumer {
	t.Helper()
	cons, err := js.Consumer(t.Context(), events.WorkStream, events.AgencyConsumer(agency))
	if err != nil {
		t.Fatalf("open consumer of %s: %v", agency, err)
	}
	return cons
}

func consumerInfo(t *testing.T, cons jetstream.Consumer) *jetstream.ConsumerInfo {
	t.Helper()
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info
}

// publishWork queues a small message on an agency's work subject.
func publishWork(t *testing.T, js jetstream.JetStream, agency, id string) {
	t.Helper()
	err := natsbus.NewPublisher(js).Publish(t.Context(), natsbus.Outgoing{
		Subject: events.WorkSubject(agency), ID: id, Value: map[string]string{"id": id},
	})
	if err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
}

// oneWorkItem starts a server whose tax queue holds one work item, w1, and
// opens the tax agency's consumer.
func oneWorkItem(t *testing.T) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	js := natstest.JetStream(t, "tax")
	cons := agencyConsumer(t, js, "tax")
	publishWork(t, js, "tax", "w1")
	return js, cons
}

// settled reports nil once the consumer has nothing pending or unacked and
// the work stream holds want messages.
func settled(t *testing.T, js jetstream.JetStream, cons jetstream.Consumer, want uint64) func() error {
	return func() error {
		info := consumerInfo(t, cons)
		n := natstest.StreamMessages(t, js, events.WorkStream)
		if info.NumPending != 0 || info.NumAckPending != 0 || n != want {
			return fmt.Errorf("pending %d, ack pending %d, %d messages in the work stream (want %d)",
				info.NumPending, info.NumAckPending, n, want)
		}
		return nil
	}
}
