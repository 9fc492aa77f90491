package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/schemas"
)

// waitFor polls cond every 20ms for up to 20s. cond returns nil once the
// awaited outcome holds, or an error describing what it sees instead, which
// the failure message quotes.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after 20s waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runRole runs a role's Run under a context that ends when the test does,
// and checks that Run then returns nil.
func runRole(t *testing.T, name string, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s.Run returned %v after its context ended, want nil", name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s.Run did not return within 20s of its context ending", name)
		}
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// quiet keeps the roles' logs out of test output.
var quiet = slog.New(slog.DiscardHandler)

// catalog is the built-in service catalogue.
func catalog(t *testing.T) *events.Catalog {
	t.Helper()
	c, err := events.ParseCatalog(schemas.Catalog)
	if err != nil {
		t.Fatalf("parse the built-in catalogue: %v", err)
	}
	return c
}

// request builds a submitted request of a desk in lisboa.
func request(id, service string, attrs map[string]any) *events.Request {
	raw := make(map[string]json.RawMessage, len(attrs))
	for k, v := range attrs {
		b, _ := json.Marshal(v)
		raw[k] = b
	}
	return &events.Request{
		Schema:       events.SchemaRequest,
		ID:           id,
		DeskID:       "desk-1",
		Municipality: "lisboa",
		Mediator:     "m-17",
		ServiceCode:  service,
		Citizen:      events.Citizen{NationalID: "12345678", Name: "Maria Silva"},
		Attributes:   raw,
		SubmittedAt:  time.Now().UTC().Truncate(time.Microsecond),
	}
}

// changeOfAddress is a request that fans out to four agencies.
func changeOfAddress(id string) *events.Request {
	return request(id, "change-of-address", map[string]any{
		"street": "Rua Augusta 1", "postal_code": "1100-048", "locality": "Lisboa",
	})
}

// publish stores one message on JetStream.
func publish(t *testing.T, js jetstream.JetStream, subject, msgID string, value any) {
	t.Helper()
	err := natsbus.NewPublisher(js).Publish(testContext(t), natsbus.Outgoing{Subject: subject, ID: msgID, Value: value})
	if err != nil {
		t.Fatalf("publish on %s: %v", subject, err)
	}
}

// publishRequest stores a request the way intake does.
func publishRequest(t *testing.T, js jetstream.JetStream, req *events.Request) {
	t.Helper()
	publish(t, js, events.RequestSubject(req.Municipality, req.DeskID), req.ID, req)
}

// stored is a message read back from a stream.
type stored struct {
	Subject string
	Data    []byte
}

// streamMessages reads every message a stream holds, in order.
func streamMessages(t *testing.T, js jetstream.JetStream, name string) []stored {
	t.Helper()
	ctx := testContext(t)
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("open stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info %s: %v", name, err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("read %s message %d: %v", name, seq, err)
		}
		out = append(out, stored{Subject: m.Subject, Data: m.Data})
	}
	return out
}

// statusEvents decodes the status events stored on the events stream.
func statusEvents(t *testing.T, js jetstream.JetStream) []events.StatusEvent {
	t.Helper()
	var out []events.StatusEvent
	for _, m := range streamMessages(t, js, events.EventsStream) {
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
	waitFor(t, "status event "+id, func() error {
		for _, m := range streamMessages(t, js, events.EventsStream) {
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
		cons, err := js.Consumer(testContext(t), stream, consumer)
		if err != nil {
			return err
		}
		info, err := cons.Info(testContext(t))
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
