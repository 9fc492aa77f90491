package natsbus_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
)

// TestPublisher_GroupCommitStoresEveryMessageOnce publishes from many
// goroutines at once, so that publishes are gathered into atomic batches,
// with a third of them repeating an ID already stored: a batch holding a
// repeated ID is refused whole by the server, and the neighbours of the
// repeated message must be stored all the same.
func TestPublisher_GroupCommitStoresEveryMessageOnce(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t, "tax")
	pub := natsbus.NewPublisher(js)
	ctx := t.Context()
	const distinct, callers = 1500, 128
	// Store the first 500 before the rush, so the rush repeats them.
	for i := range 500 {
		if err := pub.Publish(ctx, natsbus.Outgoing{Subject: events.WorkSubject("tax"), ID: fmt.Sprint("w", i), Value: map[string]int{"n": i}}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			for i := c; i < distinct; i += callers {
				outs := []natsbus.Outgoing{
					{Subject: events.WorkSubject("tax"), ID: fmt.Sprint("w", i), Value: map[string]int{"n": i}},
					{Subject: events.StatusSubject("tax"), ID: fmt.Sprint("s", i), Value: map[string]int{"n": i}},
				}
				if err := pub.PublishAll(ctx, outs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	if n := natstest.StreamMessages(t, js, events.WorkStream); n != distinct {
		t.Errorf("work stream holds %d messages, want %d", n, distinct)
	}
	if n := natstest.StreamMessages(t, js, events.EventsStream); n != distinct {
		t.Errorf("events stream holds %d messages, want %d", n, distinct)
	}
}
