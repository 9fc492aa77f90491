package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// startProjector runs a projector from a fresh JetStream into a fresh
// schema, and subscribes to the reasons of the messages it terminates.
func startProjector(t *testing.T, unknownRequestFor time.Duration) (jetstream.JetStream, *postgres.Store, <-chan string) {
	t.Helper()
	store := pgtest.Store(t)
	js := natstest.JetStream(t)
	terminated := make(chan string, 16)
	sub, err := js.Conn().Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."+events.EventsStream+"."+events.ProjectorConsumer,
		func(m *nats.Msg) {
			var adv struct {
				Reason string `json:"reason"`
			}
			_ = json.Unmarshal(m.Data, &adv)
			terminated <- adv.Reason
		})
	if err != nil {
		t.Fatalf("subscribe to termination advisories: %v", err)
	}
	if err := js.Conn().Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	p, err := workers.NewProjector(workers.ProjectorConfig{
		JetStream: js, Store: store, UnknownRequestFor: unknownRequestFor, Logger: quiet,
	})
	if err != nil {
		t.Fatalf("new projector: %v", err)
	}
	workertest.Run(t, "Projector", p.Run)
	return js, store, terminated
}

// timeline of one request: its events are published at a second apiece
// after its submission.
type timeline struct {
	req  *events.Request
	tick int
}

// event builds the next status event of the request, or of its work item
// when agency is set.
func (tl *timeline) event(agency string, status events.Status, note string, agencies ...string) events.StatusEvent {
	tl.tick++
	actor := events.SourceRouter
	if agency != "" {
		actor = "agency:" + agency
	}
	return events.StatusEvent{
		Schema: events.SchemaStatus, ID: events.EventID(tl.req.ID, agency, status), RequestID: tl.req.ID,
		Agency: agency, Status: status, At: tl.req.SubmittedAt.Add(time.Duration(tl.tick) * time.Second),
		Actor: actor, Note: note, Agencies: agencies,
	}
}

// publishEvent publishes ev on its source's subject under msgID.
func publishEvent(t *testing.T, js jetstream.JetStream, ev events.StatusEvent, msgID string) {
	t.Helper()
	publish(t, js, events.StatusSubject(events.SourceOf(&ev)), msgID, ev)
}

// view waits until the desk's view of the request satisfies ok.
func view(t *testing.T, store *postgres.Store, requestID, what string, ok func(v *events.RequestView) error) *events.RequestView {
	t.Helper()
	var got *events.RequestView
	workertest.WaitFor(t, what, func() error {
		v, err := store.RequestForDesk(t.Context(), "desk-1", requestID)
		if err != nil {
			return err
		}
		got = v
		return ok(v)
	})
	return got
}

func hasStatus(want events.Status) func(v *events.RequestView) error {
	return func(v *events.RequestView) error {
		if v.Status != want {
			return fmt.Errorf("request is %s", v.Status)
		}
		return nil
	}
}

func timelineOf(v *events.RequestView) []string {
	out := make([]string, len(v.Timeline))
	for i, e := range v.Timeline {
		out[i] = strings.TrimPrefix(e.Agency+" "+string(e.Status), " ")
	}
	return out
}

func TestProjector_RecordsEventsInPostgres(t *testing.T) {
	t.Parallel()
	js, store, _ := startProjector(t, 0)
	req := eventstest.ChangeOfAddress("req-1")
	req.VisitID = "visit-1"
	tl := &timeline{req: req}
	publishRequest(t, js, req)
	for _, ev := range []events.StatusEvent{
		tl.event("", events.StatusRouted, "", "tax", "sns"),
		tl.event("tax", events.StatusDispatched, ""),
		tl.event("sns", events.StatusDispatched, ""),
		tl.event("tax", events.StatusCompleted, "address updated"),
		tl.event("sns", events.StatusAccepted, ""),
	} {
		publishEvent(t, js, ev, ev.ID)
	}

	v := view(t, store, "req-1", "the request to be accepted", hasStatus(events.StatusAccepted))
	if v.ServiceCode != "change-of-address" || v.VisitID != "visit-1" || !v.CreatedAt.Equal(req.SubmittedAt) {
		t.Errorf("request = %+v, want change-of-address of visit-1 submitted at %v", v, req.SubmittedAt)
	}
	wantItems := []events.WorkItemView{
		{Agency: "sns", Status: events.StatusAccepted, UpdatedAt: req.SubmittedAt.Add(5 * time.Second)},
		{Agency: "tax", Status: events.StatusCompleted, UpdatedAt: req.SubmittedAt.Add(4 * time.Second)},
	}
	if len(v.WorkItems) != 2 {
		t.Fatalf("work items = %+v, want %+v", v.WorkItems, wantItems)
	}
	for i, w := range wantItems {
		if got := v.WorkItems[i]; got.Agency != w.Agency || got.Status != w.Status || !got.UpdatedAt.Equal(w.UpdatedAt) {
			t.Errorf("work item %d = %+v, want %+v", i, got, w)
		}
	}
	want := []string{"submitted", "routed", "tax dispatched", "sns dispatched", "tax completed", "sns accepted"}
	if got := timelineOf(v); !slices.Equal(got, want) {
		t.Errorf("timeline = %v, want %v", got, want)
	}
	if note := v.Timeline[4].Note; note != "address updated" {
		t.Errorf("tax's completion note = %q, want the agency's", note)
	}

	last := tl.event("sns", events.StatusCompleted, "")
	publishEvent(t, js, last, last.ID)
	v = view(t, store, "req-1", "the request to be completed", hasStatus(events.StatusCompleted))
	if got := timelineOf(v); len(got) != 8 || got[6] != "sns completed" || got[7] != "completed" {
		t.Errorf("timeline = %v, want sns's completion and then the request's", got)
	}
}

func TestProjector_AppliesTheSameEventOnce(t *testing.T) {
	t.Parallel()
	js, store, _ := startProjector(t, 0)
	req := eventstest.Request("req-2", "tax-id-certificate", map[string]any{"tax_number": "123456789", "year": 2025})
	tl := &timeline{req: req}
	evs := []events.StatusEvent{
		tl.event("", events.StatusRouted, "", "tax"),
		tl.event("tax", events.StatusDispatched, ""),
		tl.event("tax", events.StatusCompleted, ""),
	}
	// Each message twice under different Nats-Msg-Ids, as when a retry comes
	// after JetStream's deduplication window.
	for _, copy := range []string{"", "-again"} {
		publish(t, js, events.RequestSubject(req.Municipality, req.DeskID), req.ID+copy, req)
		for _, ev := range evs {
			publishEvent(t, js, ev, ev.ID+copy)
		}
	}
	if n := natstest.StreamMessages(t, js, events.EventsStream); n != 8 {
		t.Fatalf("the events stream holds %d messages, want 8", n)
	}
	workertest.WaitFor(t, "the projector to settle all eight", func() error {
		if err := drained(t, js, events.EventsStream, events.ProjectorConsumer)(); err != nil {
			return err
		}
		cons, _ := js.Consumer(t.Context(), events.EventsStream, events.ProjectorConsumer)
		if info, err := cons.Info(t.Context()); err != nil || info.AckFloor.Stream != 8 {
			return fmt.Errorf("acked up to %d (%v)", info.AckFloor.Stream, err)
		}
		return nil
	})

	v := view(t, store, "req-2", "the request", hasStatus(events.StatusCompleted))
	want := []string{"submitted", "routed", "tax dispatched", "tax completed", "completed"}
	if got := timelineOf(v); !slices.Equal(got, want) {
		t.Errorf("timeline = %v, want each event once: %v", got, want)
	}
	if _, err := store.FoldRollups(t.Context()); err != nil {
		t.Fatalf("fold roll-ups: %v", err)
	}
	var counted int64
	if err := store.Pool().QueryRow(t.Context(), `SELECT sum(events) FROM throughput_minute`).Scan(&counted); err != nil {
		t.Fatalf("read throughput: %v", err)
	}
	if counted != int64(len(want)) {
		t.Errorf("throughput counts %d events, want %d", counted, len(want))
	}
}

func TestProjector_RecordsTheDispatchedEventAnAnswerCarries(t *testing.T) {
	t.Parallel()
	js, store, _ := startProjector(t, 0)
	req := eventstest.ChangeOfAddress("req-4")
	tl := &timeline{req: req}
	publishRequest(t, js, req)
	routed := tl.event("", events.StatusRouted, "", "tax", "sns")
	publishEvent(t, js, routed, routed.ID)
	// tax answered at once: one message. sns was slow: its dispatched event
	// went on its own, and its answer, redelivered, carries it again.
	taxDispatchedAt := tl.req.SubmittedAt.Add(2 * time.Second)
	tax := tl.event("tax", events.StatusCompleted, "address updated")
	tax.DispatchedAt = taxDispatchedAt
	snsDispatched := tl.event("sns", events.StatusDispatched, "")
	snsDispatched.Actor = events.ActorDispatcher
	sns := tl.event("sns", events.StatusCompleted, "")
	sns.DispatchedAt = snsDispatched.At
	for _, ev := range []events.StatusEvent{tax, snsDispatched, sns} {
		publishEvent(t, js, ev, ev.ID)
	}

	v := view(t, store, "req-4", "the request to be completed", hasStatus(events.StatusCompleted))
	want := []string{"submitted", "routed", "tax dispatched", "tax completed", "sns dispatched", "sns completed", "completed"}
	if got := timelineOf(v); !slices.Equal(got, want) {
		t.Fatalf("timeline = %v, want %v", got, want)
	}
	if d := v.Timeline[2]; !d.At.Equal(taxDispatchedAt) {
		t.Errorf("tax's dispatched event = %+v, want it at %v", d, taxDispatchedAt)
	}
	if _, err := store.FoldRollups(t.Context()); err != nil {
		t.Fatalf("fold roll-ups: %v", err)
	}
	var dispatched int
	err := store.Pool().QueryRow(t.Context(), `
		SELECT sum(submitted) FROM dashboard_counts WHERE grain = 'minute' AND scope = '' AND dim = 'agency'`).Scan(&dispatched)
	if err != nil {
		t.Fatalf("read dashboard counts: %v", err)
	}
	if dispatched != 2 {
		t.Errorf("the dashboard counts %d dispatches, want 2 (one per work item)", dispatched)
	}
}

func TestProjector_RefusesAStatusPublishedForSomeoneElse(t *testing.T) {
	t.Parallel()
	js, store, terminated := startProjector(t, 0)
	req := eventstest.ChangeOfAddress("req-3")
	tl := &timeline{req: req}
	publishRequest(t, js, req)
	routed := tl.event("", events.StatusRouted, "", "tax", "sns")
	publishEvent(t, js, routed, routed.ID)
	// sns reports tax's work item completed, and tax reports the whole
	// request rejected: neither may speak for the other.
	forged := tl.event("tax", events.StatusCompleted, "")
	publish(t, js, events.StatusSubject("sns"), forged.ID, forged)
	overreach := tl.event("", events.StatusRejected, "")
	publish(t, js, events.StatusSubject("tax"), overreach.ID, overreach)
	own := tl.event("sns", events.StatusAccepted, "")
	publishEvent(t, js, own, own.ID)

	reasons := []string{receive(t, terminated, "a termination"), receive(t, terminated, "another termination")}
	slices.Sort(reasons)
	if !strings.Contains(reasons[0], `req-3.rejected (rejected of "") published by "tax", which only "router" may publish`) ||
		!strings.Contains(reasons[1], `req-3.tax.completed (completed of "tax") published by "sns", which only "tax" may publish`) {
		t.Errorf("termination reasons = %q, want both forgeries named", reasons)
	}
	workertest.WaitFor(t, "the projector to settle every event", drained(t, js, events.EventsStream, events.ProjectorConsumer))
	v := view(t, store, "req-3", "sns's acceptance", func(v *events.RequestView) error {
		if len(v.WorkItems) != 2 || v.WorkItems[0].Status != events.StatusAccepted {
			return fmt.Errorf("work items %+v", v.WorkItems)
		}
		return nil
	})
	if v.Status != events.StatusRouted || v.WorkItems[1].Agency != "tax" || v.WorkItems[1].Status != events.StatusRouted {
		t.Errorf("request %s with work items %+v; want it routed, tax's still routed", v.Status, v.WorkItems)
	}
	if got, want := timelineOf(v), []string{"submitted", "routed", "sns accepted"}; !slices.Equal(got, want) {
		t.Errorf("timeline = %v, want %v", got, want)
	}
}

func TestProjector_TerminatesMalformedMessagesWithoutBlockingOthers(t *testing.T) {
	t.Parallel()
	js, store, terminated := startProjector(t, 0)
	ctx := t.Context()
	raw := []struct{ subject, data string }{
		{events.StatusSubject("tax"), `{not json`},
		{events.StatusSubject("tax"), `{"schema":"spotflow.status.v9","id":"x","request_id":"req-4","status":"completed","at":"2026-01-01T00:00:00Z"}`},
		{events.RequestSubject("lisboa", "desk-1"), `{"schema":"spotflow.request.v1"}`},
	}
	for i, m := range raw {
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: m.subject, Data: []byte(m.data)}, jetstream.WithMsgID(fmt.Sprint("raw-", i))); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	req := eventstest.Request("req-4", "birth-certificate", map[string]any{"format": "paper"})
	publishRequest(t, js, req)
	routed := (&timeline{req: req}).event("", events.StatusRouted, "", "civil-registry")
	publishEvent(t, js, routed, routed.ID)

	view(t, store, "req-4", "the valid request to be routed", hasStatus(events.StatusRouted))
	var reasons []string
	for range raw {
		reasons = append(reasons, receive(t, terminated, "a malformed message to be terminated"))
	}
	slices.Sort(reasons)
	for i, want := range []string{"decode request", "decode status event: invalid character", "decode status event: unexpected schema"} {
		if !strings.Contains(reasons[i], want) {
			t.Errorf("termination reasons = %q, want one with %q", reasons, want)
		}
	}
	workertest.WaitFor(t, "the projector to settle every message", drained(t, js, events.EventsStream, events.ProjectorConsumer))
}

func TestProjector_RetriesAnEventThatArrivesBeforeItsRequest(t *testing.T) {
	t.Parallel()
	js, store, terminated := startProjector(t, time.Second)
	early := eventstest.Request("req-5", "birth-certificate", map[string]any{"format": "paper"})
	routed := (&timeline{req: early}).event("", events.StatusRouted, "", "civil-registry")
	publishEvent(t, js, routed, routed.ID)
	orphan := (&timeline{req: eventstest.Request("req-never", "birth-certificate", nil)}).event("", events.StatusRouted, "", "civil-registry")
	publishEvent(t, js, orphan, orphan.ID)
	workertest.WaitFor(t, "both events to be tried once", func() error {
		cons, err := js.Consumer(t.Context(), events.EventsStream, events.ProjectorConsumer)
		if err != nil {
			return err
		}
		info, err := cons.Info(t.Context())
		if err != nil {
			return err
		}
		if info.Delivered.Stream < 2 {
			return fmt.Errorf("delivered up to stream sequence %d", info.Delivered.Stream)
		}
		return nil
	})
	publishRequest(t, js, early)

	v := view(t, store, "req-5", "the early event to be applied", hasStatus(events.StatusRouted))
	if got := timelineOf(v); !slices.Equal(got, []string{"submitted", "routed"}) {
		t.Errorf("timeline = %v, want submitted then routed", got)
	}
	reason := receive(t, terminated, "the orphan event to be given up on")
	if !strings.Contains(reason, "req-never") || !strings.Contains(reason, events.ErrUnknownRequest.Error()) {
		t.Errorf("termination reason = %q, want the orphan's unknown request", reason)
	}
	workertest.WaitFor(t, "the projector to settle every message", drained(t, js, events.EventsStream, events.ProjectorConsumer))
}

// holdingStore projects into a store, but holds the batch that carries one
// event until released, and notes the events it is given meanwhile.
type holdingStore struct {
	*postgres.Store
	hold             string
	held, released   chan struct{}
	heldOnce, unheld sync.Once

	mu        sync.Mutex
	holding   bool
	meanwhile []string
}

func newHoldingStore(store *postgres.Store, hold string) *holdingStore {
	return &holdingStore{Store: store, hold: hold, held: make(chan struct{}), released: make(chan struct{})}
}

func (s *holdingStore) Project(ctx context.Context, changes []events.Change) []error {
	ids := make([]string, len(changes))
	for i, c := range changes {
		if c.Event != nil {
			ids[i] = c.Event.ID
		} else {
			ids[i] = c.Request.SubmittedEvent().ID
		}
	}
	if slices.Contains(ids, s.hold) {
		s.heldOnce.Do(func() {
			s.setHolding(true)
			close(s.held)
			<-s.released
			s.setHolding(false)
		})
	} else {
		s.mu.Lock()
		if s.holding {
			s.meanwhile = append(s.meanwhile, ids...)
		}
		s.mu.Unlock()
	}
	return s.Store.Project(ctx, changes)
}

func (s *holdingStore) setHolding(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding = on
}

// release lets the held batch go on.
func (s *holdingStore) release() { s.unheld.Do(func() { close(s.released) }) }

// projectedMeanwhile is the events the store was given while it held the
// batch.
func (s *holdingStore) projectedMeanwhile() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.meanwhile)
}

func TestProjector_AppliesARequestsEventsInTheOrderTheyArrived(t *testing.T) {
	t.Parallel()
	req := eventstest.Request("req-order", "driving-licence-renewal", map[string]any{"licence_number": "L-1", "categories": []string{"B"}})
	tl := &timeline{req: req}
	routed := tl.event("", events.StatusRouted, "", "imt")
	dispatched := tl.event("imt", events.StatusDispatched, "")
	failed := tl.event("imt", events.StatusFailed, "agency refused")
	// The batch of the routed event is slow to commit; the agency's events,
	// which only that batch makes known, arrive in the meantime.
	store := newHoldingStore(pgtest.Store(t), routed.ID)
	js := natstest.JetStream(t)
	p, err := workers.NewProjector(workers.ProjectorConfig{JetStream: js, Store: store, Logger: quiet})
	if err != nil {
		t.Fatalf("new projector: %v", err)
	}
	workertest.Run(t, "Projector", p.Run)
	t.Cleanup(store.release)

	publishRequest(t, js, req)
	publishEvent(t, js, routed, routed.ID)
	receive(t, store.held, "the routed event's batch to be in hand")
	publishEvent(t, js, dispatched, dispatched.ID)
	publishEvent(t, js, failed, failed.ID)
	// Other requests, after them in the stream, some of which the projector
	// applies alongside the held batch.
	others := []string{"req-other-1", "req-other-2", "req-other-3", "req-other-4"}
	for _, id := range others {
		publishRequest(t, js, eventstest.ChangeOfAddress(id))
	}
	workertest.WaitFor(t, "another request to be projected while the batch is held", func() error {
		for _, id := range others {
			if _, err := store.RequestForDesk(t.Context(), "desk-1", id); err == nil {
				return nil
			}
		}
		return errors.New("none projected yet")
	})
	if got := store.projectedMeanwhile(); slices.Contains(got, dispatched.ID) || slices.Contains(got, failed.ID) {
		t.Errorf("while the routed event's batch was in hand, the store was given %v; want none of req-order's later events", got)
	}
	store.release()

	v := view(t, store.Store, req.ID, "the request to fail", hasStatus(events.StatusFailed))
	want := []string{"submitted", "routed", "imt dispatched", "imt failed", "failed"}
	if got := timelineOf(v); !slices.Equal(got, want) {
		t.Errorf("timeline = %v once the request reads failed, want %v", got, want)
	}
	workertest.WaitFor(t, "the projector to settle every message", drained(t, js, events.EventsStream, events.ProjectorConsumer))
}

// receive waits up to 20s for a value from ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("gave up after 20s waiting for %s", what)
	}
	panic("unreachable")
}

func TestProjector_WaitsForTheRequestOfAnAcceptedEventHoweverLate(t *testing.T) {
	t.Parallel()
	// Events naming a request nobody accepted are given up on after 200ms;
	// this one's request was accepted by intake, so it is waited for.
	js, store, terminated := startProjector(t, 200*time.Millisecond)
	ctx := t.Context()
	late := eventstest.Request("req-late", "birth-certificate", map[string]any{"format": "paper"})
	desk, _, err := store.CreateDesk(ctx, "lisboa", "Desk")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.ClaimKey(ctx, events.KeyClaim{DeskID: desk.ID, Key: "k", ServiceCode: late.ServiceCode, Body: []byte("b"), NewID: late.ID}); err != nil {
		t.Fatal(err)
	}
	routed := (&timeline{req: late}).event("", events.StatusRouted, "", "civil-registry")
	publishEvent(t, js, routed, routed.ID)
	time.Sleep(700 * time.Millisecond) // well past UnknownRequestFor, on purpose
	publishRequest(t, js, late)

	v := view(t, store, "req-late", "the late request and its event to be applied", hasStatus(events.StatusRouted))
	if got := timelineOf(v); !slices.Equal(got, []string{"submitted", "routed"}) {
		t.Errorf("timeline = %v, want submitted then routed", got)
	}
	select {
	case reason := <-terminated:
		t.Errorf("an event of an accepted request was terminated: %s", reason)
	default:
	}
}

func TestProjector_AForgedOutcomeDoesNotRewriteACompletedRequest(t *testing.T) {
	t.Parallel()
	store := pgtest.Store(t)
	js := natstest.JetStream(t)
	reg := prometheus.NewRegistry()
	metrics, err := workers.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := workers.NewProjector(workers.ProjectorConfig{
		JetStream: js, Store: store, DeadLetters: store, Metrics: metrics, UnknownRequestFor: 300 * time.Millisecond, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "Projector", p.Run)

	req := eventstest.Request("req-cert", "criminal-record-certificate", map[string]any{"purpose": "employment"})
	tl := &timeline{req: req}
	publishRequest(t, js, req)
	for _, ev := range []events.StatusEvent{
		tl.event("", events.StatusRouted, "", "justice"),
		tl.event("justice", events.StatusDispatched, ""),
		tl.event("justice", events.StatusCompleted, "Certificado emitido"),
	} {
		publishEvent(t, js, ev, ev.ID)
	}
	view(t, store, req.ID, "the request to complete", func(v *events.RequestView) error {
		if v.Status != events.StatusCompleted {
			return fmt.Errorf("status %s", v.Status)
		}
		return nil
	})

	// On justice's own subject: another end in the same round, and one in a
	// round no replay opened.
	rival := tl.event("justice", events.StatusRejected, "")
	publishEvent(t, js, rival, rival.ID)
	invented := tl.event("justice", events.StatusRejected, "")
	invented.Round, invented.ID = 99, events.RoundEventID(req.ID, "justice", events.StatusRejected, 99)
	publishEvent(t, js, invented, invented.ID)

	workertest.WaitFor(t, "both forgeries to be dead-lettered", func() error {
		dead, err := store.ListDeadLetters(t.Context(), events.DeadLetterQuery{Agency: "justice"})
		if err != nil {
			return err
		}
		var rules []string
		for _, d := range dead {
			if d.Reason != events.ReasonRefused {
				return fmt.Errorf("dead letter %+v, want reason refused", d)
			}
			rules = append(rules, d.LastError[:strings.Index(d.LastError, ")")+1])
		}
		slices.Sort(rules)
		if !slices.Equal(rules, []string{"refused (round)", "refused (terminal)"}) {
			return fmt.Errorf("dead letters refused for %q", rules)
		}
		return nil
	})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]float64{}
	for _, f := range families {
		if f.GetName() == "spotflow_status_events_refused_total" {
			for _, m := range f.GetMetric() {
				refused[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if want := map[string]float64{events.RuleRound: 1, events.RuleTerminal: 1}; !maps.Equal(refused, want) {
		t.Errorf("spotflow_status_events_refused_total by rule = %v, want %v", refused, want)
	}
	v := view(t, store, req.ID, "the request", func(*events.RequestView) error { return nil })
	if v.Status != events.StatusCompleted || v.WorkItems[0].Status != events.StatusCompleted {
		t.Errorf("request %s, work item %s; want both still completed", v.Status, v.WorkItems[0].Status)
	}
	if got, want := timelineOf(v), []string{"submitted", "routed", "justice dispatched", "justice completed", "completed"}; !slices.Equal(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
}
