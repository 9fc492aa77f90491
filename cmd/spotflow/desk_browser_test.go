package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// The desk application's browser tests walk a new mediator through a
// whole visit in a real Chromium, with the keyboard alone (Tab, Shift+Tab,
// Enter, Space, arrows, and typing into the focused field): set a password
// with the operator's code, sign in, serve a citizen (their consent, two
// services, each checked and submitted), follow a request, look the
// citizen up, read the settings and the accessibility statement, end the
// visit and sign out. Every control reached shows its focus; every page
// speaks the run's language, passes axe-core without a single violation of
// any impact, and reflows at 320 CSS pixels. Postgres then holds both
// requests, completed, with the mediator and the consent.

// deskRun is one walk: the language the mediator and the citizen speak,
// whether the page's JavaScript runs, and what is typed.
type deskRun struct {
	lang string
	js   bool
	// agencies is how the simulated agencies behave; with JavaScript, the
	// justice agency answers late enough for the request's page to be seen
	// updating itself.
	agencies string
	password string
	citizen  string
	// street, postal code and locality of the new address.
	address [3]string
	reason  string
	// findAddress and findRecord are words, in lang, that find the change
	// of address and the criminal record certificate.
	findAddress, findRecord string
}

func TestDeskApp_ANewMediatorServesACitizenInPortugueseByKeyboardWithJavaScript(t *testing.T) {
	t.Parallel()
	walkDesk(t, deskRun{
		lang: "pt", js: true, agencies: "*:latency=5ms;justice:latency=12s",
		password:    "cavalo bateria agrafo certo",
		citizen:     "Maria da Conceição Silva",
		address:     [3]string{"Rua das Flores, 12, 3.º esq.", "1600-001", "Lisboa"},
		reason:      "A cidadã perguntou pelos seus pedidos",
		findAddress: "morada", findRecord: "criminal",
	})
}

func TestDeskApp_ANewMediatorServesACitizenInGreekByKeyboardWithoutJavaScript(t *testing.T) {
	t.Parallel()
	walkDesk(t, deskRun{
		lang: "el", js: false, agencies: "*:latency=5ms",
		password:    "άλογο μπαταρία συνδετήρας σωστό",
		citizen:     "Γεώργιος Παπαδόπουλος",
		address:     [3]string{"Οδός Ερμού 25", "105 63", "Αθήνα"},
		reason:      "Ο πολίτης ρώτησε για τα αιτήματά του",
		findAddress: "διεύθυνση", findRecord: "ποινικού",
	})
}

// walkDesk carries out run in a browser against a whole `spotflow run`.
func walkDesk(t *testing.T, run deskRun) {
	started := time.Now()
	axe := axeSource(t)
	m, dbURL := startMain(t, run.agencies)
	pool := pgtest.Pool(t, dbURL)
	store := postgres.NewStore(pool, nil)
	ctx := t.Context()
	desk, _, err := store.CreateDesk(ctx, "lisboa", "Loja do Cidadão Laranjeiras")
	if err != nil {
		t.Fatal(err)
	}
	username := "mediador." + run.lang
	const mediatorName = "Ana Sousa"
	setup, err := store.CreateMediator(ctx, events.Mediator{Username: username, DeskID: desk.ID, Name: mediatorName, Language: run.lang},
		events.By{Actor: "operator:test"})
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := workers.NewCatalogFile(workers.CatalogFileConfig{})
	if err != nil {
		t.Fatal(err)
	}

	b := startBrowser(t, 1280, 1000)
	// The desk's computer asks for pages in its language, as a browser set
	// up in that language does: the pages before sign-in follow it.
	headers := map[string]string{"Accept-Language": run.lang}
	b.call(b.session, "Network.enable", nil, nil)
	b.call(b.session, "Network.setExtraHTTPHeaders", map[string]any{"headers": headers}, nil)
	if !run.js {
		b.setJavaScript(false)
	}
	w := &deskWalk{t: t, b: b, run: run, axe: axe, base: "http://" + m.HTTPAddr(), catalogTexts: catalogTexts{t, catalog.Current()},
		tr: deskTexts(t, run.lang), en: deskTexts(t, "en")}
	t.Logf("spotflow and Chromium started in %s", time.Since(started).Round(time.Millisecond))

	// The link the operator gave, with the code filled in.
	w.open("/desk/setup?code=" + setup.Code)
	w.page("setup", "setup.heading")
	var code string
	if err := b.eval(`[...document.querySelectorAll("input")].find(`+byLabel(w.T("setup.code"))+`).value`, &code); err != nil || code != setup.Code {
		t.Errorf("the setup code field holds %q (%v), want the code of the link, %q", code, err, setup.Code)
	}
	w.tabTo("the new password", byLabel(w.T("setup.password")))
	b.typeText(run.password)
	w.tabTo("the new password again", byLabel(w.T("setup.password.again")))
	b.typeText(run.password)
	w.tabTo("the button that sets the password", byText("BUTTON", w.T("setup.submit")))
	w.press(keyEnter)
	if w.heading() == w.T("forbidden.heading") {
		t.Fatal("the desk application refused its own form: the browser's Origin and Sec-Fetch-Site were taken for another site's")
	}

	w.page("sign-in", "signin.heading")
	w.tabTo("the username", byLabel(w.T("signin.username")))
	b.typeText(username)
	w.tabTo("the password", byLabel(w.T("signin.password")))
	b.typeText(run.password)
	w.tabTo("the sign-in button", byText("BUTTON", w.T("signin.submit")))
	w.press(keyEnter)

	// Home: the skip link comes first and leads into the page.
	w.page("home", "home.heading")
	b.press(keyTab, 0)
	w.focusShows("the skip link", byText("A", w.T("layout.skip")))
	b.press(keyEnter, 0)
	var focused string
	if err := b.eval(`document.activeElement.tagName`, &focused); err != nil || focused != "MAIN" {
		t.Errorf("the skip link took the focus to %q (%v), want the main content", focused, err)
	}
	w.tabTo("the citizen's national ID", byLabel(w.T("citizen.national_id")))
	b.typeText("12345678")
	w.tabTo("the citizen's name", byLabel(w.T("citizen.name")))
	b.typeText(run.citizen)
	w.tabTo("the citizen's language", byLabel(w.T("citizen.language")))
	w.choose(run.lang)
	w.tabTo("the button that starts the visit", byText("BUTTON", w.T("home.visit.start.submit")))
	w.press(keyEnter)

	w.page("consent", "consent.heading")
	var consentLang string
	if err := b.eval(`document.querySelector("blockquote").lang`, &consentLang); err != nil || consentLang != run.lang {
		t.Errorf("the consent text is marked as %q (%v), want %q", consentLang, err, run.lang)
	}
	w.tabTo("the consent checkbox", byLabel(w.T("consent.yes")))
	b.press(keySpace, 0)
	w.mustBeChecked("the consent checkbox")
	w.tabTo("the button that records the consent", byText("BUTTON", w.T("consent.submit")))
	w.press(keyEnter)

	address := w.service("change-of-address")
	w.findAndAdd(address, run.findAddress)

	// The form sent empty: an error summary that links to each field.
	w.servicePage("form-"+address.Code, address)
	w.tabTo("the continue button", byText("BUTTON", w.T("form.continue")))
	w.press(keyEnter)
	w.servicePage("form-"+address.Code+"-errors", address)
	first := w.errorSummary(5)
	if run.js {
		b.press(keyTab, 0) // from the summary, which has the focus, to its first link
		w.focusShows("the first link of the error summary", `el => el.closest(".error-summary") !== null`)
	} else {
		w.tabTo("the first link of the error summary", `el => el.closest(".error-summary") !== null`)
	}
	b.press(keyEnter, 0)
	if run.js {
		// The script moves the focus to the field, whatever its kind.
		if err := b.eval(`document.activeElement.id`, &focused); err != nil || focused != first {
			t.Errorf("the error summary's first link took the focus to %q (%v), want #%s", focused, err, first)
		}
	} else {
		// Without it the browser scrolls to the field, and the next Tab
		// goes on from there (Chromium focuses a text field it scrolls to,
		// not a checkbox).
		var inView bool
		if err := b.eval(`(r => r.top >= 0 && r.bottom <= innerHeight)(document.getElementById(`+strconv.Quote(first)+`).getBoundingClientRect())`, &inView); err != nil || !inView {
			t.Errorf("the error summary's first link did not bring #%s into view (%v)", first, err)
		}
	}
	w.fillAddress(address)
	w.press(keyEnter)
	addressID := w.checkAndSubmit(address, run.address[0])

	// Another service in the same visit.
	w.tabTo("the link that adds another service", byText("A", w.T("done.another")))
	w.press(keyEnter)
	record := w.service("criminal-record-certificate")
	w.findAndAdd(record, run.findRecord)
	w.servicePage("form-"+record.Code, record)
	w.tabTo("the citizen card checkbox", byLabel(w.document("citizen-card", w.run.lang)))
	b.press(keySpace, 0)
	w.mustBeChecked("the citizen card checkbox")
	w.tabTo("the first purpose", byLabel(w.value(record, "purpose", "employment", w.run.lang)))
	w.radio(w.value(record, "purpose", "public_office", w.run.lang))
	w.tabTo("the number of copies", byLabel(w.attribute(record, "copies", w.run.lang)))
	b.typeText("2")
	w.tabTo("the continue button", byText("BUTTON", w.T("form.continue")))
	w.press(keyEnter)
	recordID := w.checkAndSubmit(record, w.value(record, "purpose", "public_office", w.run.lang))

	// The request's page; with JavaScript it follows the agencies by itself.
	w.tabTo("the link that follows the request", byText("A", w.T("done.follow")))
	w.press(keyEnter)
	w.servicePage("request", record)
	if run.js {
		w.watchUpdate(recordID)
	}

	w.tabTo("the menu's link to find a citizen", byText("A", w.T("nav.citizen")))
	w.press(keyEnter)
	w.page("citizen", "citizen.heading")
	w.tabTo("the national ID", byLabel(w.T("citizen.national_id")))
	b.typeText("12345678")
	w.tabTo("the reason", byLabel(w.T("citizen.reason")))
	b.typeText(run.reason)
	w.tabTo("the button that finds the citizen", byText("BUTTON", w.T("citizen.submit")))
	w.press(keyEnter)
	w.page("citizen-found", "citizen.heading")
	var refs []string
	if err := b.eval(`[...document.querySelectorAll("td.ref")].map(td => td.innerText.trim())`, &refs); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{addressID, recordID} {
		if !slices.Contains(refs, id) {
			t.Errorf("the citizen's requests list %v, without %s", refs, id)
		}
	}

	w.tabTo("the menu's link to the settings", byText("A", w.T("nav.settings")))
	w.press(keyEnter)
	w.page("settings", "settings.heading")
	var chosen string
	if err := b.eval(`document.querySelector("input[type=radio]:checked").labels[0].innerText.trim()`, &chosen); err != nil || chosen != w.T("language.name") {
		t.Errorf("the settings have %q chosen (%v), want %q", chosen, err, w.T("language.name"))
	}
	w.tabTo("the link to the accessibility statement", byText("A", w.T("layout.accessibility")))
	w.press(keyEnter)
	w.page("accessibility", "accessibility.heading")
	t.Logf("the walk through the pages ended after %s", time.Since(started).Round(time.Millisecond))

	// Postgres: both requests answered, by this mediator, in one visit,
	// with the consent given in the citizen's language.
	ids := []string{addressID, recordID}
	workertest.WaitWithin(t, 60*time.Second, "both requests to be completed", func() error {
		var done int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE id = ANY($1) AND status = 'completed'`, ids).Scan(&done)
		if err == nil && done != len(ids) {
			err = fmt.Errorf("%d of %d completed", done, len(ids))
		}
		return err
	})
	visits := map[string]bool{}
	for _, id := range ids {
		var mediator, version, lang, visit *string
		err := pool.QueryRow(ctx, `SELECT mediator, consent->>'version', consent->>'language', visit_id FROM requests WHERE id = $1`, id).
			Scan(&mediator, &version, &lang, &visit)
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("mediator %s, consent version %s in %s, visit %s", deref(mediator), deref(version), deref(lang), deref(visit))
		want := fmt.Sprintf("mediator %s, consent version %s in %s, visit %s", username, "2026-12-01", run.lang, deref(visit))
		if got != want || visit == nil {
			t.Errorf("request %s: %s, want %s", id, got, want)
		}
		visits[deref(visit)] = true
	}
	if len(visits) != 1 {
		t.Errorf("the two requests belong to %d visits, want one", len(visits))
	}

	// The request's page, loaded again, says it is completed.
	w.open("/desk/requests/" + recordID)
	w.servicePage("request-completed", record)
	if status := w.status(); status != w.T("status.completed") {
		t.Errorf("the request's page says %q, want %q", status, w.T("status.completed"))
	}

	// The end of the visit, whose two services are submitted, and of the
	// session.
	w.tabTo("the menu's link to the desk", byText("A", w.T("nav.home")))
	w.press(keyEnter)
	w.page("home-visit", "home.heading")
	w.tabTo("the link that continues the visit", byText("A", w.T("home.visit.continue")))
	w.press(keyEnter)
	w.inspect("visit", w.T("visit.heading", run.citizen), fmt.Sprintf(w.en["visit.heading"], run.citizen))
	var tasks string
	if err := b.eval(`document.querySelector("main ol").innerText`, &tasks); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(tasks, w.T("visit.task.submitted")); n != 2 {
		t.Errorf("the visit's task list shows %d services submitted, want 2: %q", n, tasks)
	}
	w.tabTo("the button that ends the visit", byText("BUTTON", w.T("visit.end")))
	w.press(keyEnter)
	w.page("visit-ended", "home.heading")
	var notice string
	if err := b.eval(`document.querySelector("[role=status]").innerText.trim()`, &notice); err != nil || notice != w.T("notice.visit-ended") {
		t.Errorf("after the visit the desk says %q (%v), want %q", notice, err, w.T("notice.visit-ended"))
	}
	w.tabTo("the sign-out button", byText("BUTTON", w.T("nav.sign-out", mediatorName)))
	w.press(keyEnter)
	w.page("signed-out", "signin.heading")

	t.Logf("every page of the desk application, %s, JavaScript %v:\n\t%s", run.lang, run.js, strings.Join(w.report, "\n\t"))
	t.Logf("the test took %s", time.Since(started).Round(time.Millisecond))
}

// deskWalk is a walk through the desk application, keeping what it saw.
type deskWalk struct {
	t    *testing.T
	b    *browser
	run  deskRun
	axe  string
	base string
	catalogTexts
	tr, en map[string]string
	step   int
	// report has a line per page checked.
	report []string
}

// catalogTexts finds the catalogue's entries and texts a browser test
// types and reads, failing the test when one is missing.
type catalogTexts struct {
	t   *testing.T
	cat *events.Catalog
}

// service is the catalogue's service code.
func (c catalogTexts) service(code string) *events.Service {
	c.t.Helper()
	svc, ok := c.cat.Service(code)
	if !ok {
		c.t.Fatalf("the catalogue has no service %s", code)
	}
	return svc
}

// document is the name of a document in lang.
func (c catalogTexts) document(code, lang string) string {
	c.t.Helper()
	d, ok := c.cat.Document(code)
	if !ok {
		c.t.Fatalf("the catalogue has no document %s", code)
	}
	return d.Name.In(lang)
}

// attribute is the question svc's attribute code asks, in lang.
func (c catalogTexts) attribute(svc *events.Service, code, lang string) string {
	c.t.Helper()
	for _, a := range svc.Attributes {
		if a.Code == code {
			return a.Description.In(lang)
		}
	}
	c.t.Fatalf("%s has no attribute %s", svc.Code, code)
	return ""
}

// value is the name, in lang, of the choice key of svc's list attribute
// code.
func (c catalogTexts) value(svc *events.Service, code, key, lang string) string {
	c.t.Helper()
	for _, a := range svc.Attributes {
		for _, v := range a.Values {
			if a.Code == code && v.Key == key {
				return v.Name.In(lang)
			}
		}
	}
	c.t.Fatalf("%s's %s has no choice %s", svc.Code, code, key)
	return ""
}

// deskTexts are the desk application's texts in lang.
func deskTexts(t *testing.T, lang string) map[string]string {
	t.Helper()
	path := filepath.Join("..", "..", "workers", "deskapp", "web", "i18n", lang+".json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the desk application has no %s texts: %v", lang, err)
	}
	var texts map[string]string
	if err := json.Unmarshal(data, &texts); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return texts
}

// T is the text key in the run's language.
func (w *deskWalk) T(key string, args ...any) string {
	w.t.Helper()
	s, ok := w.tr[key]
	if !ok {
		w.t.Fatalf("no %s text %q", w.run.lang, key)
	}
	if len(args) > 0 {
		s = fmt.Sprintf(s, args...)
	}
	return s
}

// open goes to path as if typed in the address bar.
func (w *deskWalk) open(path string) {
	w.t.Helper()
	prev := w.b.documentID()
	w.b.navigate(w.base + path)
	w.b.waitForDocument(w.t, prev)
}

// press presses k, which must take the browser to another page, and
// waits for it.
func (w *deskWalk) press(k keyDef) {
	w.t.Helper()
	prev := w.b.documentID()
	w.b.press(k, 0)
	w.b.waitForDocument(w.t, prev)
}

// tabTo tabs to the element is matches, whose focus must show.
func (w *deskWalk) tabTo(what, is string) {
	w.t.Helper()
	w.b.tabTo(w.t, what, is, false, 60)
	w.focusShows(what, is)
}

// tabBackTo goes back with Shift+Tab to the element is matches, whose
// focus must show.
func (w *deskWalk) tabBackTo(what, is string) {
	w.t.Helper()
	w.b.tabTo(w.t, what, is, true, 60)
	w.focusShows(what, is)
}

// focusShows checks that the focus is on the element is matches, and that
// it shows: an outline, a shadow or, for a link, a background.
func (w *deskWalk) focusShows(what, is string) {
	w.t.Helper()
	var f struct {
		Is, FocusVisible, Outline, Shadow, Background bool
	}
	err := w.b.eval(`(() => { const el = document.activeElement, s = getComputedStyle(el);
		const clear = c => c === "transparent" || /rgba\([^)]*,\s*0\)$/.test(c);
		return {Is: !!(`+is+`)(el), FocusVisible: el.matches(":focus-visible"),
			Outline: s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0 && !clear(s.outlineColor),
			Shadow: s.boxShadow !== "none", Background: el.tagName === "A" && !clear(s.backgroundColor)}; })()`, &f)
	switch {
	case err != nil:
		w.t.Fatalf("read the focus on %s: %v", what, err)
	case !f.Is:
		w.t.Fatalf("the focus is not on %s", what)
	case !f.FocusVisible || !(f.Outline || f.Shadow || f.Background):
		w.t.Errorf("the focus on %s does not show: %+v", what, f)
	}
}

// byLabel matches a form control whose label says text, leaving out the
// "(required)" mark.
func byLabel(text string) string {
	return `el => !!el.labels && [...el.labels].some(l => [...l.childNodes]
		.filter(n => !(n.classList && n.classList.contains("required"))).map(n => n.textContent).join("")
		.replace(/\s+/g, " ").trim() === ` + jsString(text) + `)`
}

// byText matches an element of tag whose visible text is text.
func byText(tag, text string) string {
	return `el => el.tagName === ` + jsString(tag) + ` && el.innerText.replace(/\s+/g, " ").trim() === ` + jsString(text)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// page checks the page the browser shows, named name, whose <h1> is the
// text key: see inspect.
func (w *deskWalk) page(name, key string) {
	w.t.Helper()
	w.inspect(name, w.T(key), w.en[key])
}

// servicePage checks the page of svc, named name, whose <h1> is the
// service's name: see inspect.
func (w *deskWalk) servicePage(name string, svc *events.Service) {
	w.t.Helper()
	w.inspect(name, svc.Name.In(w.run.lang), svc.Name.In("en"))
}

// inspect checks the page the browser shows, named name: in the run's
// language, with heading as its <h1> and not the English one, no
// axe-core violation, no horizontal scrolling at 320 CSS pixels; and
// keeps a screenshot of it.
func (w *deskWalk) inspect(name, want, english string) {
	t, b := w.t, w.b
	t.Helper()
	w.step++
	var p struct{ Lang, H1, Path string }
	if err := b.eval(`({Lang: document.documentElement.lang, H1: (document.querySelector("h1") || {innerText: ""}).innerText.trim(),
		Path: location.pathname})`, &p); err != nil {
		t.Fatal(err)
	}
	if p.Lang != w.run.lang {
		t.Errorf("%s (%s): the page says it is in %q, want %q", name, p.Path, p.Lang, w.run.lang)
	}
	if p.H1 != want || p.H1 == english {
		t.Errorf("%s (%s): the heading is %q, want %q (English: %q)", name, p.Path, p.H1, want, english)
	}
	if !w.run.js {
		// axe-core waits on timers, which do not run while scripts are
		// off: on for the check only. The page's own script, not run when
		// it loaded, stays unrun.
		b.setJavaScript(true)
	}
	violations := b.checkAccessibilityStrictly(t, w.axe)
	if !w.run.js {
		b.setJavaScript(false)
	}
	file := fmt.Sprintf("desk-%s-%02d-%s", w.run.lang, w.step, name)
	b.screenshot(filepath.Join(artifactDir(t), file+".png"))

	b.resize(320, 900)
	var reflow struct {
		Width int
		Wide  []string
	}
	err := b.eval(`({Width: document.documentElement.scrollWidth,
		Wide: [...document.body.querySelectorAll("*")].filter(el => el.getBoundingClientRect().right > 320.5 ||
				(el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === "visible"))
			.map(el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className ? "." + el.className : "") +
				' "' + el.innerText.trim().slice(0, 40) + '"').slice(-5)})`, &reflow)
	if err != nil {
		t.Fatal(err)
	}
	if reflow.Width > 320 {
		b.screenshot(filepath.Join(artifactDir(t), file+"-320px.png"))
		t.Errorf("%s (%s): at 320 CSS pixels the page is %d wide and scrolls sideways; too wide: %v", name, p.Path, reflow.Width, reflow.Wide)
	}
	b.resize(1280, 1000)
	line := fmt.Sprintf("%02d %s (%s): %d axe-core violations, %d px wide at 320, %s.png", w.step, name, p.Path, violations, reflow.Width, file)
	w.report = append(w.report, line)
	t.Log(line)
}

// heading is the page's <h1>.
func (w *deskWalk) heading() string {
	w.t.Helper()
	var h string
	if err := w.b.eval(`(document.querySelector("h1") || {innerText: ""}).innerText.trim()`, &h); err != nil {
		w.t.Fatal(err)
	}
	return h
}

// choose picks the option value of the focused select with the arrow
// keys, as the keyboard does without opening the list.
func (w *deskWalk) choose(value string) {
	w.t.Helper()
	for _, k := range []keyDef{keyArrowDown, keyArrowUp} {
		for range 10 {
			var now string
			if err := w.b.eval(`document.activeElement.value`, &now); err != nil {
				w.t.Fatal(err)
			}
			if now == value {
				return
			}
			w.b.press(k, 0)
		}
	}
	w.t.Fatalf("the arrow keys did not reach the option %q", value)
}

// radio moves with the arrow keys to the radio button labelled label,
// in the group that has the focus, and checks that it is chosen.
func (w *deskWalk) radio(label string) {
	w.t.Helper()
	is := byLabel(label)
	for range 10 {
		var at bool
		if err := w.b.eval(`(`+is+`)(document.activeElement)`, &at); err != nil {
			w.t.Fatal(err)
		}
		if at {
			w.b.press(keySpace, 0) // chosen already when reached by arrow; Space keeps it so
			w.mustBeChecked("the choice " + label)
			return
		}
		w.b.press(keyArrowDown, 0)
	}
	w.t.Fatalf("the arrow keys did not reach the choice %q", label)
}

// mustBeChecked checks that the focused checkbox or radio button is on.
func (w *deskWalk) mustBeChecked(what string) {
	w.t.Helper()
	var on bool
	if err := w.b.eval(`document.activeElement.checked`, &on); err != nil || !on {
		w.t.Errorf("%s is not ticked (%v)", what, err)
	}
}

// status is the request's status as its page shows it.
func (w *deskWalk) status() string {
	w.t.Helper()
	var s string
	if err := w.b.eval(`document.querySelector("#progress dl .status").innerText.trim()`, &s); err != nil {
		w.t.Fatal(err)
	}
	return s
}

// findAndAdd finds svc on the services page by a word and adds it to the
// visit: with JavaScript the results follow the typing, without it the
// search is submitted.
func (w *deskWalk) findAndAdd(svc *events.Service, word string) {
	t, b := w.t, w.b
	t.Helper()
	w.page("services", "services.heading")
	var before int
	if err := b.eval(`document.querySelectorAll("#results li").length`, &before); err != nil {
		t.Fatal(err)
	}
	w.tabTo("the search", byLabel(w.T("services.search")))
	name := svc.Name.In(w.run.lang)
	found := `[...document.querySelectorAll("#results h2")].some(h => h.innerText.trim() === ` + jsString(name) + `)`
	if w.run.js {
		doc := b.documentID()
		if err := b.eval(`window.__notReloaded = true`, nil); err != nil {
			t.Fatal(err)
		}
		b.typeText(word)
		workertest.WaitWithin(t, 10*time.Second, "the services to be filtered as the word is typed", func() error {
			var now struct {
				N     int
				Found bool
			}
			err := b.eval(`({N: document.querySelectorAll("#results li").length, Found: `+found+`})`, &now)
			if err == nil && (!now.Found || now.N >= before) {
				err = fmt.Errorf("%d services shown of %d, %s among them: %v", now.N, before, name, now.Found)
			}
			return err
		})
		var kept bool
		if err := b.eval(`window.__notReloaded === true`, &kept); err != nil || !kept || b.documentID() != doc {
			t.Errorf("the services page was reloaded to filter; it must filter in place")
		}
	} else {
		b.typeText(word)
		w.tabTo("the search button", byText("BUTTON", w.T("services.search.submit")))
		w.press(keyEnter)
		var has bool
		if err := b.eval(found, &has); err != nil || !has {
			t.Fatalf("searching for %q does not find %s (%v)", word, name, err)
		}
	}
	w.page("services-"+svc.Code, "services.heading")
	w.tabTo("the button that adds "+svc.Code, `el => (`+byText("BUTTON", w.T("services.add"))+`)(el) &&
		el.closest("li").querySelector("h2").innerText.trim() === `+jsString(name))
	w.press(keyEnter)
}

// errorSummary checks the error summary of a form sent empty: n links,
// each to a control of the form; with JavaScript, it has the focus. It
// returns the id the first link leads to.
func (w *deskWalk) errorSummary(n int) string {
	t := w.t
	t.Helper()
	var s struct {
		Exists, Focused, Title bool
		Links                  []struct{ Href, Text, Target string }
	}
	err := w.b.eval(`(() => { const s = document.querySelector(".error-summary");
		if (!s) return {Exists: false};
		return {Exists: true, Focused: document.activeElement === s, Title: document.title.startsWith(`+jsString(w.T("error.title.prefix"))+`),
			Links: [...s.querySelectorAll("a")].map(a => { const el = document.getElementById(a.getAttribute("href").slice(1));
				return {Href: a.getAttribute("href"), Text: a.innerText.trim(),
					Target: el && el.form ? el.tagName.toLowerCase() + "/" + (el.type || "") : ""}; })}; })()`, &s)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Exists {
		t.Fatal("the form sent empty shows no error summary")
	}
	if w.run.js && !s.Focused {
		t.Error("the error summary does not have the focus")
	}
	if !s.Title {
		t.Errorf("the page's title does not begin with %q", w.T("error.title.prefix"))
	}
	if len(s.Links) != n {
		t.Errorf("the error summary has %d links, want %d: %+v", len(s.Links), n, s.Links)
	}
	for _, l := range s.Links {
		if l.Target == "" {
			t.Errorf("the error summary's link %q (%s) leads to no control of the form", l.Text, l.Href)
		}
	}
	if len(s.Links) == 0 {
		t.FailNow()
	}
	t.Logf("error summary: %+v", s.Links)
	return strings.TrimPrefix(s.Links[0].Href, "#")
}

// fillAddress fills the change of address form from where the error
// summary's first link left the focus: back to tick both documents, on to
// type the address, the date left out.
func (w *deskWalk) fillAddress(svc *events.Service) {
	w.t.Helper()
	w.tabBackTo("the proof of identity checkbox", byLabel(w.document("citizen-card", w.run.lang)))
	w.b.press(keySpace, 0)
	w.mustBeChecked("the proof of identity checkbox")
	w.tabTo("the proof of address checkbox", byLabel(w.document("proof-of-address", w.run.lang)))
	w.b.press(keySpace, 0)
	w.mustBeChecked("the proof of address checkbox")
	for i, code := range []string{"street", "postal_code", "locality"} {
		w.tabTo("the "+code, byLabel(w.attribute(svc, code, w.run.lang)))
		w.b.typeText(w.run.address[i])
	}
	w.tabTo("the continue button", byText("BUTTON", w.T("form.continue")))
}

// checkAndSubmit checks the answers page of svc, which must show answer,
// submits it, and returns the reference the confirmation shows.
func (w *deskWalk) checkAndSubmit(svc *events.Service, answer string) string {
	t, b := w.t, w.b
	t.Helper()
	w.page("check-"+svc.Code, "check.heading")
	var answers string
	if err := b.eval(`document.querySelector("dl.answers").innerText`, &answers); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answers, answer) || !strings.Contains(answers, w.run.citizen) {
		t.Errorf("the answers to check do not show %q and %q: %q", answer, w.run.citizen, answers)
	}
	w.tabTo("the submit button", byText("BUTTON", w.T("check.submit")))
	w.press(keyEnter)
	w.page("done-"+svc.Code, "done.heading")
	var ref string
	if err := b.eval(`document.querySelector(".panel .ref").innerText.trim()`, &ref); err != nil || ref == "" {
		t.Fatalf("the confirmation shows no reference (%v)", err)
	}
	t.Logf("%s submitted: %s", svc.Code, ref)
	return ref
}

// watchUpdate waits on the open request's page for its status to become
// completed without the page being loaded again.
func (w *deskWalk) watchUpdate(id string) {
	t, b := w.t, w.b
	t.Helper()
	completed := w.T("status.completed")
	if s := w.status(); s == completed {
		t.Fatalf("request %s was completed before its page showed it open: the justice agency must answer later", id)
	}
	// The mediator waits on the link that refreshes the page.
	w.tabTo("the link that refreshes the request's page", byText("A", w.T("request.refresh")))
	doc := b.documentID()
	if err := b.eval(`window.__notReloaded = true`, nil); err != nil {
		t.Fatal(err)
	}
	var last string
	workertest.WaitWithin(t, 30*time.Second, "the request's page to show it completed", func() error {
		if last = w.status(); last != completed {
			return errors.New(last)
		}
		return nil
	})
	var after struct{ Kept, Lost bool }
	if err := b.eval(`({Kept: window.__notReloaded === true, Lost: document.activeElement === document.body})`, &after); err != nil {
		t.Fatal(err)
	}
	if !after.Kept || b.documentID() != doc {
		t.Error("the request's page was reloaded; it must update in place")
	}
	if after.Lost {
		t.Error("the request's page lost the keyboard focus when it updated itself: a keyboard user is sent back to the top")
	}
	t.Logf("the request's page turned to %q in place", last)
}

// deref is *s, or NULL.
func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}
