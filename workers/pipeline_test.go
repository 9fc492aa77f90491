package workers_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/intaketest"
	"github.com/spotflow/spotflow/workers/simagency"
	"github.com/spotflow/spotflow/workers/workertest"
)

func TestPipeline_CarriesRequestsFromTheDeskToTheirOutcome(t *testing.T) {
	t.Parallel()
	cat := eventstest.Catalog(t)
	desk := intaketest.Start(t, nil)
	// The intake's JetStream has no agency consumers yet; every role
	// provisions at start, so do it again with the agencies.
	js := desk.JS
	if err := natsbus.Provision(t.Context(), js, natsbus.Topology{Agencies: cat.AgencyCodes()}); err != nil {
		t.Fatalf("provision: %v", err)
	}

	router, err := workers.NewRouter(workers.RouterConfig{JetStream: js, Catalog: cat, Logger: quiet})
	if err != nil {
		t.Fatalf("new router: %v", err)
	}
	workertest.Run(t, "Router", router.Run)
	profiles, err := simagency.ParseProfiles("*:latency=1ms;tax:reject=1")
	if err != nil {
		t.Fatalf("parse profiles: %v", err)
	}
	adapters := make(map[string]workers.Adapter)
	agencies := make(map[string]*simagency.Agency)
	for _, code := range cat.AgencyCodes() {
		agencies[code] = simagency.New(code, simagency.For(profiles, code))
		adapters[code] = agencies[code]
	}
	dispatcher, err := workers.NewDispatcher(workers.DispatcherConfig{JetStream: js, Adapters: adapters, Logger: quiet})
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	workertest.Run(t, "Dispatcher", dispatcher.Run)
	projector, err := workers.NewProjector(workers.ProjectorConfig{JetStream: js, Store: desk.Store, Logger: quiet})
	if err != nil {
		t.Fatalf("new projector: %v", err)
	}
	workertest.Run(t, "Projector", projector.Run)

	submit := func(key string, req *events.Request) string {
		t.Helper()
		id, _, err := desk.Intake.Accept(t.Context(), desk.Desk, key, &events.Submission{
			ServiceCode: req.ServiceCode, Citizen: &req.Citizen, Attributes: req.Attributes, Mediator: req.Mediator,
		})
		if err != nil {
			t.Fatalf("accept %s: %v", key, err)
		}
		return id
	}
	birth := submit("birth-1", eventstest.Request("", "birth-certificate", map[string]any{"format": "online"}))
	move := submit("move-1", eventstest.ChangeOfAddress(""))

	read := func(id string, want events.Status) *events.RequestView {
		var v *events.RequestView
		workertest.WaitFor(t, fmt.Sprintf("request %s to be %s", id, want), func() error {
			var err error
			if v, err = desk.Store.RequestForDesk(t.Context(), desk.Desk.ID, id); err != nil {
				return err
			}
			if v.Status != want || !slices.ContainsFunc(v.Timeline, func(e events.TimelineEntry) bool { return e.Agency == "" && e.Status == want }) {
				return fmt.Errorf("request is %s with timeline %v", v.Status, timelineOf(v))
			}
			return nil
		})
		return v
	}

	v := read(birth, events.StatusCompleted)
	want := []string{"submitted", "routed", "civil-registry dispatched", "civil-registry completed", "completed"}
	if got := timelineOf(v); !slices.Equal(got, want) {
		t.Errorf("birth certificate timeline = %v, want %v", got, want)
	}

	// tax rejects every work item: the change of address is rejected,
	// whatever the three other agencies answer.
	v = read(move, events.StatusRejected)
	if len(v.WorkItems) != 4 {
		t.Fatalf("change of address has work items %+v, want four", v.WorkItems)
	}
	for _, w := range v.WorkItems {
		if w.Agency == "tax" && w.Status != events.StatusRejected {
			t.Errorf("tax's work item is %s, want rejected", w.Status)
		}
	}
	workertest.WaitFor(t, "every agency to apply its work item", func() error {
		for _, code := range []string{"civil-registry", "tax", "social-security", "sns"} {
			want := 1
			if code == "civil-registry" {
				want = 2
			}
			if got := agencies[code].Applied(); got != want {
				return fmt.Errorf("%s applied %d work items, want %d", code, got, want)
			}
		}
		return nil
	})
	if n := natstest.StreamMessages(t, js, events.WorkStream); n != 0 {
		t.Errorf("the work stream still holds %d work items", n)
	}
}
