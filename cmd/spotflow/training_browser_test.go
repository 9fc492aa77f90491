package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// The training mode's browser test: a trainee at a Lisbon desk, in
// Portuguese, switches to training mode with the keyboard and serves a
// Greek citizen in a practice visit, with the citizen's screen paired; the
// practice request goes through the real pipeline to the practice queue,
// where the simulated practice agency completes it. The trainee's pages,
// the citizen's screen, the request's page and the printed receipt all say
// it is practice; the trainer sees the practice visit and its request,
// completed, on their training page. Against a baseline taken after one
// real request: no real agency's queue, no simulated agency, no roll-up of
// the dashboard, no dashboard figure and no open data moved, while the
// practice queue did deliver. axe-core finds no violation of any impact
// on any page looked at.

// trainingScreenWait is how soon the citizen's screen must show the
// mediator's step: generous, the test does not measure speed.
const trainingScreenWait = 15 * time.Second

func TestTraining_APracticeVisitCompletesAndMovesNoAgencyQueueDashboardOrOpenData(t *testing.T) {
	t.Parallel()
	started := time.Now()
	phase := time.Now()
	lap := func(what string) {
		t.Logf("phase %q took %s", what, time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}
	axe := axeSource(t)
	// As an operator, who sees every figure of the dashboard, small ones
	// included: a count of one is not hidden behind "fewer than 5".
	const operatorToken = "operator-token-for-the-training-test"
	m, dbURL := startMain(t, "*:latency=5ms", func(c *Config) { c.OperatorToken = operatorToken })
	base := "http://" + m.HTTPAddr()
	catalog, err := workers.NewCatalogFile(workers.CatalogFileConfig{})
	if err != nil {
		t.Fatal(err)
	}
	pool := pgtest.Pool(t, dbURL)
	// The store folds the roll-ups as the process's own does: with the
	// catalogue's service levels.
	store := postgres.NewStore(pool, nil, postgres.ServiceLevels(serviceLevels(catalog.Current())))
	ctx := t.Context()
	desk, deskToken, err := store.CreateDesk(ctx, "lisboa", "Loja do Cidadão Laranjeiras")
	if err != nil {
		t.Fatal(err)
	}
	const (
		trainerUser  = "formadora.lisboa"
		trainerName  = "Teresa Lima"
		traineeUser  = "formando.lisboa"
		traineeName  = "Rui Matos"
		password     = "cavalo bateria agrafo certo"
		citizen      = "Eleni Papadopoulou"
		practiceCode = "criminal-record-certificate"
		realOnlyCode = "social-benefit-application"
	)
	trainerSetup, err := store.CreateMediator(ctx, events.Mediator{Username: trainerUser, DeskID: desk.ID, Name: trainerName, Language: "pt", Trainer: true},
		events.By{Actor: "operator:test"})
	if err != nil {
		t.Fatal(err)
	}
	traineeSetup, err := store.CreateMediator(ctx, events.Mediator{Username: traineeUser, DeskID: desk.ID, Name: traineeName, Language: "pt"},
		events.By{Actor: "operator:test"})
	if err != nil {
		t.Fatal(err)
	}
	js := connectAs(t, m, natsbus.Admin)
	lap("start spotflow, a desk, a trainer and a trainee")

	// 1. A real request, through the desk API, so that every figure the
	// practice must not move is not zero; then the baseline.
	baseline := post(t, http.DefaultClient, base, deskToken, submission{key: "training-baseline", body: validBody(3)})
	if baseline.status != http.StatusAccepted || baseline.id == "" {
		t.Fatalf("the real request was answered %d %q (%s)", baseline.status, baseline.id, baseline.code)
	}
	trainingWaitCompleted(t, pool, baseline.id, false)
	workertest.WaitWithin(t, 60*time.Second, "the dashboard to show the real request completed", func() error {
		f := trainingFigures(t, base, operatorToken)
		for _, k := range []string{"submitted", "completed", "last_hour_submitted", "last_hour_completed"} {
			if f[k] != float64(1) {
				return fmt.Errorf("%s is %v: %v", k, f[k], f)
			}
		}
		return nil
	})
	trainingFolded(t, store, pool)
	before := trainingState(t, m, js, store, pool, base, operatorToken)
	if before.Applied["justice"] != 1 {
		t.Errorf("the simulated justice agency applied %d work items after the real request, want 1", before.Applied["justice"])
	}
	if before.Queues[events.AgencyConsumer("justice")].Delivered == 0 {
		t.Errorf("the justice agency's queue delivered nothing for the real request: %+v", before.Queues)
	}
	if len(before.OpenDataMonths) != 1 || !strings.Contains(before.OpenDataMonths[0], " lisboa {Key:"+practiceCode+" Submitted:1 Completed:1 ") {
		t.Errorf("the open data's monthly tallies after the real request are %q, want the real request's alone", before.OpenDataMonths)
	}
	if before.Rollups.Throughput.Rows == 0 || before.Rollups.Counts.Rows == 0 || before.Rollups.Latency.Rows == 0 {
		t.Errorf("the roll-ups are empty after a real request: %+v", before.Rollups)
	}
	t.Logf("baseline: figures %v; roll-ups %+v; agencies applied %v; agencies' queues %v; practice queue %+v; open data %d and %d bytes, monthly tallies %q",
		before.Figures, before.Rollups, before.Applied, before.Queues, before.Practice, len(before.OpenDataCSV), len(before.OpenDataJSON), before.OpenDataMonths)
	lap("a real request completed and the baseline taken")

	// Three Chromiums in Portuguese: the trainee's, the citizen's screen
	// and the trainer's.
	med := startBrowser(t, 1280, 1000)
	scr := startBrowser(t, 1280, 800)
	trn := startBrowser(t, 1280, 1000)
	for _, b := range []*browser{med, scr, trn} {
		b.call(b.session, "Network.enable", nil, nil)
		b.call(b.session, "Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{"Accept-Language": "pt"}}, nil)
	}
	scr.call(scr.session, "Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": streamWatch}, nil)
	w := &screenWalk{t: t, med: med, scr: scr, axe: axe, base: base, catalogTexts: catalogTexts{t, catalog.Current()},
		pt: deskTexts(t, "pt"), el: deskTexts(t, "el")}
	w.cable = startCable(t, m.HTTPAddr())
	for lang, texts := range map[string]map[string]string{"pt": w.pt, "el": w.el} {
		for _, key := range []string{"training.banner", "training.banner.citizen", "training.request", "training.receipt",
			"home.training", "home.training.start", "home.training.stop", "nav.training", "training.heading", "training.visits",
			"notice.training-on", "notice.training-off", "services.training", "training.tag", "status.completed"} {
			if texts[key] == "" {
				t.Fatalf("the desk application's %s texts lack %q", lang, key)
			}
		}
	}
	lap("three Chromiums started")

	// 2. The trainee sets a password, signs in and, with the keyboard,
	// switches to training mode.
	w.open(med, "/desk/setup?code="+traineeSetup.Code)
	w.fill(med, w.pt["setup.password"], password)
	w.fill(med, w.pt["setup.password.again"], password)
	w.click(med, "BUTTON", w.pt["setup.submit"])
	w.fill(med, w.pt["signin.username"], traineeUser)
	w.fill(med, w.pt["signin.password"], password)
	w.click(med, "BUTTON", w.pt["signin.submit"])
	w.mediatorOn("/desk/", w.pt["home.heading"])
	if p := trainingPageOf(t, med); p.Banners != 0 || p.TrainingLink {
		t.Errorf("before training mode the trainee's home shows %d training banners and a link to the trainer's page: %v", p.Banners, p.TrainingLink)
	}
	keys := &deskWalk{t: t, b: med}
	keys.tabTo("the button that starts training mode", byText("BUTTON", w.pt["home.training.start"]))
	keys.press(keyEnter)
	w.mediatorOn("/desk/", w.pt["home.heading"])
	home := trainingPageOf(t, med)
	if home.Lang != "pt" || home.Banner != w.pt["training.banner"] || home.Banners != 1 {
		t.Errorf("in training mode the trainee's home, in %q, shows the banner %q (%d banners); want pt, %q, one",
			home.Lang, home.Banner, home.Banners, w.pt["training.banner"])
	}
	if home.Notice != w.pt["notice.training-on"] {
		t.Errorf("switching to training mode says %q, want %q", home.Notice, w.pt["notice.training-on"])
	}
	if !home.Stop {
		t.Errorf("in training mode the home offers no %q button", w.pt["home.training.stop"])
	}
	w.axeOn(med, "trainee: home in training mode")
	w.next()
	w.shoot(med, "training-trainee-pt", "training-mode")
	lap("the trainee signed in and switched to training mode by keyboard")

	// 3. A practice visit for a citizen who reads Greek, shown on the
	// citizen's screen.
	w.startVisit(citizen, "el")
	w.open(med, "/desk/visit")
	w.click(med, "BUTTON", w.pt["visit.pair"])
	w.mediatorOn("/desk/visit/pair", w.pt["pair.heading"])
	var code string
	if err := med.eval(`document.querySelector(".code").innerText.trim()`, &code); err != nil || !regexp.MustCompile(`^\d{6}$`).MatchString(code) {
		t.Fatalf("the pairing page shows the code %q (%v), want six digits", code, err)
	}
	if p := trainingPageOf(t, med); p.Banner != w.pt["training.banner"] {
		t.Errorf("the pairing page shows the banner %q, want %q", p.Banner, w.pt["training.banner"])
	}
	w.open(scr, "/desk/screen")
	screenKeys := &deskWalk{t: t, b: scr}
	screenKeys.tabTo("the code field", byLabel(w.pt["pair.code"]))
	scr.typeText(code)
	screenKeys.tabTo("the button that pairs the screen", byText("BUTTON", w.pt["screen.pair"]))
	screenKeys.press(keyEnter)
	var path string
	if err := scr.eval(`location.pathname`, &path); err != nil || path != "/desk/screen/live" {
		t.Fatalf("pairing took the screen to %q (%v), want /desk/screen/live", path, err)
	}
	w.live = scr.documentID()
	if err := scr.eval(`window.__paired = true`, nil); err != nil {
		t.Fatal(err)
	}
	citizenBanner := trainingScreenBanner(w.el["training.banner.citizen"])
	w.screenShows("paired", trainingScreenWait, showsHeading(w.el["screen.welcome"]), citizenBanner, showsText(citizenIDMasked, citizen))
	w.axeOn(scr, "screen: a practice visit, paired")
	w.next()
	w.shoot(med, "training-trainee-pt", "pair")
	w.shoot(scr, "training-screen-el", "paired")
	lap("a practice visit started and the citizen's screen paired")

	// Switching training mode off is refused while the visit is under
	// way: its requests would change kind midway.
	if status := trainingPost(t, med, "/desk/training-mode", map[string]string{"training": "off"}); status != http.StatusConflict {
		t.Errorf("switching training mode off during the visit was answered %d, want %d", status, http.StatusConflict)
	}

	// 4. Only services that may be practised are offered; one is added,
	// filled, checked and submitted.
	w.open(med, "/desk/services")
	w.mediatorOn("/desk/services", w.pt["services.heading"])
	var offered struct {
		IDs    []string
		Notice bool
	}
	err = med.eval(`({IDs: [...document.querySelectorAll("#results li h2")].map(h => h.id),
		Notice: [...document.querySelectorAll("main .notice")].some(n => n.innerText.trim() === `+jsString(w.pt["services.training"])+`)})`, &offered)
	if err != nil {
		t.Fatal(err)
	}
	var practisable []string
	for _, svc := range catalog.Current().Services {
		if svc.Training {
			practisable = append(practisable, "svc-"+svc.Code)
		}
	}
	slices.Sort(offered.IDs)
	slices.Sort(practisable)
	if !slices.Equal(offered.IDs, practisable) {
		t.Errorf("in training mode the services page offers %v, want exactly the services that may be practised, %v", offered.IDs, practisable)
	}
	if slices.Contains(offered.IDs, "svc-"+realOnlyCode) || !slices.Contains(offered.IDs, "svc-"+practiceCode) {
		t.Errorf("in training mode the services page offers %v: want %s and not %s", offered.IDs, practiceCode, realOnlyCode)
	}
	if !offered.Notice {
		t.Errorf("in training mode the services page does not say %q", w.pt["services.training"])
	}
	if status := trainingPost(t, med, "/desk/visit/services", map[string]string{"service": realOnlyCode}); status != http.StatusNotFound {
		t.Errorf("adding %s to a practice visit by hand was answered %d, want %d", realOnlyCode, status, http.StatusNotFound)
	}
	w.axeOn(med, "trainee: the services that may be practised")
	w.next()
	w.shoot(med, "training-trainee-pt", "services")

	record := w.service(practiceCode)
	w.add(record)
	w.screenShows("form", trainingScreenWait, showsHeading(record.Name.In("el")), citizenBanner)
	w.tick(w.document("citizen-card", "pt"))
	w.focus(w.value(record, "purpose", "public_office", "pt"))
	med.press(keySpace, 0)
	w.fill(med, w.attribute(record, "copies", "pt"), "1")
	w.click(med, "BUTTON", w.pt["form.continue"])
	w.mediatorOn("/check", w.pt["check.heading"])
	w.screenShows("check", trainingScreenWait, showsHeading(w.el["screen.check"]), citizenBanner, showsText(record.Name.In("el")))
	w.click(med, "BUTTON", w.pt["check.submit"])
	ref := w.reference()
	t.Logf("the practice request: %s", ref)
	if p := trainingPageOf(t, med); p.Banner != w.pt["training.banner"] {
		t.Errorf("the confirmation shows the banner %q, want %q", p.Banner, w.pt["training.banner"])
	}
	w.screenShows("done", trainingScreenWait, showsHeading(w.el["done.heading"]), citizenBanner, showsText(record.Name.In("el"), ref))
	w.axeOn(med, "trainee: a practice request submitted")
	w.axeOn(scr, "screen: a practice request submitted")
	w.next()
	w.shoot(med, "training-trainee-pt", "done")
	w.shoot(scr, "training-screen-el", "done")
	lap("a practisable service offered, filled and submitted")

	// The practice request completes, as the trainee's trainer chose by
	// default, and its page says it is practice.
	trainingWaitCompleted(t, pool, ref, true)
	w.open(med, "/desk/requests/"+ref)
	var request struct {
		Lang, H1, Banner, Status string
	}
	err = med.eval(`({Lang: document.documentElement.lang, H1: document.querySelector("h1").innerText.trim(),
		Banner: (document.querySelector("main .training-banner") || {innerText: ""}).innerText.trim(),
		Status: (document.querySelector("#progress dl .status") || {innerText: ""}).innerText.trim()})`, &request)
	if err != nil {
		t.Fatal(err)
	}
	want := struct{ Lang, H1, Banner, Status string }{"pt", record.Name.In("pt"), w.pt["training.request"], w.pt["status.completed"]}
	if request != want {
		t.Errorf("the practice request's page shows %+v, want %+v", request, want)
	}
	if p := trainingPageOf(t, med); p.Banner != w.pt["training.banner"] {
		t.Errorf("the request's page shows the banner %q, want %q", p.Banner, w.pt["training.banner"])
	}
	w.axeOn(med, "trainee: the practice request, completed")
	w.next()
	w.shoot(med, "training-trainee-pt", "request")
	lap("the practice request completed")

	// 5. The receipt, in the citizen's language, says it is practice; so
	// does its JSON.
	w.open(med, "/desk/visit/receipt")
	w.screenShows("receipt", trainingScreenWait, showsHeading(w.el["screen.receipt"]), citizenBanner)
	var receipt struct {
		Lang, H1, Banner, Text string
	}
	err = med.eval(`({Lang: document.documentElement.lang, H1: document.querySelector("h1").innerText.trim(),
		Banner: (document.querySelector("article.receipt .training-banner") || {innerText: ""}).innerText.trim(),
		Text: document.querySelector("article.receipt").innerText})`, &receipt)
	if err != nil {
		t.Fatal(err)
	}
	if receipt.Lang != "el" || receipt.H1 != w.el["receipt.heading"] || receipt.Banner != w.el["training.receipt"] {
		t.Errorf("the practice receipt is in %q with the heading %q and says %q; want el, %q and %q",
			receipt.Lang, receipt.H1, receipt.Banner, w.el["receipt.heading"], w.el["training.receipt"])
	}
	if !strings.Contains(receipt.Text, ref) {
		t.Errorf("the practice receipt does not show its request %s", ref)
	}
	var signed struct {
		Receipt struct {
			Training bool `json:"training"`
			Requests []struct {
				ID string `json:"id"`
			} `json:"requests"`
		} `json:"receipt"`
	}
	if err := med.eval(`fetch("/desk/visit/receipt.json").then(r => r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)))`, &signed); err != nil {
		t.Fatalf("the practice receipt's JSON: %v", err)
	}
	if !signed.Receipt.Training || len(signed.Receipt.Requests) != 1 || signed.Receipt.Requests[0].ID != ref {
		t.Errorf("the practice receipt's JSON says training %v, requests %+v; want true and %s", signed.Receipt.Training, signed.Receipt.Requests, ref)
	}
	w.axeOn(med, "trainee: the practice receipt")
	w.next()
	w.shoot(med, "training-trainee-el", "receipt")
	w.shoot(scr, "training-screen-el", "receipt")
	lap("the practice receipt")

	// 6. The end of the visit, and of training mode.
	w.open(med, "/desk/visit")
	w.click(med, "BUTTON", w.pt["visit.end"])
	w.mediatorOn("/desk/", w.pt["home.heading"])
	w.screenShows("ended", trainingScreenWait, showsHeading(w.el["screen.ended"]))
	w.next()
	w.shoot(scr, "training-screen-el", "ended")
	keys.tabTo("the button that leaves training mode", byText("BUTTON", w.pt["home.training.stop"]))
	keys.press(keyEnter)
	w.mediatorOn("/desk/", w.pt["home.heading"])
	home = trainingPageOf(t, med)
	if home.Banners != 0 || home.Notice != w.pt["notice.training-off"] || home.Stop {
		t.Errorf("after leaving training mode the home shows %d training banners, says %q, offers to leave it: %v; want none, %q",
			home.Banners, home.Notice, home.Stop, w.pt["notice.training-off"])
	}
	var tags map[string]bool
	err = med.eval(`Object.fromEntries([...document.querySelectorAll("main tbody tr")].map(tr =>
		[tr.querySelector("td.ref").innerText.trim(), [...tr.querySelectorAll(".tag-training")].some(s => s.innerText.trim() === `+jsString(w.pt["training.tag"])+`)]))`, &tags)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{baseline.id: false, ref: true}; !maps.Equal(tags, want) {
		t.Errorf("the desk's requests of today, by reference, marked as practice: %v; want %v", tags, want)
	}
	w.axeOn(med, "trainee: home, out of training mode")
	w.next()
	w.shoot(med, "training-trainee-pt", "training-off")
	lap("the visit ended and training mode left")

	// 7. The trainer finds the practice visit on their training page,
	// through the menu.
	w.open(trn, "/desk/setup?code="+trainerSetup.Code)
	w.fill(trn, w.pt["setup.password"], password)
	w.fill(trn, w.pt["setup.password.again"], password)
	w.click(trn, "BUTTON", w.pt["setup.submit"])
	w.fill(trn, w.pt["signin.username"], trainerUser)
	w.fill(trn, w.pt["signin.password"], password)
	w.click(trn, "BUTTON", w.pt["signin.submit"])
	trainerKeys := &deskWalk{t: t, b: trn}
	trainerKeys.tabTo("the menu's link to the training page", byText("A", w.pt["nav.training"]))
	trainerKeys.press(keyEnter)
	var page struct {
		Path, Lang, H1 string
		Headings       []string
		Trainee        bool
		Visits         [][]string
		Banners        int
	}
	err = trn.eval(`({Path: location.pathname, Lang: document.documentElement.lang, H1: document.querySelector("h1").innerText.trim(),
		Headings: [...document.querySelectorAll("main h2")].map(h => h.innerText.trim()),
		Trainee: !!document.getElementById(`+jsString("trainee-"+traineeUser)+`),
		Visits: [...document.querySelectorAll("main tbody tr")].flatMap(tr => [...tr.querySelectorAll("li")].map(li => [
			tr.cells[0].innerText.trim(), li.querySelector(".status").innerText.trim(), li.querySelector(".ref").innerText.trim()])),
		Banners: document.querySelectorAll(".training-banner").length})`, &page)
	if err != nil {
		t.Fatal(err)
	}
	if page.Path != "/desk/training" || page.Lang != "pt" || page.H1 != w.pt["training.heading"] || page.Banners != 0 {
		t.Errorf("the menu's link took the trainer to %s, in %q, headed %q, with %d training banners; want /desk/training, pt, %q, none",
			page.Path, page.Lang, page.H1, page.Banners, w.pt["training.heading"])
	}
	if !page.Trainee {
		t.Errorf("the training page has no scenario form for the trainee %s", traineeUser)
	}
	if !slices.Contains(page.Headings, w.pt["training.visits"]) {
		t.Errorf("the training page's headings are %q, without %q", page.Headings, w.pt["training.visits"])
	}
	wantVisit := []string{traineeName + " (" + traineeUser + ")", w.pt["status.completed"], ref}
	if len(page.Visits) != 1 || !slices.Equal(page.Visits[0], wantVisit) {
		t.Errorf("the training page lists the practice requests %q, want one, %q", page.Visits, wantVisit)
	}
	w.axeOn(trn, "trainer: the training page")
	w.next()
	w.shoot(trn, "training-trainer-pt", "training")
	lap("the trainer saw the practice visit")

	// 8. Postgres holds the practice request, completed and marked as
	// training, in a practice visit; nothing the practice must not move
	// moved, but the practice queue delivered.
	var status string
	var training, visitTraining bool
	err = pool.QueryRow(ctx, `SELECT r.status, r.training, v.training FROM requests r JOIN visits v ON v.id = r.visit_id WHERE r.id = $1`, ref).
		Scan(&status, &training, &visitTraining)
	if err != nil {
		t.Fatal(err)
	}
	if status != string(events.StatusCompleted) || !training || !visitTraining {
		t.Errorf("Postgres holds the practice request %s as %s, training %v, in a visit with training %v; want completed, true, true",
			ref, status, training, visitTraining)
	}
	// The request is completed: its events are projected. Once they are
	// folded, the roll-ups have counted whatever they would count.
	trainingFolded(t, store, pool)
	after := trainingState(t, m, js, store, pool, base, operatorToken)
	if !reflect.DeepEqual(after.Figures, before.Figures) {
		t.Errorf("the dashboard's figures moved:\n\tbefore %v\n\tafter  %v", before.Figures, after.Figures)
	}
	if after.Rollups != before.Rollups {
		t.Errorf("the dashboard's roll-ups moved:\n\tbefore %+v\n\tafter  %+v", before.Rollups, after.Rollups)
	}
	if !maps.Equal(after.Applied, before.Applied) {
		t.Errorf("the simulated agencies applied work items: before %v, after %v", before.Applied, after.Applied)
	}
	if !maps.Equal(after.Queues, before.Queues) {
		t.Errorf("the agencies' queues moved:\n\tbefore %v\n\tafter  %v", before.Queues, after.Queues)
	}
	if !slices.Equal(after.OpenDataMonths, before.OpenDataMonths) {
		t.Errorf("the open data's monthly tallies moved:\n\tbefore %q\n\tafter  %q", before.OpenDataMonths, after.OpenDataMonths)
	}
	if after.OpenDataCSV != before.OpenDataCSV || after.OpenDataJSON != before.OpenDataJSON {
		t.Errorf("the open data changed:\n\tCSV before %q\n\tCSV after  %q\n\tJSON before %q\n\tJSON after  %q",
			before.OpenDataCSV, after.OpenDataCSV, before.OpenDataJSON, after.OpenDataJSON)
	}
	if after.Practice.Delivered <= before.Practice.Delivered || after.Practice.Pending != 0 {
		t.Errorf("the practice queue delivered up to %d (%d before) with %d pending: the practice did not go through it",
			after.Practice.Delivered, before.Practice.Delivered, after.Practice.Pending)
	}
	t.Logf("after the practice: practice queue %+v (was %+v)", after.Practice, before.Practice)
	lap("nothing moved but the practice queue")

	t.Logf("pages checked with axe-core:\n\t%s", strings.Join(w.report, "\n\t"))
	t.Logf("the test took %s", time.Since(started).Round(time.Millisecond))
}

// trainingPage is what the training test reads of a mediator's page.
type trainingPage struct {
	Lang string
	// Banner is the text of the training banner in the page's header;
	// Banners counts the training banners anywhere in the page.
	Banner  string
	Banners int
	// Notice is the page's notice, if any.
	Notice string
	// Stop says the page offers to leave training mode; TrainingLink that
	// its menu leads to the trainer's page.
	Stop, TrainingLink bool
}

// trainingPageOf reads b's page.
func trainingPageOf(t *testing.T, b *browser) trainingPage {
	t.Helper()
	var p trainingPage
	err := b.eval(`({Lang: document.documentElement.lang,
		Banner: (document.querySelector("header .training-banner") || {innerText: ""}).innerText.trim(),
		Banners: document.querySelectorAll(".training-banner").length,
		Notice: (document.querySelector("main .notice[role=status]") || {innerText: ""}).innerText.trim(),
		Stop: !!document.querySelector('form[action="/desk/training-mode"] input[name=training][value=off]'),
		TrainingLink: !!document.querySelector('nav a[href="/desk/training"]')})`, &p)
	if err != nil {
		t.Fatalf("read the mediator's page: %v", err)
	}
	return p
}

// trainingScreenBanner checks that the citizen's screen shows its training
// banner, saying text.
func trainingScreenBanner(text string) screenCheck {
	return func(s screenState) error {
		if !strings.Contains(s.HTML, `class="training-banner"`) || !strings.Contains(s.Text, text) {
			return fmt.Errorf("the training banner %q is not shown", text)
		}
		return nil
	}
}

// trainingPost posts fields to path from b's page, as its own form would,
// with the page's CSRF token, and returns the status of the answer,
// redirects not followed.
func trainingPost(t *testing.T, b *browser, path string, fields map[string]string) int {
	t.Helper()
	data, _ := json.Marshal(fields)
	var status int
	err := b.eval(`(() => { const body = new URLSearchParams(`+string(data)+`);
		body.set("csrf", document.querySelector("input[name=csrf]").value);
		return fetch(`+jsString(path)+`, {method: "POST", body, redirect: "manual"}).then(r => r.type === "opaqueredirect" ? 303 : r.status); })()`, &status)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return status
}

// trainingWaitCompleted waits for request id to be completed in Postgres,
// and checks that it is marked as training, or not.
func trainingWaitCompleted(t *testing.T, pool *pgxpool.Pool, id string, training bool) {
	t.Helper()
	workertest.WaitWithin(t, 60*time.Second, "request "+id+" to be completed", func() error {
		var status string
		var marked bool
		err := pool.QueryRow(t.Context(), `SELECT status, training FROM requests WHERE id = $1`, id).Scan(&status, &marked)
		if err != nil {
			return err
		}
		if marked != training {
			t.Fatalf("request %s is marked training %v, want %v", id, marked, training)
		}
		if status != string(events.StatusCompleted) {
			return fmt.Errorf("it is %s", status)
		}
		return nil
	})
}

// trainingFolded folds whatever waits for the dashboard's roll-ups, and
// waits until nothing does: every event projected so far is counted, by
// this fold or the process's folder.
func trainingFolded(t *testing.T, store *postgres.Store, pool *pgxpool.Pool) {
	t.Helper()
	workertest.WaitWithin(t, 60*time.Second, "the dashboard's inbox to be folded", func() error {
		if _, err := store.FoldRollups(t.Context()); err != nil {
			return err
		}
		var waiting int
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM dashboard_inbox`).Scan(&waiting); err != nil {
			return err
		}
		if waiting > 0 {
			return fmt.Errorf("%d batches wait", waiting)
		}
		return nil
	})
}

// trainingQueue is where an agency's work queue stands.
type trainingQueue struct {
	// Delivered is the stream sequence of the last work item delivered;
	// Pending, how many wait to be delivered.
	Delivered, Pending uint64
}

// trainingQueues reads every consumer of the work stream, by name.
func trainingQueues(t *testing.T, js jetstream.JetStream) map[string]trainingQueue {
	t.Helper()
	stream, err := js.Stream(t.Context(), events.WorkStream)
	if err != nil {
		t.Fatalf("the work stream: %v", err)
	}
	out := make(map[string]trainingQueue)
	lister := stream.ListConsumers(t.Context())
	for info := range lister.Info() {
		out[info.Name] = trainingQueue{Delivered: info.Delivered.Stream, Pending: info.NumPending}
	}
	if err := lister.Err(); err != nil {
		t.Fatalf("the work stream's consumers: %v", err)
	}
	return out
}

// trainingTable is a roll-up table in brief: its rows, what they add up to
// and a digest of all of them.
type trainingTable struct {
	Rows, Sum int64
	Digest    string
}

// trainingRollups are the dashboard's roll-ups.
type trainingRollups struct {
	Throughput, Counts, Latency trainingTable
}

// trainingSnapshot is everything the practice must not move, and the
// practice queue, which it must.
type trainingSnapshot struct {
	// Figures are the dashboard's, but for the start of its range, which
	// moves with the clock.
	Figures                   map[string]any
	Rollups                   trainingRollups
	Applied                   map[string]int
	Queues                    map[string]trainingQueue
	Practice                  trainingQueue
	OpenDataCSV, OpenDataJSON string
	// OpenDataMonths are the monthly tallies the open data publishes, read
	// as it reads them, the month in progress included: the files publish
	// complete months only, read at most once an hour.
	OpenDataMonths []string
}

// trainingState reads the snapshot.
func trainingState(t *testing.T, m *Main, js jetstream.JetStream, store *postgres.Store, pool *pgxpool.Pool, base, operatorToken string) trainingSnapshot {
	t.Helper()
	s := trainingSnapshot{Figures: trainingFigures(t, base, operatorToken), Applied: make(map[string]int), Queues: make(map[string]trainingQueue)}
	delete(s.Figures, "since")
	for table, q := range map[*trainingTable]string{
		&s.Rollups.Throughput: `SELECT count(*), coalesce(sum(events), 0), coalesce(md5(string_agg(t::text, ';' ORDER BY t::text)), '')
			FROM throughput_minute t`,
		&s.Rollups.Counts: `SELECT count(*), coalesce(sum(submitted + completed + rejected + failed + within_sla + breached), 0),
			coalesce(md5(string_agg(t::text, ';' ORDER BY t::text)), '') FROM dashboard_counts t`,
		&s.Rollups.Latency: `SELECT count(*), coalesce(sum((SELECT sum(x) FROM unnest(counts) AS x)), 0),
			coalesce(md5(string_agg(t::text, ';' ORDER BY t::text)), '') FROM dashboard_latency t`,
	} {
		if err := pool.QueryRow(t.Context(), q).Scan(&table.Rows, &table.Sum, &table.Digest); err != nil {
			t.Fatalf("read the roll-ups: %v", err)
		}
	}
	for code, a := range m.Agencies() {
		s.Applied[code] = a.Applied()
	}
	for name, q := range trainingQueues(t, js) {
		switch {
		case name == events.AgencyConsumer(events.SourcePractice):
			s.Practice = q
		case strings.HasPrefix(name, events.AgencyConsumer("")):
			s.Queues[name] = q
		}
	}
	if len(s.Queues) == 0 {
		t.Fatal("the work stream has no agency's consumer")
	}
	s.OpenDataCSV = trainingGet(t, base+"/open-data/requests-monthly.csv", "")
	s.OpenDataJSON = trainingGet(t, base+"/open-data/requests-monthly.json", "")
	err := store.MonthlyServiceTallies(t.Context(), time.Time{}, time.Now().AddDate(0, 2, 0),
		func(month time.Time, municipality string, tally events.Tally, h *events.Histogram) error {
			s.OpenDataMonths = append(s.OpenDataMonths, fmt.Sprintf("%s %s %+v, %d completions timed", month.Format("2006-01"), municipality, tally, h.Count()))
			return nil
		})
	if err != nil {
		t.Fatalf("the open data's monthly tallies: %v", err)
	}
	return s
}

// trainingFigures reads the dashboard's figures of the last hour, as an
// operator.
func trainingFigures(t *testing.T, base, operatorToken string) map[string]any {
	t.Helper()
	var f map[string]any
	if err := json.Unmarshal([]byte(trainingGet(t, base+"/dashboard/figures?range=1h", operatorToken)), &f); err != nil {
		t.Fatalf("the dashboard's figures: %v", err)
	}
	if f["suppressed"] != false {
		t.Fatalf("the dashboard hides figures from the operator: %v", f)
	}
	return f
}

// trainingGet reads url, with the operator's token if given, and fails the
// test unless it is answered 200.
func trainingGet(t *testing.T, url, operatorToken string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if operatorToken != "" {
		req.Header.Set("Authorization", "Bearer "+operatorToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v: %s", url, resp.StatusCode, err, body)
	}
	return string(body)
}
