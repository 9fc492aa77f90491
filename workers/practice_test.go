package workers_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers"
)

// TestPractice_RequestsReachOnlyThePracticeAgencyDoWhatTheTrainerChoseAndCountNowhere
// runs practice requests through the whole pipeline: no agency's adapter is
// called, each ends as its scenario says (a failure until an operator's
// replay), and nothing reaches the roll-ups, the agencies' dead letters or
// the agency API's view of work items.
func TestPractice_RequestsReachOnlyThePracticeAgencyDoWhatTheTrainerChoseAndCountNowhere(t *testing.T) {
	t.Parallel()
	agencies := &fakeAdapter{answer: func(int, events.WorkItem) (workers.Receipt, error) {
		return workers.Receipt{Status: events.StatusCompleted}, nil
	}}
	p := startPipeline(t, agencies, natsbus.Topology{})
	ctx := t.Context()
	practise := func(req *events.Request, outcome events.Practice) (*events.Request, events.Desk) {
		req.Practice = &outcome
		return req, p.accept(t, req, true)
	}
	move, moveDesk := practise(eventstest.ChangeOfAddress("practice-move"), events.Practice{Outcome: events.OutcomeComplete})
	licence := map[string]any{"licence_number": "L-1", "categories": []string{"B"}}
	rejected, rejectedDesk := practise(eventstest.Request("practice-reject", "driving-licence-renewal", licence),
		events.Practice{Outcome: events.OutcomeReject, Reason: "The photo does not meet the rules."})
	failed, failedDesk := practise(eventstest.Request("practice-fail", "driving-licence-renewal", licence),
		events.Practice{Outcome: events.OutcomeFail})
	slow, slowDesk := practise(eventstest.Request("practice-slow", "driving-licence-renewal", licence),
		events.Practice{Outcome: events.OutcomeSlow, DelaySeconds: 1})

	v := p.waitForStatus(t, moveDesk, move.ID, events.StatusCompleted)
	if !v.Training || len(v.WorkItems) != 4 {
		t.Errorf("practice change of address: training %t, work items %+v; want training, with its four agencies'", v.Training, v.WorkItems)
	}
	v = p.waitForStatus(t, rejectedDesk, rejected.ID, events.StatusRejected)
	if !slices.ContainsFunc(v.Timeline, func(e events.TimelineEntry) bool {
		return e.Agency == "imt" && e.Status == events.StatusRejected && e.Note == "The photo does not meet the rules."
	}) {
		t.Errorf("rejected practice request's timeline %+v lacks imt's rejection with the trainer's reason", v.Timeline)
	}
	p.waitForStatus(t, slowDesk, slow.ID, events.StatusCompleted)

	// The failure waits for an operator, on the practice agency's list.
	p.waitForStatus(t, failedDesk, failed.ID, events.StatusFailed)
	if dead, err := p.store.ListDeadLetters(ctx, events.DeadLetterQuery{Agency: "imt", Pending: true}); err != nil || len(dead) != 0 {
		t.Errorf("imt's dead letters %+v (err %v), want none: the failure is practice", dead, err)
	}
	dead, err := p.store.ListDeadLetters(ctx, events.DeadLetterQuery{Agency: events.SourcePractice, Pending: true})
	if err != nil || len(dead) != 1 || dead[0].RequestID != failed.ID {
		t.Fatalf("practice dead letters %+v (err %v), want the failed practice request's", dead, err)
	}
	if pending, err := p.store.PendingDeadLetters(ctx); err != nil || len(pending) != 0 {
		t.Errorf("the dashboard counts dead letters %v (err %v), want none", pending, err)
	}
	if err := workers.NewReplayer(p.store, p.js).Replay(ctx, dead[0].ID, events.By{Actor: "operator:ana"}); err != nil {
		t.Fatal(err)
	}
	v = p.waitForStatus(t, failedDesk, failed.ID, events.StatusCompleted)
	want := []string{"submitted", "routed", "imt dispatched", "imt failed", "failed", "imt routed", "imt dispatched", "imt completed", "completed"}
	if got := timelineOf(v); !slices.Equal(got, want) {
		t.Errorf("replayed practice request's timeline %v, want %v", got, want)
	}

	if calls := agencies.Calls(); len(calls) != 0 {
		t.Errorf("agencies' adapters were handed %v; practice reaches none", calls)
	}
	if _, err := p.store.WorkItemState(ctx, move.ID, "tax"); !errors.Is(err, events.ErrUnknownRequest) {
		t.Errorf("tax's view of a practice work item: %v, want it unknown", err)
	}
	if _, err := p.store.FoldRollups(ctx); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"throughput_minute", "dashboard_counts", "dashboard_latency", "dashboard_inbox"} {
		var n int
		if err := p.store.Pool().QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s holds %d rows (err %v); practice counts nowhere", table, n, err)
		}
	}
	var training int
	if err := p.store.Pool().QueryRow(ctx, `SELECT count(*) FROM requests WHERE training`).Scan(&training); err != nil || training != 4 {
		t.Errorf("%d requests marked training (err %v), want 4", training, err)
	}
}

// TestPractice_AnAgencyCannotAnswerAPracticeRequestNorThePracticeAgencyARealOne
// publishes the events a forger would: an agency's answer to a practice work
// item it was never given, and a practice answer to a real request. The
// projection refuses both, by the source rule.
func TestPractice_AnAgencyCannotAnswerAPracticeRequestNorThePracticeAgencyARealOne(t *testing.T) {
	t.Parallel()
	// The real agency never answers, so the forged events are the only
	// answers.
	p := startPipeline(t, silentAgency{}, natsbus.Topology{})
	ctx := t.Context()
	licence := map[string]any{"licence_number": "L-1", "categories": []string{"B"}}
	practice := eventstest.Request("forge-practice", "driving-licence-renewal", licence)
	practice.Practice = &events.Practice{Outcome: events.OutcomeSlow, DelaySeconds: 3600}
	practiceDesk := p.accept(t, practice, true)
	real := eventstest.Request("forge-real", "driving-licence-renewal", licence)
	realDesk := p.accept(t, real, true)
	p.waitForStatus(t, practiceDesk, practice.ID, events.StatusDispatched)
	p.waitForStatus(t, realDesk, real.ID, events.StatusDispatched)

	pub := natsbus.NewPublisher(p.js)
	forge := func(source string, req *events.Request, status events.Status, practice bool) {
		t.Helper()
		ev := events.StatusEvent{
			Schema: events.SchemaStatus, ID: events.RoundEventID(req.ID, "imt", status, 0), RequestID: req.ID,
			Agency: "imt", Status: status, At: time.Now().UTC(), Actor: "agency:imt", Practice: practice,
		}
		if err := pub.Publish(ctx, natsbus.Outgoing{Subject: events.StatusSubject(source), ID: ev.ID, Value: ev}); err != nil {
			t.Fatal(err)
		}
	}
	forge("imt", practice, events.StatusCompleted, false)
	forge(events.SourcePractice, real, events.StatusCompleted, true)
	// And an agency's event calling itself practice is not the practice
	// agency's.
	forge("imt", real, events.StatusRejected, true)

	waitForDeadLetters(t, p, 3)
	dead, err := p.store.ListDeadLetters(ctx, events.DeadLetterQuery{Agency: "imt", Pending: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dead {
		if d.Reason != events.ReasonRefused || !strings.Contains(d.LastError, "("+events.RuleSource+")") {
			t.Errorf("dead letter of %s: %s %q, want refused by the source rule", d.RequestID, d.Reason, d.LastError)
		}
	}
	for _, c := range []struct {
		desk events.Desk
		id   string
	}{{practiceDesk, practice.ID}, {realDesk, real.ID}} {
		v, err := p.store.RequestForDesk(ctx, c.desk.ID, c.id)
		if err != nil || v.Status != events.StatusDispatched {
			t.Errorf("request %s after forged answers: %+v (err %v), want still dispatched", c.id, v, err)
		}
	}
}

// silentAgency never answers: each delivery waits until it is given up.
type silentAgency struct{}

func (silentAgency) Deliver(ctx context.Context, _ events.WorkItem) (workers.Receipt, error) {
	<-ctx.Done()
	return workers.Receipt{}, ctx.Err()
}

func waitForDeadLetters(t *testing.T, p *pipeline, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		dead, err := p.store.ListDeadLetters(t.Context(), events.DeadLetterQuery{Pending: true})
		if err == nil && len(dead) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters %d (err %v), want %d", len(dead), err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPracticeAgency_AnswersAsTheScenarioSaysAndRefusesRealWork(t *testing.T) {
	t.Parallel()
	item := func(p *events.Practice, round int) events.WorkItem {
		return events.WorkItem{Schema: events.SchemaWorkItem, ID: "r.imt", RequestID: "r", Agency: "imt", Round: round, Practice: p}
	}
	ctx := t.Context()
	for _, c := range []struct {
		name    string
		item    events.WorkItem
		want    events.Status
		note    string
		permErr bool
	}{
		{"complete", item(&events.Practice{Outcome: events.OutcomeComplete}, 0), events.StatusCompleted, "", false},
		{"reject", item(&events.Practice{Outcome: events.OutcomeReject, Reason: "Missing form"}, 0), events.StatusRejected, "Missing form", false},
		{"fail in the first round", item(&events.Practice{Outcome: events.OutcomeFail}, 0), "", "", true},
		{"complete once replayed", item(&events.Practice{Outcome: events.OutcomeFail}, 1), events.StatusCompleted, "", false},
		{"slow", item(&events.Practice{Outcome: events.OutcomeSlow, DelaySeconds: 0}, 0), "", "", false},
		{"a real work item", item(nil, 0), "", "", true},
		{"an unknown outcome", item(&events.Practice{Outcome: "vanish"}, 0), "", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := ctx
			if c.name == "slow" {
				// Two minutes by default: it is still waiting when its
				// delivery is given up.
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
			}
			r, err := workers.PracticeAgency{}.Deliver(ctx, c.item)
			switch {
			case c.name == "slow":
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("slow practice: %+v, %v; want it still waiting", r, err)
				}
			case c.permErr:
				if !events.IsPermanent(err) {
					t.Errorf("got %+v, %v; want a permanent error", r, err)
				}
			case err != nil || r.Status != c.want || r.Note != c.note:
				t.Errorf("got %+v, %v; want %s %q", r, err, c.want, c.note)
			}
		})
	}
}
