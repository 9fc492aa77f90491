package postgres_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// TestTraining_ATrainerSetsScenariosAndReadsPracticeVisitsOfTheirMunicipalityOnly
// checks who a trainer may train (the mediators of their municipality, and
// only while they are a trainer), that a session switches to training only
// between visits, and what the trainer's page reads.
func TestTraining_ATrainerSetsScenariosAndReadsPracticeVisitsOfTheirMunicipalityOnly(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	lisboa, porto := newDesk(t, s, "lisboa"), newDesk(t, s, "porto")
	if _, err := s.CreateMediator(ctx, events.Mediator{Username: "teresa", DeskID: lisboa.ID, Name: "Teresa Dias", Language: "pt", Trainer: true}, operator); err != nil {
		t.Fatal(err)
	}
	newMediator(t, s, lisboa.ID, "rui.lopes")
	newMediator(t, s, porto.ID, "ana.porto")

	reject := events.Scenario{Username: "rui.lopes", Practice: events.Practice{Outcome: events.OutcomeReject, Reason: "Photo too dark"}}
	if err := s.SetTrainingScenario(ctx, "teresa", reject); err != nil {
		t.Fatalf("trainer sets a trainee's scenario: %v", err)
	}
	for _, c := range []struct {
		trainer string
		sc      events.Scenario
	}{
		{"teresa", events.Scenario{Username: "ana.porto", Practice: events.Practice{Outcome: events.OutcomeFail}}}, // another municipality
		{"rui.lopes", events.Scenario{Username: "teresa", Practice: events.Practice{Outcome: events.OutcomeFail}}}, // no trainer
	} {
		if err := s.SetTrainingScenario(ctx, c.trainer, c.sc); !errors.Is(err, events.ErrNotFound) {
			t.Errorf("%s sets %s's scenario: %v, want ErrNotFound", c.trainer, c.sc.Username, err)
		}
	}
	if err := s.SetTrainingScenario(ctx, "teresa", events.Scenario{Username: "rui.lopes", Practice: events.Practice{Outcome: "explode"}}); err == nil {
		t.Error("an unknown outcome was recorded")
	}
	if p, err := s.TrainingScenario(ctx, "rui.lopes"); err != nil || p != reject.Practice {
		t.Errorf("rui's scenario %+v (err %v), want %+v", p, err, reject.Practice)
	}
	if p, err := s.TrainingScenario(ctx, "ana.porto"); err != nil || p.Outcome != events.OutcomeComplete {
		t.Errorf("a trainee without a scenario: %+v (err %v), want complete", p, err)
	}
	trainees, err := s.Trainees(ctx, "teresa")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tr := range trainees {
		names = append(names, tr.Mediator.Username+":"+string(tr.Scenario.Practice.Outcome)+":"+tr.Scenario.SetBy)
	}
	if want := []string{"rui.lopes:reject:teresa", "teresa:complete:"}; !slices.Equal(names, want) {
		t.Errorf("teresa's trainees %v, want %v", names, want)
	}
	if list, err := s.Trainees(ctx, "rui.lopes"); err != nil || len(list) != 0 {
		t.Errorf("a mediator who is no trainer lists trainees %v (err %v)", list, err)
	}

	// A session switches between visits only.
	token := startSession(t, s, "rui.lopes", "rui-session")
	if err := s.SetTraining(ctx, token, "rui.lopes", true); err != nil {
		t.Fatal(err)
	}
	if ses, err := s.Session(ctx, token, time.Hour); err != nil || !ses.Training {
		t.Fatalf("session after switching: %+v (err %v), want training", ses, err)
	}
	practice, err := s.StartVisit(ctx, events.Visit{DeskID: lisboa.ID, Username: "rui.lopes", Language: "el", Training: true,
		Citizen: events.Citizen{NationalID: "123456789", Name: "Practice Citizen"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTraining(ctx, token, "rui.lopes", false); !errors.Is(err, events.ErrVisitUnderWay) {
		t.Errorf("switching with a visit under way: %v, want ErrVisitUnderWay", err)
	}
	if v, err := s.Visit(ctx, practice, "rui.lopes"); err != nil || !v.Training {
		t.Errorf("practice visit %+v (err %v), want training", v, err)
	}
	n, err := s.AddVisitService(ctx, practice, "rui.lopes", "driving-licence-renewal")
	if err != nil {
		t.Fatal(err)
	}
	req := newRequest(lisboa.ID, "driving-licence-renewal", time.Now().UTC().Truncate(time.Second))
	req.VisitID, req.Practice = practice, &reject.Practice
	mustProject(t, s, submitted(req), routed(req, req.SubmittedAt, "imt"))
	if err := s.VisitServiceSubmitted(ctx, practice, n, req.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.EndVisit(ctx, practice, "rui.lopes"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTraining(ctx, token, "rui.lopes", false); err != nil {
		t.Errorf("switching back once the visit ended: %v", err)
	}
	real, err := s.StartVisit(ctx, events.Visit{DeskID: lisboa.ID, Username: "rui.lopes", Language: "pt",
		Citizen: events.Citizen{NationalID: "123456789", Name: "Real Citizen"}})
	if err != nil {
		t.Fatal(err)
	}

	visits, err := s.PracticeVisits(ctx, "teresa", 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(visits) != 1 || visits[0].ID != practice || visits[0].Name != "Rui Lopes" || visits[0].EndedAt.IsZero() ||
		len(visits[0].Requests) != 1 || visits[0].Requests[0].Status != events.StatusRouted || visits[0].Requests[0].ServiceCode != "driving-licence-renewal" {
		t.Errorf("teresa's practice visits %+v, want rui's one ended practice visit with its routed request (not %s)", visits, real)
	}
	if list, err := s.PracticeVisits(ctx, "rui.lopes", 50); err != nil || len(list) != 0 {
		t.Errorf("a mediator who is no trainer reads practice visits %+v (err %v)", list, err)
	}

	// Past the training retention, the practice goes and the rest stays.
	pruned, gone, err := s.PruneTraining(ctx, time.Now().Add(time.Minute))
	if err != nil || pruned.Requests != 1 || pruned.WorkItems != 1 || gone != 1 {
		t.Errorf("PruneTraining removed %+v and %d visits (err %v), want the practice request, its work item and its visit", pruned, gone, err)
	}
	if _, err := s.Visit(ctx, real, "rui.lopes"); err != nil {
		t.Errorf("the real visit: %v", err)
	}
	if _, err := s.Visit(ctx, practice, "rui.lopes"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("the practice visit after pruning: %v, want ErrNotFound", err)
	}
}
