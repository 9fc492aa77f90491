package natsbus_test

import (
	"encoding/json"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

func TestPublisher_StoresTheSameMsgIDOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	js := natstest.JetStream(t)
	pub := natsbus.NewPublisher(js)
	subject := events.StatusSubject("tax")
	first := natsbus.Outgoing{Subject: subject, ID: "r1.tax.accepted", Value: map[string]string{"status": "accepted"}}

	for range 3 {
		if err := pub.Publish(ctx, first); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if n := natstest.StreamMessages(t, js, events.EventsStream); n != 1 {
		t.Fatalf("after publishing one ID three times the stream holds %d messages, want 1", n)
	}

	// PublishAll deduplicates the same way, against what is stored and
	// within the batch.
	second := natsbus.Outgoing{Subject: subject, ID: "r1.tax.completed", Value: map[string]string{"status": "completed"}}
	if err := pub.PublishAll(ctx, []natsbus.Outgoing{first, second, second}); err != nil {
		t.Fatalf("publish all: %v", err)
	}
	if n := natstest.StreamMessages(t, js, events.EventsStream); n != 2 {
		t.Fatalf("after publishing a batch with one new ID the stream holds %d messages, want 2", n)
	}

	s, err := js.Stream(ctx, events.EventsStream)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	msg, err := s.GetMsg(ctx, 2)
	if err != nil {
		t.Fatalf("get message 2: %v", err)
	}
	var got map[string]string
	if err := json.Unmarshal(msg.Data, &got); err != nil || got["status"] != "completed" {
		t.Errorf("message 2 = %s (%v), want the completed value as JSON", msg.Data, err)
	}
	if id := msg.Header.Get("Nats-Msg-Id"); id != second.ID {
		t.Errorf("Nats-Msg-Id = %q, want %q", id, second.ID)
	}
}

func TestPublisher_ReportsWhatCannotBeStored(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	js := natstest.JetStream(t)
	pub := natsbus.NewPublisher(js)

	tests := []struct {
		name string
		outs []natsbus.Outgoing
	}{
		{"a value that is not JSON", []natsbus.Outgoing{{Subject: events.StatusSubject("tax"), ID: "a", Value: make(chan int)}}},
		{"a subject no stream holds", []natsbus.Outgoing{{Subject: "elsewhere.tax", ID: "b", Value: 1}}},
		{"a batch with a subject no stream holds", []natsbus.Outgoing{
			{Subject: events.StatusSubject("tax"), ID: "c", Value: 1},
			{Subject: "elsewhere.tax", ID: "d", Value: 1},
		}},
	}
	for _, tt := range tests {
		if err := pub.PublishAll(ctx, tt.outs); err == nil {
			t.Errorf("%s: publish succeeded, want an error", tt.name)
		}
	}
}
