package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
)

// fakeAdapter answers deliveries with answer, given the 1-based number of
// the call, and counts its calls.
type fakeAdapter struct {
	answer func(call int, item events.WorkItem) (workers.Receipt, error)

	mu    sync.Mutex
	calls []string
}

var _ workers.Adapter = (*fakeAdapter)(nil)

func (f *fakeAdapter) Deliver(_ context.Context, item events.WorkItem) (workers.Receipt, error) {
	f.mu.Lock()
	f.calls = append(f.calls, item.ID)
	n := len(f.calls)
	f.mu.Unlock()
	return f.answer(n, item)
}

func (f *fakeAdapter) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// startDispatcher provisions a JetStream for the adapters' agencies and
// runs a dispatcher over it.
func startDispatcher(t *testing.T, adapters map[string]workers.Adapter, retryFor time.Duration) jetstream.JetStream {
	t.Helper()
	var agencies []string
	for a := range adapters {
		agencies = append(agencies, a)
	}
	js := natstest.JetStream(t, agencies...)
	d, err := workers.NewDispatcher(workers.DispatcherConfig{JetStream: js, Adapters: adapters, RetryFor: retryFor, Logger: quiet})
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	workertest.Run(t, "Dispatcher", d.Run)
	return js
}

// queueWorkItem puts the work item of req for agency on subject's queue.
func queueWorkItem(t *testing.T, js jetstream.JetStream, subject string, req *events.Request, agency string) events.WorkItem {
	t.Helper()
	item := req.WorkItemFor(agency)
	publish(t, js, subject, item.ID, item)
	return item
}

// agencyEvents returns the status events stored for one work item, in
// order, checking that each was published on the agency's subject.
func agencyEvents(t *testing.T, js jetstream.JetStream, requestID, agency string) []events.StatusEvent {
	t.Helper()
	var out []events.StatusEvent
	for _, m := range natstest.Messages(t, js, events.EventsStream) {
		ev, err := decodeStatus(m.Data)
		if err != nil || ev.RequestID != requestID || ev.Agency != agency {
			continue
		}
		if want := events.StatusSubject(events.SourceOf(&ev)); m.Subject != want {
			t.Errorf("event %s (%s) published on %s, want %s", ev.ID, ev.Status, m.Subject, want)
		}
		out = append(out, ev)
	}
	return out
}

func statuses(evs []events.StatusEvent) []events.Status {
	out := make([]events.Status, len(evs))
	for i, ev := range evs {
		out[i] = ev.Status
	}
	return out
}

func TestDispatcher_RetriesTransientFailuresInProcess(t *testing.T) {
	t.Parallel()
	const failures = 3
	adapter := &fakeAdapter{answer: func(call int, _ events.WorkItem) (workers.Receipt, error) {
		if call <= failures {
			return workers.Receipt{}, errors.New("tax back office timed out")
		}
		return workers.Receipt{Status: events.StatusCompleted, Note: "certificate issued"}, nil
	}}
	js := startDispatcher(t, map[string]workers.Adapter{"tax": adapter}, 10*time.Second)
	req := eventstest.Request("req-1", "tax-id-certificate", map[string]any{"tax_number": "123456789", "year": 2025})
	queueWorkItem(t, js, events.WorkSubject("tax"), req, "tax")

	completed, _ := eventWith(t, js, events.EventID("req-1", "tax", events.StatusCompleted))
	workertest.WaitFor(t, "the work item to be acked", drained(t, js, events.WorkStream, events.AgencyConsumer("tax")))

	if calls := adapter.Calls(); len(calls) != failures+1 || calls[0] != "req-1.tax" {
		t.Errorf("adapter calls = %v, want %d for req-1.tax", calls, failures+1)
	}
	evs := agencyEvents(t, js, "req-1", "tax")
	if got := statuses(evs); !slices.Equal(got, []events.Status{events.StatusDispatched, events.StatusCompleted}) {
		t.Fatalf("events %v, want dispatched then completed", got)
	}
	if evs[0].ID != "req-1.tax.dispatched" || evs[0].Actor != "dispatcher" {
		t.Errorf("dispatched event = %+v", evs[0])
	}
	if completed.Note != "certificate issued" || completed.Actor != "agency:tax" || completed.Schema != events.SchemaStatus {
		t.Errorf("completed event = %+v, want the agency's note and actor", completed)
	}
	if n := natstest.StreamMessages(t, js, events.WorkStream); n != 0 {
		t.Errorf("the work stream still holds %d messages", n)
	}
	cons, _ := js.Consumer(t.Context(), events.WorkStream, events.AgencyConsumer("tax"))
	if info, err := cons.Info(t.Context()); err != nil || info.NumRedelivered != 0 {
		t.Errorf("the work item went back to the queue (redelivered: %v, %v); retries should stay in process", info.NumRedelivered, err)
	}
}

func TestDispatcher_ReturnsAWorkItemToTheQueueWhenRetriesRunOut(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	adapter := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		if !up.Load() {
			return workers.Receipt{}, errors.New("connection refused")
		}
		return workers.Receipt{Status: events.StatusAccepted}, nil
	}}
	js := startDispatcher(t, map[string]workers.Adapter{"tax": adapter}, 100*time.Millisecond)
	queueWorkItem(t, js, events.WorkSubject("tax"), eventstest.ChangeOfAddress("req-2"), "tax")

	workertest.WaitFor(t, "the work item to be redelivered", func() error {
		cons, err := js.Consumer(t.Context(), events.WorkStream, events.AgencyConsumer("tax"))
		if err != nil {
			return err
		}
		info, err := cons.Info(t.Context())
		if err != nil {
			return err
		}
		if info.Delivered.Consumer < 2 {
			return fmt.Errorf("delivered %d times", info.Delivered.Consumer)
		}
		return nil
	})
	up.Store(true)
	eventWith(t, js, events.EventID("req-2", "tax", events.StatusAccepted))
	if got := statuses(agencyEvents(t, js, "req-2", "tax")); !slices.Equal(got, []events.Status{events.StatusDispatched, events.StatusAccepted}) {
		t.Errorf("events %v, want dispatched then accepted and no failure", got)
	}
	workertest.WaitFor(t, "the work item to be acked", drained(t, js, events.WorkStream, events.AgencyConsumer("tax")))
}

func TestDispatcher_ReportsTheAgencysAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		answer  func(int, events.WorkItem) (workers.Receipt, error)
		want    events.Status
		note    string
		calls   int
		outcome []events.Status
		// messages is how many messages carry the two events.
		messages int
	}{{
		name: "a rejection is published as rejected with the agency's note, in the message that says when it was dispatched",
		answer: func(int, events.WorkItem) (workers.Receipt, error) {
			return workers.Receipt{Status: events.StatusRejected, Note: "not eligible"}, nil
		},
		want: events.StatusRejected, note: "not eligible", calls: 1, messages: 1,
	}, {
		name: "a permanent error is published as failed with the reason as note",
		answer: func(int, events.WorkItem) (workers.Receipt, error) {
			return workers.Receipt{}, events.Permanent(errors.New("citizen unknown to the back office"))
		},
		want: events.StatusFailed, note: "citizen unknown to the back office", calls: 1, messages: 2,
	}, {
		name: "an answer that is not an agency's status is published as failed",
		answer: func(int, events.WorkItem) (workers.Receipt, error) {
			return workers.Receipt{Status: events.StatusRouted}, nil
		},
		want: events.StatusFailed, note: `adapter answered with status "routed"`, calls: 1, messages: 2,
	}, {
		name: "an adapter that panics fails the work item, as a handler that panics does, and the dispatcher goes on",
		answer: func(int, events.WorkItem) (workers.Receipt, error) {
			panic("nil map in the sns client")
		},
		want: events.StatusFailed, note: "panicked: nil map in the sns client", calls: 1, messages: 2,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			adapter := &fakeAdapter{answer: tt.answer}
			js := startDispatcher(t, map[string]workers.Adapter{"sns": adapter}, 5*time.Second)
			req := eventstest.Request("req-3", "health-appointment", map[string]any{"health_number": "987654321", "kind": "remote"})
			queueWorkItem(t, js, events.WorkSubject("sns"), req, "sns")

			ev, _ := eventWith(t, js, events.EventID("req-3", "sns", tt.want))
			if !strings.Contains(ev.Note, tt.note) {
				t.Errorf("%s event note = %q, want it to contain %q", tt.want, ev.Note, tt.note)
			}
			workertest.WaitFor(t, "the work item to be settled", drained(t, js, events.WorkStream, events.AgencyConsumer("sns")))
			if n := natstest.StreamMessages(t, js, events.WorkStream); n != 0 {
				t.Errorf("the work stream still holds %d messages", n)
			}
			stored := agencyEvents(t, js, "req-3", "sns")
			if len(stored) != tt.messages {
				t.Errorf("%d messages %v, want %d", len(stored), statuses(stored), tt.messages)
			}
			var evs []events.StatusEvent
			for _, ev := range stored {
				evs = append(evs, ev.Split()...)
			}
			if got := statuses(evs); !slices.Equal(got, []events.Status{events.StatusDispatched, tt.want}) {
				t.Errorf("events %v, want dispatched then %s", got, tt.want)
			}
			if evs[0].ID != "req-3.sns.dispatched" || evs[0].Actor != events.ActorDispatcher || evs[0].At.IsZero() || evs[0].At.After(evs[1].At) {
				t.Errorf("dispatched event = %+v, then %+v", evs[0], evs[1])
			}
			if calls := adapter.Calls(); len(calls) != tt.calls {
				t.Errorf("adapter called %d times, want %d", len(calls), tt.calls)
			}
		})
	}
}

func TestDispatcher_DeadLettersAWorkItemQueuedForAnotherAgency(t *testing.T) {
	t.Parallel()
	adapter := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		return workers.Receipt{Status: events.StatusCompleted}, nil
	}}
	store := pgtest.Store(t)
	js := natstest.JetStream(t, "tax")
	d, err := workers.NewDispatcher(workers.DispatcherConfig{
		JetStream: js, Adapters: map[string]workers.Adapter{"tax": adapter}, DeadLetters: store, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "Dispatcher", d.Run)
	// Something that is no work item at all, then sns's work item on tax's
	// queue.
	publish(t, js, events.WorkSubject("tax"), "junk", map[string]string{"schema": "spotflow.work_item.v0"})
	queueWorkItem(t, js, events.WorkSubject("tax"), eventstest.ChangeOfAddress("req-4"), "sns")

	workertest.WaitFor(t, "both messages to be terminated", drained(t, js, events.WorkStream, events.AgencyConsumer("tax")))
	if n := natstest.StreamMessages(t, js, events.WorkStream); n != 0 {
		t.Errorf("the work stream still holds %d messages", n)
	}
	dead, err := store.ListDeadLetters(t.Context(), events.DeadLetterQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want the junk and the misqueued work item: %+v", len(dead), dead)
	}
	for _, dl := range dead {
		if dl.Reason != events.ReasonPermanent || dl.Stream != events.WorkStream || dl.Subject != events.WorkSubject("tax") {
			t.Errorf("dead letter %+v, want a permanent failure on tax's queue", dl)
		}
	}
	i := slices.IndexFunc(dead, func(dl events.DeadLetter) bool { return dl.WorkItemID == "req-4.sns" })
	if i < 0 || !strings.Contains(dead[i].LastError, "of sns does not belong on the queue of tax") {
		t.Errorf("dead letters %+v, want req-4.sns with the reason", dead)
	}
	if calls := adapter.Calls(); len(calls) != 0 {
		t.Errorf("tax's adapter was handed sns's work item: %v", calls)
	}
	// tax does not speak for sns: nothing is published for the misqueued item.
	if evs := statusEvents(t, js); len(evs) != 0 {
		t.Errorf("status events %+v, want none", evs)
	}
}

func decodeStatus(data []byte) (events.StatusEvent, error) {
	var ev events.StatusEvent
	err := json.Unmarshal(data, &ev)
	return ev, err
}

func TestDispatcher_StartsNoQueueWhenOneIsMissing(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t, "imt") // no queue for tax
	blocked := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		select {} // holds whatever it is handed
	}}
	broken, err := workers.NewDispatcher(workers.DispatcherConfig{
		JetStream: js, Logger: quiet,
		Adapters: map[string]workers.Adapter{"imt": blocked, "tax": blocked},
	})
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	err = broken.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "agency tax") {
		t.Fatalf("Run = %v, want an error naming tax's missing queue", err)
	}

	// A dispatcher that failed to start must not go on taking imt's work
	// items: a working one gets all of them.
	working := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		return workers.Receipt{Status: events.StatusAccepted}, nil
	}}
	d, err := workers.NewDispatcher(workers.DispatcherConfig{JetStream: js, Adapters: map[string]workers.Adapter{"imt": working}, Logger: quiet})
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	workertest.Run(t, "Dispatcher", d.Run)
	const n = 10
	for i := range n {
		queueWorkItem(t, js, events.WorkSubject("imt"), eventstest.Request(fmt.Sprintf("req-%d", i), "driving-licence-renewal", nil), "imt")
	}
	workertest.WaitFor(t, "the working dispatcher to deliver every work item", func() error {
		if got, held := len(working.Calls()), len(blocked.Calls()); got != n || held != 0 {
			return fmt.Errorf("the working dispatcher delivered %d, the failed one holds %d", got, held)
		}
		return nil
	})
}

func TestDispatcher_ReportsDispatchedWhileASlowAgencyIsStillAnswering(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	adapter := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		<-release
		return workers.Receipt{Status: events.StatusAccepted}, nil
	}}
	js := startDispatcher(t, map[string]workers.Adapter{"tax": adapter}, 10*time.Second)
	req := eventstest.Request("req-slow", "tax-id-certificate", map[string]any{"tax_number": "123456789", "year": 2025})
	queueWorkItem(t, js, events.WorkSubject("tax"), req, "tax")

	dispatched, _ := eventWith(t, js, events.EventID("req-slow", "tax", events.StatusDispatched))
	if got := statuses(agencyEvents(t, js, "req-slow", "tax")); !slices.Equal(got, []events.Status{events.StatusDispatched}) {
		t.Errorf("while the agency is answering: events %v, want dispatched alone", got)
	}
	close(release)
	accepted, _ := eventWith(t, js, events.EventID("req-slow", "tax", events.StatusAccepted))
	if got := statuses(agencyEvents(t, js, "req-slow", "tax")); !slices.Equal(got, []events.Status{events.StatusDispatched, events.StatusAccepted}) {
		t.Errorf("events %v, want dispatched then accepted, once each", got)
	}
	if accepted.At.Before(dispatched.At) {
		t.Errorf("accepted at %v is before dispatched at %v", accepted.At, dispatched.At)
	}
}
