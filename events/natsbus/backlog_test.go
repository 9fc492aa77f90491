package natsbus_test

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

func TestBacklog_CountsEachAgencysPendingAndUnacknowledgedWorkItems(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t, "tax", "sns")
	ctx := t.Context()
	pub := natsbus.NewPublisher(js)
	for i := range 5 {
		if err := pub.Publish(ctx, natsbus.Outgoing{Subject: events.WorkSubject("tax"), ID: fmt.Sprintf("w-%d", i), Value: i}); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.Consumer(ctx, events.WorkStream, events.AgencyConsumer("tax"))
	if err != nil {
		t.Fatal(err)
	}
	// Two are delivered and held, unacknowledged.
	batch, err := cons.FetchNoWait(2)
	if err != nil {
		t.Fatal(err)
	}
	var held []jetstream.Msg
	for m := range batch.Messages() {
		held = append(held, m)
	}
	if len(held) != 2 {
		t.Fatalf("fetched %d work items, want 2", len(held))
	}

	got, err := natsbus.Backlog(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]events.QueueBacklog{
		"tax": {Agency: "tax", Pending: 3, AckPending: 2},
		"sns": {Agency: "sns"},
	}
	if len(got) != len(want) {
		t.Fatalf("backlog = %+v, want one entry per agency: %+v", got, want)
	}
	for _, b := range got {
		if b != want[b.Agency] {
			t.Errorf("backlog of %s = %+v, want %+v", b.Agency, b, want[b.Agency])
		}
	}
	states, err := natsbus.ConsumerStates(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range states {
		seen[s.Consumer] = true
	}
	for _, c := range []string{events.RouterConsumer, events.ProjectorConsumer, events.UndeliveredConsumer, "agency-tax", "agency-sns"} {
		if !seen[c] {
			t.Errorf("consumer states lack %s: %+v", c, states)
		}
	}
}
