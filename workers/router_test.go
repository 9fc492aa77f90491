package workers_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/workertest"
)

// startRouter provisions a JetStream and runs a router over it.
func startRouter(t *testing.T) (jetstream.JetStream, *events.Catalog) {
	t.Helper()
	cat := eventstest.Catalog(t)
	js := natstest.JetStream(t, cat.AgencyCodes()...)
	router, err := workers.NewRouter(workers.RouterConfig{JetStream: js, Catalog: cat, Logger: quiet})
	if err != nil {
		t.Fatalf("new router: %v", err)
	}
	workertest.Run(t, "Router", router.Run)
	return js, cat
}

// workItems waits until the work stream holds want work items and decodes
// them by agency.
func workItems(t *testing.T, js jetstream.JetStream, want int) map[string]events.WorkItem {
	t.Helper()
	workertest.WaitFor(t, fmt.Sprintf("%d work items", want), func() error {
		if n := natstest.StreamMessages(t, js, events.WorkStream); n != uint64(want) {
			return fmt.Errorf("the work stream holds %d", n)
		}
		return nil
	})
	items := make(map[string]events.WorkItem)
	for _, m := range natstest.Messages(t, js, events.WorkStream) {
		var item events.WorkItem
		if err := json.Unmarshal(m.Data, &item); err != nil {
			t.Fatalf("decode work item on %s: %v", m.Subject, err)
		}
		if m.Subject != events.WorkSubject(item.Agency) {
			t.Errorf("work item for %s queued on %s", item.Agency, m.Subject)
		}
		items[item.Agency] = item
	}
	return items
}

func TestRouter_FansOutChangeOfAddress(t *testing.T) {
	t.Parallel()
	js, cat := startRouter(t)
	req := eventstest.ChangeOfAddress("req-1")
	req.VisitID = "visit-9"
	publishRequest(t, js, req)

	svc, _ := cat.Service("change-of-address")
	items := workItems(t, js, len(svc.Agencies))
	if got := slices.Sorted(maps.Keys(items)); !slices.Equal(got, slices.Sorted(slices.Values(svc.Agencies))) {
		t.Fatalf("work items for %v, want one for each of %v", got, svc.Agencies)
	}
	for _, agency := range svc.Agencies {
		item := items[agency]
		want := events.WorkItem{
			Schema: events.SchemaWorkItem, ID: "req-1." + agency, RequestID: "req-1", Agency: agency,
			ServiceCode: "change-of-address", DeskID: "desk-1", Municipality: "lisboa", VisitID: "visit-9",
			Citizen: req.Citizen, SubmittedAt: req.SubmittedAt,
		}
		attrs := item.Attributes
		item.Attributes = nil
		if !item.SubmittedAt.Equal(want.SubmittedAt) {
			t.Errorf("%s: submitted at %v, want %v", agency, item.SubmittedAt, want.SubmittedAt)
		}
		item.SubmittedAt = want.SubmittedAt
		if !reflect.DeepEqual(item, want) {
			t.Errorf("%s: work item\n%#v\nwant\n%#v", agency, item, want)
		}
		if item.Citizen.NationalID != "12345678" || item.Citizen.Name != "Maria Silva" {
			t.Errorf("%s: the work item does not carry the citizen", agency)
		}
		if string(attrs["street"]) != `"Rua Augusta 1"` || len(attrs) != 3 {
			t.Errorf("%s: attributes %s, want the request's three", agency, attrs)
		}
	}

	routed, subject := eventWith(t, js, events.EventID("req-1", "", events.StatusRouted))
	if subject != events.StatusSubject(events.SourceRouter) {
		t.Errorf("routed event published on %s, want %s", subject, events.StatusSubject(events.SourceRouter))
	}
	if routed.Status != events.StatusRouted || routed.RequestID != "req-1" || routed.Agency != "" ||
		routed.Schema != events.SchemaStatus || routed.At.IsZero() || routed.Actor != events.SourceRouter {
		t.Errorf("routed event = %+v", routed)
	}
	if !slices.Equal(routed.Agencies, svc.Agencies) {
		t.Errorf("routed to %v, want %v", routed.Agencies, svc.Agencies)
	}
	workertest.WaitFor(t, "the router to ack the request", drained(t, js, events.EventsStream, events.RouterConsumer))
}

func TestRouter_DeadLettersAnUnknownServiceAsAFailedRequest(t *testing.T) {
	t.Parallel()
	js, _ := startRouter(t)
	publishRequest(t, js, eventstest.Request("req-2", "moon-landing-permit", nil))

	failed, subject := eventWith(t, js, events.EventID("req-2", "", events.StatusFailed))
	if subject != events.StatusSubject(events.SourceRouter) {
		t.Errorf("failed event published on %s, want %s", subject, events.StatusSubject(events.SourceRouter))
	}
	if failed.Status != events.StatusFailed || failed.RequestID != "req-2" || failed.Agency != "" {
		t.Errorf("failed event = %+v, want a request-level failure", failed)
	}
	if !strings.Contains(failed.Note, `unknown service "moon-landing-permit"`) {
		t.Errorf("note = %q, want the reason", failed.Note)
	}
	workertest.WaitFor(t, "the router to settle the request", drained(t, js, events.EventsStream, events.RouterConsumer))
	if n := natstest.StreamMessages(t, js, events.WorkStream); n != 0 {
		t.Errorf("an unroutable request queued %d work items", n)
	}
	for _, ev := range statusEvents(t, js) {
		if ev.Status == events.StatusRouted {
			t.Errorf("an unroutable request was reported routed: %+v", ev)
		}
	}
}

func TestRouter_DropsAMessageThatIsNotARequest(t *testing.T) {
	t.Parallel()
	js, _ := startRouter(t)
	publish(t, js, events.RequestSubject("lisboa", "desk-1"), "junk", map[string]string{"schema": "spotflow.request.v0"})
	publishRequest(t, js, eventstest.Request("req-3", "birth-certificate", map[string]any{"format": "online"}))

	items := workItems(t, js, 1)
	if items["civil-registry"].ID != "req-3.civil-registry" {
		t.Errorf("work items %+v, want req-3's for civil-registry", items)
	}
	workertest.WaitFor(t, "the router to settle both messages", drained(t, js, events.EventsStream, events.RouterConsumer))
	for _, ev := range statusEvents(t, js) {
		if ev.Status == events.StatusFailed {
			t.Errorf("a message that is not a request produced a status event: %+v", ev)
		}
	}
}

func TestRouter_RoutesTheSameRequestOnce(t *testing.T) {
	t.Parallel()
	js, cat := startRouter(t)
	req := eventstest.ChangeOfAddress("req-4")
	// The same request arrives twice past JetStream's deduplication (say,
	// republished after the window), and is routed again by hand.
	publishRequest(t, js, req)
	publish(t, js, events.RequestSubject(req.Municipality, req.DeskID), req.ID+"-again", req)
	workertest.WaitFor(t, "the router to settle both copies", func() error {
		if err := drained(t, js, events.EventsStream, events.RouterConsumer)(); err != nil {
			return err
		}
		cons, _ := js.Consumer(t.Context(), events.EventsStream, events.RouterConsumer)
		if info, err := cons.Info(t.Context()); err != nil || info.AckFloor.Consumer < 2 {
			return fmt.Errorf("router acked fewer than two requests: %v", err)
		}
		return nil
	})
	router, err := workers.NewRouter(workers.RouterConfig{JetStream: js, Catalog: cat, Logger: quiet})
	if err != nil {
		t.Fatalf("new router: %v", err)
	}
	if err := router.Route(t.Context(), req); err != nil {
		t.Fatalf("route again: %v", err)
	}

	svc, _ := cat.Service("change-of-address")
	if n := natstest.StreamMessages(t, js, events.WorkStream); n != uint64(len(svc.Agencies)) {
		t.Errorf("the work stream holds %d messages, want %d", n, len(svc.Agencies))
	}
	evs := statusEvents(t, js)
	if len(evs) != 1 || evs[0].Status != events.StatusRouted {
		t.Errorf("status events %+v, want one routed event", evs)
	}
}

func TestRouter_RoutesABatchAroundARequestItCannotRoute(t *testing.T) {
	t.Parallel()
	cat := eventstest.Catalog(t)
	js := natstest.JetStream(t, cat.AgencyCodes()...)
	// Everything waits in the stream before the router starts, so it is
	// taken in one batch.
	const n = 40
	for i := range n {
		publishRequest(t, js, eventstest.ChangeOfAddress(fmt.Sprintf("req-%d", i)))
		if i == n/2 {
			publishRequest(t, js, eventstest.Request("req-bad", "moon-landing-permit", nil))
		}
	}
	router, err := workers.NewRouter(workers.RouterConfig{JetStream: js, Catalog: cat, Logger: quiet})
	if err != nil {
		t.Fatalf("new router: %v", err)
	}
	workertest.Run(t, "Router", router.Run)

	svc, _ := cat.Service("change-of-address")
	workertest.WaitFor(t, "every work item", func() error {
		if got, want := natstest.StreamMessages(t, js, events.WorkStream), uint64(n*len(svc.Agencies)); got != want {
			return fmt.Errorf("the work stream holds %d, want %d", got, want)
		}
		return nil
	})
	for _, i := range []int{0, n / 2, n - 1} {
		if routed, _ := eventWith(t, js, events.EventID(fmt.Sprintf("req-%d", i), "", events.StatusRouted)); !slices.Equal(routed.Agencies, svc.Agencies) {
			t.Errorf("req-%d routed to %v, want %v", i, routed.Agencies, svc.Agencies)
		}
	}
	if failed, _ := eventWith(t, js, events.EventID("req-bad", "", events.StatusFailed)); failed.Status != events.StatusFailed {
		t.Errorf("the unroutable request's event = %+v, want it failed", failed)
	}
	workertest.WaitFor(t, "the router to settle every request", drained(t, js, events.EventsStream, events.RouterConsumer))
}

// TestPipeline_RefusesARequestOfAnotherDeskThanItsSubjects plays an edge
// that publishes, on its own desk's subject, a request claiming another
// desk: the router routes it to no agency and the projector records
// nothing of it; it is dead-lettered as refused (once: both find the same
// message).
func TestPipeline_RefusesARequestOfAnotherDeskThanItsSubjects(t *testing.T) {
	t.Parallel()
	p := startPipeline(t, &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		return workers.Receipt{Status: events.StatusCompleted}, nil
	}}, natsbus.Topology{})
	forged := eventstest.Request("req-forged", "birth-certificate", map[string]any{"format": "online"})
	forged.DeskID = "desk-2"
	publish(t, p.js, events.RequestSubject("lisboa", "desk-1"), forged.ID, forged)
	waitForDeadLetters(t, p, 1)
	workertest.WaitFor(t, "the projector to settle the forged request", drained(t, p.js, events.EventsStream, events.ProjectorConsumer))
	workertest.WaitFor(t, "the router to settle the forged request", drained(t, p.js, events.EventsStream, events.RouterConsumer))
	dead, err := p.store.ListDeadLetters(t.Context(), events.DeadLetterQuery{Pending: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dead {
		if d.Reason != events.ReasonRefused || !strings.Contains(d.LastError, "published on spotflow.requests.lisboa.desk-1") {
			t.Errorf("dead letter %+v, want the forged request refused with the reason", d)
		}
	}
	var n int
	if err := p.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM requests WHERE id = 'req-forged'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the projection recorded the forged request %d times (err %v)", n, err)
	}
	if n := natstest.StreamMessages(t, p.js, events.WorkStream); n != 0 {
		t.Errorf("the forged request made %d work items", n)
	}
}
