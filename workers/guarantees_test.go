package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// pipeline runs every role but intake against a fresh JetStream and schema,
// with adapter answering for every agency of the catalogue.
type pipeline struct {
	js    jetstream.JetStream
	store *postgres.Store
}

func startPipeline(t *testing.T, adapter workers.Adapter, topology natsbus.Topology) *pipeline {
	t.Helper()
	p := startPipelineWithout(t, adapter, topology)
	router, err := workers.NewRouter(workers.RouterConfig{JetStream: p.js, Catalog: eventstest.Catalog(t), DeadLetters: p.store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "Router", router.Run)
	return p
}

// startPipelineWithout runs every role but intake and the router.
func startPipelineWithout(t *testing.T, adapter workers.Adapter, topology natsbus.Topology) *pipeline {
	t.Helper()
	cat := eventstest.Catalog(t)
	p := &pipeline{js: natstest.JetStream(t), store: pgtest.Store(t)}
	topology.Agencies = cat.AgencyCodes()
	if err := natsbus.Provision(t.Context(), p.js, topology); err != nil {
		t.Fatal(err)
	}
	adapters := make(map[string]workers.Adapter)
	for _, a := range cat.AgencyCodes() {
		adapters[a] = adapter
	}
	adapters[events.SourcePractice] = workers.PracticeAgency{}
	dispatcher, err := workers.NewDispatcher(workers.DispatcherConfig{
		JetStream: p.js, Adapters: adapters, DeadLetters: p.store, RetryFor: 50 * time.Millisecond, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	projector, err := workers.NewProjector(workers.ProjectorConfig{JetStream: p.js, Store: p.store, DeadLetters: p.store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	undelivered, err := workers.NewUndelivered(workers.UndeliveredConfig{JetStream: p.js, Store: p.store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "Dispatcher", dispatcher.Run)
	workertest.Run(t, "Projector", projector.Run)
	workertest.Run(t, "Undelivered", undelivered.Run)
	return p
}

// accept binds a key to req as intake does, and returns req's desk.
func (p *pipeline) accept(t *testing.T, req *events.Request, publish bool) events.Desk {
	t.Helper()
	ctx := t.Context()
	desk, _, err := p.store.CreateDesk(ctx, "lisboa", "Desk "+req.ID)
	if err != nil {
		t.Fatal(err)
	}
	req.DeskID, req.Municipality = desk.ID, desk.Municipality
	id, _, err := p.store.ClaimKey(ctx, events.KeyClaim{DeskID: desk.ID, Key: "k-" + req.ID, ServiceCode: req.ServiceCode, Body: []byte(req.ID), NewID: req.ID})
	if err != nil || id != req.ID {
		t.Fatalf("claim key: %q %v", id, err)
	}
	message, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if publish {
		pub := natsbus.NewPublisher(p.js)
		if err := pub.Publish(ctx, natsbus.Outgoing{Subject: events.RequestSubject(desk.Municipality, desk.ID), ID: req.ID, Value: req}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.store.MarkPublished(ctx, req.ID, message); err != nil {
		t.Fatal(err)
	}
	return desk
}

func (p *pipeline) waitForStatus(t *testing.T, desk events.Desk, id string, want events.Status) *events.RequestView {
	t.Helper()
	var v *events.RequestView
	workertest.WaitFor(t, fmt.Sprintf("request %s to be %s", id, want), func() error {
		var err error
		v, err = p.store.RequestForDesk(t.Context(), desk.ID, id)
		if err != nil {
			return err
		}
		if v.Status != want {
			return fmt.Errorf("status %s, timeline %v", v.Status, timelineOf(v))
		}
		return nil
	})
	return v
}

func TestUndelivered_DeadLettersAWorkItemWhoseDeliveriesRunOut(t *testing.T) {
	t.Parallel()
	unreachable := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		return workers.Receipt{}, errors.New("connection refused")
	}}
	p := startPipeline(t, unreachable, natsbus.Topology{MaxDeliveries: 2})
	req := eventstest.Request("req-undelivered", "birth-certificate", map[string]any{"format": "paper"})
	desk := p.accept(t, req, true)

	v := p.waitForStatus(t, desk, req.ID, events.StatusFailed)
	if v.WorkItems[0].Status != events.StatusFailed {
		t.Errorf("work item %+v, want failed", v.WorkItems[0])
	}
	dead, err := p.store.ListDeadLetters(t.Context(), events.DeadLetterQuery{Agency: "civil-registry"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Reason != events.ReasonMaxDeliveries || dead[0].WorkItemID != req.ID+".civil-registry" || dead[0].Attempts != 2 {
		t.Fatalf("dead letters %+v, want one max_deliveries dead letter of the work item after 2 attempts", dead)
	}
	workertest.WaitFor(t, "the work item to leave the work queue", func() error {
		if n := natstest.StreamMessages(t, p.js, events.WorkStream); n != 0 {
			return fmt.Errorf("%d messages in the work stream", n)
		}
		return nil
	})
	if calls := len(unreachable.Calls()); calls < 2 {
		t.Errorf("adapter called %d times, want at least one call per delivery", calls)
	}
}

func TestReplay_DeliversAFailedWorkItemAgainInANewRound(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	agency := &fakeAdapter{answer: func(n int, item events.WorkItem) (workers.Receipt, error) {
		if calls.Add(1) == 1 {
			return workers.Receipt{}, events.Permanent(errors.New("agency refused: licence register offline for maintenance"))
		}
		return workers.Receipt{Status: events.StatusCompleted, Note: "done"}, nil
	}}
	p := startPipeline(t, agency, natsbus.Topology{})
	req := eventstest.Request("req-replay", "driving-licence-renewal", map[string]any{"licence_number": "L-1", "categories": []string{"B"}})
	desk := p.accept(t, req, true)
	p.waitForStatus(t, desk, req.ID, events.StatusFailed)

	ctx := t.Context()
	dead, err := p.store.ListDeadLetters(ctx, events.DeadLetterQuery{Agency: "imt", Pending: true})
	if err != nil || len(dead) != 1 || dead[0].Reason != events.ReasonPermanent {
		t.Fatalf("dead letters %+v (err %v), want the refused work item", dead, err)
	}
	if err := workers.NewReplayer(p.store, p.js).Replay(ctx, dead[0].ID, events.By{Actor: "operator:ana"}); err != nil {
		t.Fatal(err)
	}
	v := p.waitForStatus(t, desk, req.ID, events.StatusCompleted)

	if got := agency.Calls(); len(got) != 2 || got[0] != got[1] {
		t.Errorf("agency received %v, want the same work item ID twice", got)
	}
	want := []string{"submitted", "routed", "imt dispatched", "imt failed", "failed", "imt routed", "imt dispatched", "imt completed", "completed"}
	if got := timelineOf(v); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("timeline %v, want %v", got, want)
	}
	var replayNote string
	for _, e := range v.Timeline {
		if e.Agency == "imt" && e.Status == events.StatusRouted {
			replayNote = e.Note
		}
	}
	if !strings.Contains(replayNote, "replayed by operator:ana") {
		t.Errorf("replay shows in the timeline as %q, want who replayed it", replayNote)
	}
	var actor, action string
	if err := p.store.Pool().QueryRow(ctx, `SELECT actor, action FROM audit_log`).Scan(&actor, &action); err != nil || actor != "operator:ana" || action != "replay" {
		t.Errorf("audit log holds %q %q (err %v), want operator:ana's replay", actor, action, err)
	}
	if _, err := p.store.Pool().Exec(ctx, `DELETE FROM audit_log`); err == nil {
		t.Error("deleting from the audit log succeeded; it must be append-only")
	}
	if pending, _ := p.store.ListDeadLetters(ctx, events.DeadLetterQuery{Agency: "imt", Pending: true}); len(pending) != 0 {
		t.Errorf("%d dead letters still pending after the replay", len(pending))
	}
}

func TestReconciler_RedrivesARequestLostAfterItWasAccepted(t *testing.T) {
	t.Parallel()
	agency := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		return workers.Receipt{Status: events.StatusCompleted}, nil
	}}
	p := startPipeline(t, agency, natsbus.Topology{})
	reconciler, err := workers.NewReconciler(workers.ReconcilerConfig{JetStream: p.js, Store: p.store, After: 300 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	// Accepted, but the message never made it to disk: nothing is published.
	lost := eventstest.ChangeOfAddress("req-lost")
	desk := p.accept(t, lost, false)
	// A request that is merely on its way is left alone.
	ctx := t.Context()
	if n, err := reconciler.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("fresh request: re-drove %d (err %v), want 0", n, err)
	}
	workertest.WaitFor(t, "the lost request to be re-driven", func() error {
		n, err := reconciler.Reconcile(ctx)
		if err != nil || n != 1 {
			return fmt.Errorf("re-drove %d (err %v)", n, err)
		}
		return nil
	})
	v := p.waitForStatus(t, desk, lost.ID, events.StatusCompleted)
	if len(v.WorkItems) != 4 {
		t.Errorf("work items %+v, want change of address's four", v.WorkItems)
	}
	if n, err := reconciler.Reconcile(ctx); err != nil || n != 0 {
		t.Errorf("completed request: re-drove %d (err %v), want 0", n, err)
	}
}

func TestReplay_RoutesAFailedRequestAgainOnceItsServiceExists(t *testing.T) {
	t.Parallel()
	agency := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		return workers.Receipt{Status: events.StatusCompleted}, nil
	}}
	p := startPipelineWithout(t, agency, natsbus.Topology{})
	// A router whose catalogue lacks birth certificates dead-letters the
	// request; an operator replays it once a router knows the service.
	full := eventstest.Catalog(t)
	raw, err := json.Marshal(struct {
		Version  string           `json:"version"`
		Agencies []events.Agency  `json:"agencies"`
		Services []events.Service `json:"services"`
	}{full.Version, full.Agencies, slices.DeleteFunc(slices.Clone(full.Services), func(s events.Service) bool { return s.Code == "birth-certificate" })})
	if err != nil {
		t.Fatal(err)
	}
	older, err := events.ParseCatalog(raw)
	if err != nil {
		t.Fatal(err)
	}
	oldRouter, err := workers.NewRouter(workers.RouterConfig{JetStream: p.js, Catalog: older, DeadLetters: p.store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stopOld := context.WithCancel(t.Context())
	oldDone := make(chan error, 1)
	go func() { oldDone <- oldRouter.Run(ctx) }()

	req := eventstest.Request("req-unrouted", "birth-certificate", map[string]any{"format": "online"})
	desk := p.accept(t, req, true)
	p.waitForStatus(t, desk, req.ID, events.StatusFailed)
	stopOld()
	if err := <-oldDone; err != nil {
		t.Fatalf("old router: %v", err)
	}
	router, err := workers.NewRouter(workers.RouterConfig{JetStream: p.js, Catalog: full, DeadLetters: p.store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "Router", router.Run)

	dead, err := p.store.ListDeadLetters(t.Context(), events.DeadLetterQuery{Pending: true})
	if err != nil || len(dead) != 1 || dead[0].RequestID != req.ID || !strings.Contains(dead[0].LastError, "unknown service") {
		t.Fatalf("dead letters %+v (err %v), want the unroutable request", dead, err)
	}
	if err := workers.NewReplayer(p.store, p.js).Replay(t.Context(), dead[0].ID, events.By{Actor: "operator:ines"}); err != nil {
		t.Fatal(err)
	}
	v := p.waitForStatus(t, desk, req.ID, events.StatusCompleted)
	want := []string{"submitted", "failed", "routed", "civil-registry dispatched", "civil-registry completed", "completed"}
	if got := timelineOf(v); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("timeline %v, want %v", got, want)
	}
}

func TestReconciler_AnUnreadableKeptRequestDoesNotHoldBackTheOthers(t *testing.T) {
	t.Parallel()
	agency := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		return workers.Receipt{Status: events.StatusCompleted}, nil
	}}
	p := startPipeline(t, agency, natsbus.Topology{})
	// One request at a time, so that the unreadable one, first in line,
	// would block the other if it were never set aside.
	reconciler, err := workers.NewReconciler(workers.ReconcilerConfig{JetStream: p.js, Store: p.store, After: 300 * time.Millisecond, Batch: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	garbled := eventstest.ChangeOfAddress("req-garbled")
	p.accept(t, garbled, false)
	// As if sealed under another citizen key.
	if _, err := p.store.Pool().Exec(ctx, `UPDATE intake_keys SET sealed_request = decode(repeat('ab', 64), 'hex') WHERE request_id = $1`, garbled.ID); err != nil {
		t.Fatal(err)
	}
	lost := eventstest.ChangeOfAddress("req-lost-too")
	desk := p.accept(t, lost, false)

	workertest.WaitFor(t, "the readable request to be re-driven", func() error {
		n, err := reconciler.Reconcile(ctx)
		if err != nil || n != 1 {
			return fmt.Errorf("re-drove %d (err %v)", n, err)
		}
		return nil
	})
	p.waitForStatus(t, desk, lost.ID, events.StatusCompleted)
}
