package workers_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// quiet keeps the roles' logs out of test output.
var quiet = slog.New(slog.DiscardHandler)

// publish stores one message on JetStream.
func publish(t *testing.T, js jetstream.JetStream, subject, msgID string, value any) {
	t.Helper()
	err := natsbus.NewPublisher(js).Publish(t.Context(), natsbus.Outgoing{Subject: subject, ID: msgID, Value: value})
	if err != nil {
		t.Fatalf("publish on %s: %v", subject, err)
	}
}

// publishRequest stores a request the way intake does.
func publishRequest(t *testing.T, js jetstream.JetStream, req *events.Request) {
	t.Helper()
	publish(t, js, events.RequestSubject(req.Municipality, req.DeskID), req.ID, req)
}

// statusEvents decodes the status events stored on the events stream.
func statusEvents(t *testing.T, js jetstream.JetStream) []events.StatusEvent {
	t.Helper()
	var out []events.StatusEvent
	for _, m := range natstest.Messages(t, js, events.EventsStream) {
		if events.IsRequestSubject(m.Subject) {
			continue
		}
		var ev events.StatusEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("decode status event on %s: %v", m.Subject, err)
		}
		out = append(out, ev)
	}
	return out
}

// eventWith waits until a status event with the given ID is stored and
// returns it with the subject it was published on.
func eventWith(t *testing.T, js jetstream.JetStream, id string) (events.StatusEvent, string) {
	t.Helper()
	var (
		found   events.StatusEvent
		subject string
	)
	workertest.WaitFor(t, "status event "+id, func() error {
		for _, m := range natstest.Messages(t, js, events.EventsStream) {
			var ev events.StatusEvent
			if json.Unmarshal(m.Data, &ev) == nil && ev.ID == id {
				found, subject = ev, m.Subject
				return nil
			}
		}
		return fmt.Errorf("not among %d stored status events", len(statusEvents(t, js)))
	})
	return found, subject
}

// drained reports nil once a durable consumer has delivered everything and
// nothing awaits an ack.
func drained(t *testing.T, js jetstream.JetStream, stream, consumer string) func() error {
	return func() error {
		cons, err := js.Consumer(t.Context(), stream, consumer)
		if err != nil {
			return err
		}
		info, err := cons.Info(t.Context())
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.Delivered.Consumer == 0 {
			return fmt.Errorf("consumer %s: %d pending, %d awaiting ack, %d delivered",
				consumer, info.NumPending, info.NumAckPending, info.Delivered.Consumer)
		}
		return nil
	}
}
