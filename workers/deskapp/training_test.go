package deskapp_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers/receipts"
)

// TestTraining_APracticeVisitIsMarkedLimitedToPractisableServicesAndCarriesTheTrainersScenario
// follows a mediator who is also a trainer: they choose a scenario on the
// trainer's page, switch to training mode between visits, serve a practice
// visit whose service list, banner, request and receipt say it is practice,
// and the request carries the scenario to the pipeline.
func TestTraining_APracticeVisitIsMarkedLimitedToPractisableServicesAndCarriesTheTrainersScenario(t *testing.T) {
	t.Parallel()
	w := start(t)
	b := w.browser(t)
	home := b.signIn("correct horse battery")
	if strings.Contains(home.body, "training-banner") || strings.Contains(home.body, `href="/desk/training"`) {
		t.Errorf("a real session shows the training banner or the trainer's link: %.2000s", home.body)
	}
	wantStatus(t, b.get("/desk/training"), http.StatusForbidden, "the trainer's page for a mediator who is no trainer")
	if err := w.Store.SetTrainer(t.Context(), "rui.lopes", true, events.By{Actor: "operator:test"}); err != nil {
		t.Fatal(err)
	}

	// The trainer's page: a rejection needs its reason.
	page := b.get("/desk/training")
	wantStatus(t, page, http.StatusOK, "the trainer's page")
	if !strings.Contains(page.body, `id="trainee-rui.lopes"`) {
		t.Fatalf("the trainer's page does not list rui: %.2000s", page.body)
	}
	refused := b.post("/desk/training", page, url.Values{"username": {"rui.lopes"}, "outcome": {"reject"}, "reason": {""}})
	wantStatus(t, refused, http.StatusUnprocessableEntity, "a rejection without a reason")
	if !strings.Contains(refused.body, `href="#reason-rui.lopes"`) || !strings.Contains(refused.body, `id="reason-rui.lopes" name="reason"`) {
		t.Errorf("the refusal does not link to the reason's field: %.3000s", refused.body)
	}
	slow := b.post("/desk/training", page, url.Values{"username": {"rui.lopes"}, "outcome": {"slow"}, "delay": {"7200"}})
	wantStatus(t, slow, http.StatusUnprocessableEntity, "a delay past an hour")
	saved := b.post("/desk/training", page, url.Values{"username": {"rui.lopes"}, "outcome": {"reject"}, "reason": {"Fotografia demasiado escura"}})
	wantStatus(t, saved, http.StatusOK, "a rejection with its reason")
	if !strings.Contains(saved.body, `value="Fotografia demasiado escura"`) || !strings.Contains(saved.body, `value="reject" checked`) {
		t.Errorf("the saved scenario is not shown: %.3000s", saved.body)
	}
	if a := b.post("/desk/training", page, url.Values{"username": {"nobody"}, "outcome": {"complete"}}); a.status != http.StatusNotFound {
		t.Errorf("a scenario for a mediator who does not exist: %d", a.status)
	}

	// Training mode, between visits only.
	home = b.get("/desk/")
	on := b.post("/desk/training-mode", home, url.Values{"training": {"on"}})
	wantStatus(t, on, http.StatusOK, "switch to training mode")
	if !strings.Contains(on.body, `class="training-banner"`) {
		t.Fatalf("training mode shows no banner: %.2000s", on.body)
	}
	services := b.get("/desk/services")
	if strings.Contains(services.body, "social-benefit-application") || !strings.Contains(services.body, "criminal-record-certificate") {
		t.Errorf("in training mode, the services listed are not those that may be practised")
	}
	visit := b.post("/desk/visit", on, url.Values{"national_id": {"12345678"}, "name": {"Cidadão de Treino"}, "language": {"el"}})
	wantStatus(t, visit, http.StatusOK, "start a practice visit")
	consent := b.post("/desk/visit/consent", visit, url.Values{"consent": {"yes"}, "version": {"2026-12-01"}, "language": {"el"}})
	wantStatus(t, consent, http.StatusOK, "consent")
	if a := b.post("/desk/training-mode", consent, url.Values{"training": {"off"}}); a.status != http.StatusConflict {
		t.Errorf("leaving training mode with a visit under way: %d, want 409", a.status)
	}
	if a := b.post("/desk/visit/services", consent, url.Values{"service": {"social-benefit-application"}}); a.status != http.StatusNotFound {
		t.Errorf("adding a service that may not be practised: %d, want 404", a.status)
	}
	form := b.post("/desk/visit/services", consent, url.Values{"service": {"criminal-record-certificate"}})
	check := b.post("/desk/visit/services/1", form, url.Values{"attr.purpose": {"employment"}, "attr.copies": {"1"}, "document": {"citizen-card"}})
	done := b.post("/desk/visit/services/1/submit", check, url.Values{})
	wantStatus(t, done, http.StatusOK, "submit a practice request")

	var published []events.Request
	for _, m := range natstest.Messages(t, w.JS, events.EventsStream) {
		var r events.Request
		if json.Unmarshal(m.Data, &r) == nil && r.Schema == events.SchemaRequest {
			published = append(published, r)
		}
	}
	if len(published) != 1 || published[0].Practice == nil ||
		*published[0].Practice != (events.Practice{Outcome: events.OutcomeReject, Reason: "Fotografia demasiado escura"}) {
		t.Fatalf("published %+v, want one request carrying the trainer's scenario", published)
	}

	receipt := b.get("/desk/visit/receipt.json")
	var signed receipts.Signed
	if err := json.Unmarshal([]byte(receipt.body), &signed); err != nil || !signed.Receipt.Training || len(signed.Receipt.Requests) != 1 {
		t.Errorf("the practice visit's receipt %+v (err %v), want it marked training", signed.Receipt, err)
	}
	if page := b.get("/desk/visit/receipt"); !strings.Contains(page.body, `class="training-banner"`) {
		t.Errorf("the printed receipt of a practice visit has no banner")
	}
	end := b.post("/desk/visit/end", b.get("/desk/visit"), url.Values{})
	wantStatus(t, end, http.StatusOK, "end the practice visit")
	off := b.post("/desk/training-mode", end, url.Values{"training": {"off"}})
	wantStatus(t, off, http.StatusOK, "leave training mode")
	if strings.Contains(off.body, `class="training-banner"`) {
		t.Errorf("the banner stays after leaving training mode")
	}
	trainer := b.get("/desk/training")
	if !strings.Contains(trainer.body, published[0].ID) {
		t.Errorf("the trainer's page does not list the practice visit's request %s: %.3000s", published[0].ID, trainer.body)
	}
}
