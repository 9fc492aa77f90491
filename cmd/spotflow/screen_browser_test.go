package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/receipts"
	"github.com/spotflow/spotflow/workers/workertest"
)

// The citizen's screen's browser test puts two Chromiums side by side, as
// at a desk: the mediator's, in Portuguese, and the screen turned to the
// citizen, who reads Greek. The screen is paired by typing the mediator's
// code with the keyboard, then follows every step of the visit in Greek
// without being loaded again, the answers as they are typed, and catches
// up after losing its connection; it never shows the national ID in full
// nor a menu, and ends on a neutral page. The visit's receipt is printed
// to PDF (A4 and an 80 mm roll), its QR code is read back from a
// screenshot with jsQR, and its link says the receipt is valid, and not
// valid once a character of it is changed. axe-core finds no violation
// of any impact on any page looked at.

// screenWait is how soon the citizen's screen must show the mediator's
// step; reconnectWait, how soon it must catch up after its connection
// comes back (EventSource waits about three seconds before reconnecting).
const (
	screenWait    = 3 * time.Second
	reconnectWait = 15 * time.Second
)

// citizenID is the citizen's; the screen shows it masked as citizenIDMasked.
const (
	citizenID       = "12345678"
	citizenIDMasked = "•••••678"
)

// streamWatch keeps, in the page, each EventSource the page's script makes,
// with how many times it opened and failed: it changes nothing of what the
// script does, and lets the test see the connection drop and come back.
const streamWatch = `(() => {
	const Native = window.EventSource;
	if (!Native) { return; }
	window.__streams = [];
	window.EventSource = class extends Native {
		constructor(url, init) {
			super(url, init);
			const s = {source: this, opened: 0, failed: 0};
			window.__streams.push(s);
			this.addEventListener("open", () => s.opened++);
			this.addEventListener("error", () => s.failed++);
		}
	};
})()`

func TestCitizenScreen_FollowsAVisitInGreekAndItsReceiptVerifies(t *testing.T) {
	t.Parallel()
	started := time.Now()
	axe := axeSource(t)
	jsQR, err := os.ReadFile(nodeModule(t, "testdata/browser", "jsqr/dist/jsQR.js"))
	if err != nil {
		t.Fatal(err)
	}
	m, dbURL := startMain(t, "*:latency=5ms")
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	ctx := t.Context()
	desk, _, err := store.CreateDesk(ctx, "lisboa", "Loja do Cidadão Laranjeiras")
	if err != nil {
		t.Fatal(err)
	}
	const (
		username = "mediador.ecra"
		password = "cavalo bateria agrafo certo"
		mediator = "Ana Sousa"
		citizen  = "Eleni Papadopoulou"
		street   = "Rua das Flores, 12, 3.º esq."
	)
	setup, err := store.CreateMediator(ctx, events.Mediator{Username: username, DeskID: desk.ID, Name: mediator, Language: "pt"},
		events.By{Actor: "operator:test"})
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := workers.NewCatalogFile(workers.CatalogFileConfig{})
	if err != nil {
		t.Fatal(err)
	}

	// The desk's two computers are set up in Portuguese.
	med := startBrowser(t, 1280, 1000)
	scr := startBrowser(t, 1280, 800)
	for _, b := range []*browser{med, scr} {
		b.call(b.session, "Network.enable", nil, nil)
		b.call(b.session, "Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{"Accept-Language": "pt"}}, nil)
	}
	scr.call(scr.session, "Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": streamWatch}, nil)
	w := &screenWalk{t: t, med: med, scr: scr, axe: axe, base: "http://" + m.HTTPAddr(), catalogTexts: catalogTexts{t, catalog.Current()},
		pt: deskTexts(t, "pt"), el: deskTexts(t, "el")}
	// The screen reaches spotflow through a network the test can cut.
	w.cable = startCable(t, m.HTTPAddr())
	t.Logf("spotflow and two Chromiums started in %s", time.Since(started).Round(time.Millisecond))

	// The mediator sets a password, signs in and starts the visit, in
	// which the citizen consents.
	w.open(med, "/desk/setup?code="+setup.Code)
	w.fill(med, w.pt["setup.password"], password)
	w.fill(med, w.pt["setup.password.again"], password)
	w.click(med, "BUTTON", w.pt["setup.submit"])
	w.fill(med, w.pt["signin.username"], username)
	w.fill(med, w.pt["signin.password"], password)
	w.click(med, "BUTTON", w.pt["signin.submit"])
	w.startVisit(citizen, "el")

	// The mediator shows the visit on the citizen's screen: a code.
	w.open(med, "/desk/visit")
	w.click(med, "BUTTON", w.pt["visit.pair"])
	w.next()
	w.mediatorOn("/desk/visit/pair", w.pt["pair.heading"])
	var pair struct{ Code, Screen string }
	if err := med.eval(`({Code: document.querySelector(".code").innerText.trim(), Screen: document.querySelector("main").innerText})`, &pair); err != nil {
		t.Fatal(err)
	}
	code := pair.Code
	if !regexp.MustCompile(`^\d{6}$`).MatchString(code) {
		t.Fatalf("the pairing page shows the code %q, want six digits", code)
	}
	if !strings.Contains(pair.Screen, w.base+"/desk/screen") {
		t.Errorf("the pairing page does not say to open %s/desk/screen: %q", w.base, pair.Screen)
	}
	w.axeOn(med, "mediator: the pairing code")
	w.shoot(med, "mediator-pt", "pair")

	// The screen asks for it; it is typed with the keyboard alone.
	w.open(scr, "/desk/screen")
	var pairing struct{ Lang, H1 string }
	if err := scr.eval(`({Lang: document.documentElement.lang, H1: document.querySelector("h1").innerText.trim()})`, &pairing); err != nil {
		t.Fatal(err)
	}
	if pairing.Lang != "pt" || pairing.H1 != w.pt["screen.heading"] {
		t.Errorf("the pairing form is in %q with the heading %q, want pt and %q", pairing.Lang, pairing.H1, w.pt["screen.heading"])
	}
	w.axeOn(scr, "screen: the pairing form")
	w.shoot(scr, "screen-pt", "pair")
	keys := &deskWalk{t: t, b: scr}
	scr.tabTo(t, "the code field", byLabel(w.pt["pair.code"]), false, 20)
	keys.focusShows("the code field", byLabel(w.pt["pair.code"]))
	scr.typeText(code)
	scr.tabTo(t, "the button that pairs the screen", byText("BUTTON", w.pt["screen.pair"]), false, 5)
	keys.focusShows("the button that pairs the screen", byText("BUTTON", w.pt["screen.pair"]))
	doc := scr.documentID()
	scr.press(keyEnter, 0)
	scr.waitForDocument(t, doc)
	var path string
	if err := scr.eval(`location.pathname`, &path); err != nil || path != "/desk/screen/live" {
		t.Fatalf("pairing took the screen to %q (%v), want /desk/screen/live", path, err)
	}
	// From now on the screen is this one document: the mark set in it
	// must stay, and its stream be open.
	w.live = scr.documentID()
	if err := scr.eval(`window.__paired = true`, nil); err != nil {
		t.Fatal(err)
	}
	w.next()
	w.screenShows("paired", screenWait, showsHeading(w.el["screen.welcome"]), showsText(w.el["visit.services.none"], citizenIDMasked, mediator, citizen))
	workertest.WaitWithin(t, screenWait, "the screen's stream to open", func() error {
		if s := w.screen(); s.Stream != 1 {
			return fmt.Errorf("its state is %d", s.Stream)
		}
		return nil
	})
	w.shootBoth("paired")

	// Consent.
	w.next()
	w.open(med, "/desk/visit/consent")
	w.screenShows("consent", screenWait, showsHeading(w.el["screen.consent"]), showsText(w.cat.Consent.Text.In("el")))
	w.axeOn(scr, "screen: the consent")
	w.shootBoth("consent")

	// Services.
	w.next()
	w.open(med, "/desk/services")
	w.screenShows("services", screenWait, showsHeading(w.el["screen.welcome"]), showsText(w.el["visit.services.none"]))
	w.shootBoth("services")

	// The change of address: its form, and the answers as they are typed.
	address := w.service("change-of-address")
	w.next()
	w.add(address)
	w.screenShows("form", screenWait, showsHeading(address.Name.In("el")), showsText(w.el["screen.documents"], w.el["screen.answers"],
		w.attribute(address, "street", "el"), "○ "+w.document("citizen-card", "el")))
	w.axeOn(scr, "screen: a form")
	w.shootBoth("form")

	w.next()
	form := med.documentID()
	w.tick(w.document("citizen-card", "pt"))
	w.tick(w.document("proof-of-address", "pt"))
	w.fill(med, w.attribute(address, "street", "pt"), street)
	typed := time.Now()
	w.screenShows("typing", screenWait, showsHeading(address.Name.In("el")), showsAnswer(w.attribute(address, "street", "el"), street),
		showsText("✓ "+w.document("citizen-card", "el"), "✓ "+w.document("proof-of-address", "el")))
	t.Logf("the street typed reached the citizen's screen in %s", time.Since(typed).Round(time.Millisecond))
	if med.documentID() != form {
		t.Fatal("the mediator's form was sent: the screen must show the answers while they are typed")
	}
	w.shootBoth("typing")
	w.fill(med, w.attribute(address, "postal_code", "pt"), "1600-001")
	w.fill(med, w.attribute(address, "locality", "pt"), "Lisboa")

	w.next()
	w.click(med, "BUTTON", w.pt["form.continue"])
	w.mediatorOn("/check", w.pt["check.heading"])
	w.screenShows("check", screenWait, showsHeading(w.el["screen.check"]), showsText(address.Name.In("el")),
		showsAnswer(w.attribute(address, "street", "el"), street), showsAnswer(w.attribute(address, "postal_code", "el"), "1600-001"),
		showsAnswer(w.attribute(address, "locality", "el"), "Lisboa"))
	w.axeOn(scr, "screen: the answers to check")
	w.shootBoth("check")

	w.next()
	w.click(med, "BUTTON", w.pt["check.submit"])
	addressID := w.reference()
	w.screenShows("done", screenWait, showsHeading(w.el["done.heading"]), showsText(address.Name.In("el"), addressID, w.el["request.reference"]))
	w.axeOn(scr, "screen: a request submitted")
	w.shootBoth("done")

	// Another service: the criminal record certificate.
	w.next()
	w.click(med, "A", w.pt["done.another"])
	w.screenShows("services-again", screenWait, showsHeading(w.el["screen.welcome"]),
		showsText(address.Name.In("el")+": "+w.el["visit.task.submitted"]))
	w.shootBoth("services-again")

	record := w.service("criminal-record-certificate")
	w.next()
	w.add(record)
	w.screenShows("form-record", screenWait, showsHeading(record.Name.In("el")), showsText(w.attribute(record, "purpose", "el")))
	w.shootBoth("form-record")

	// The screen's network goes down while the mediator fills the form
	// and goes on to check it; the screen tries in vain to reconnect. Back
	// online it catches up with the check, without being loaded again.
	// (Chromium's offline emulation leaves open connections open: the
	// cable is pulled out instead.)
	w.next()
	before := w.screen()
	w.cable.pull(true)
	workertest.WaitWithin(t, reconnectWait, "the screen's stream to fail once offline", func() error {
		if s := w.screen(); s.Failed <= before.Failed || s.Stream == 1 {
			return fmt.Errorf("failed %d times, state %d", s.Failed, s.Stream)
		}
		return nil
	})
	w.tick(w.document("citizen-card", "pt"))
	w.focus(w.value(record, "purpose", "public_office", "pt"))
	med.press(keySpace, 0)
	w.fill(med, w.attribute(record, "copies", "pt"), "2")
	w.click(med, "BUTTON", w.pt["form.continue"])
	w.mediatorOn("/check", w.pt["check.heading"])
	failed := w.screen().Failed
	workertest.WaitWithin(t, reconnectWait, "the screen to try to reconnect, in vain, while offline", func() error {
		if s := w.screen(); s.Failed <= failed {
			return fmt.Errorf("failed %d times", s.Failed)
		}
		return nil
	})
	if s := w.screen(); s.H1 != record.Name.In("el") {
		t.Errorf("offline, the screen shows %q: it cannot have heard of the mediator's steps", s.H1)
	}
	w.shoot(scr, "screen-el", "offline")
	w.cable.pull(false)
	back := time.Now()
	w.screenShows("check-record", reconnectWait, showsHeading(w.el["screen.check"]), showsText(record.Name.In("el")),
		showsAnswer(w.attribute(record, "purpose", "el"), w.value(record, "purpose", "public_office", "el")),
		showsAnswer(w.attribute(record, "copies", "el"), "2"))
	after := w.screen()
	if after.Stream != 1 || after.Opened <= before.Opened {
		t.Errorf("after the connection came back the stream is in state %d, opened %d times (%d before): it did not reconnect",
			after.Stream, after.Opened, before.Opened)
	}
	t.Logf("back online, the screen caught up in %s (its stream failed %d times, opened %d)",
		time.Since(back).Round(time.Millisecond), after.Failed, after.Opened)
	w.axeOn(scr, "screen: the answers to check, after reconnecting")
	w.shootBoth("check-record")

	w.next()
	w.click(med, "BUTTON", w.pt["check.submit"])
	recordID := w.reference()
	w.screenShows("done-record", screenWait, showsHeading(w.el["done.heading"]), showsText(record.Name.In("el"), recordID))
	w.shootBoth("done-record")

	// The receipt, printed in the citizen's language.
	w.next()
	w.open(med, "/desk/visit/receipt")
	w.screenShows("receipt", screenWait, showsHeading(w.el["screen.receipt"]))
	var receipt struct {
		Lang, H1, Text, Link string
	}
	err = med.eval(`({Lang: document.documentElement.lang, H1: document.querySelector("h1").innerText.trim(),
		Text: document.querySelector("article.receipt").innerText,
		Link: ([...document.querySelectorAll("a")].find(a => a.innerText.trim() === `+jsString(w.el["receipt.check.link"])+`) || {}).href || ""})`, &receipt)
	if err != nil {
		t.Fatal(err)
	}
	if receipt.Lang != "el" || receipt.H1 != w.el["receipt.heading"] {
		t.Errorf("the receipt is in %q with the heading %q, want el and %q", receipt.Lang, receipt.H1, w.el["receipt.heading"])
	}
	for _, want := range []string{addressID, recordID, address.Name.In("el"), record.Name.In("el"), desk.Name} {
		if !strings.Contains(receipt.Text, want) {
			t.Errorf("the receipt does not show %q", want)
		}
	}
	for _, secret := range []string{citizenID, citizenIDMasked, citizen, street} {
		if strings.Contains(receipt.Text, secret) {
			t.Errorf("the receipt shows %q: it must show nothing personal", secret)
		}
	}
	w.axeOn(med, "mediator: the receipt")
	w.shoot(med, "mediator-el", "receipt")
	w.shoot(scr, "screen-el", "receipt")
	a4 := w.printPDF("receipt.pdf", 8.27, 11.69)
	roll := w.printPDF("receipt-80mm.pdf", 3.15, 11.69)
	if a4 != 1 {
		t.Errorf("the receipt prints on %d A4 pages, want one", a4)
	}
	if roll < 1 {
		t.Errorf("the receipt prints on %d pages of an 80 mm roll", roll)
	}

	// Its QR code, read back from what the page shows, leads to the page
	// that checks it, which needs no session.
	link := w.readQR(string(jsQR))
	if link != receipt.Link || !strings.HasPrefix(link, w.base+"/receipts/verify?r=") {
		t.Errorf("the QR code says %q, want the link the receipt shows, %q", link, receipt.Link)
	}
	w.open(med, strings.TrimPrefix(link, w.base))
	var valid struct {
		Lang, H1, Panel string
		Rows            [][]string
	}
	err = med.eval(`({Lang: document.documentElement.lang, H1: document.querySelector("h1").innerText.trim(),
		Panel: (document.querySelector(".panel") || {innerText: ""}).innerText,
		Rows: [...document.querySelectorAll("tbody tr")].map(tr => [...tr.cells].map(td => td.innerText.trim()))})`, &valid)
	if err != nil {
		t.Fatal(err)
	}
	if valid.Lang != "el" || valid.H1 != w.el["verify.heading"] || !strings.Contains(valid.Panel, w.el["verify.valid"]) {
		t.Errorf("the QR code's link shows, in %q, %q: %q; want el, %q: %q", valid.Lang, valid.H1, valid.Panel,
			w.el["verify.heading"], w.el["verify.valid"])
	}
	statuses := w.statuses("el")
	wantRows := map[string]string{addressID: address.Name.In("el"), recordID: record.Name.In("el")}
	for _, row := range valid.Rows {
		if len(row) != 4 || wantRows[row[3]] != row[0] || !slices.Contains(statuses, row[1]) {
			t.Errorf("the receipt's check lists %q; want a request of the receipt, its service and a status", row)
			continue
		}
		delete(wantRows, row[3])
		t.Logf("the receipt's check: %s, %s", row[3], row[1])
	}
	if len(wantRows) > 0 {
		t.Errorf("the receipt's check does not list %v", wantRows)
	}
	w.axeOn(med, "public: the receipt is valid")
	w.shoot(med, "verify-el", "valid")

	// One character of the receipt changed: not valid.
	tampered := w.tamper(link, "Laranjeiras", "Laranjeiros")
	w.open(med, strings.TrimPrefix(tampered, w.base))
	var invalid struct {
		Lang, Alert string
		Rows        int
	}
	err = med.eval(`({Lang: document.documentElement.lang, Alert: (document.querySelector("[role=alert]") || {innerText: ""}).innerText,
		Rows: document.querySelectorAll("tbody tr").length})`, &invalid)
	if err != nil {
		t.Fatal(err)
	}
	if invalid.Lang != "el" || !strings.Contains(invalid.Alert, w.el["verify.invalid"]) || invalid.Rows != 0 {
		t.Errorf("a receipt with one character changed shows, in %q, %q and %d requests; want el, %q and none",
			invalid.Lang, invalid.Alert, invalid.Rows, w.el["verify.invalid"])
	}
	w.axeOn(med, "public: the receipt is not valid")
	w.shoot(med, "verify-el", "not-valid")

	// The end of the visit: the screen thanks the citizen, and shows
	// nothing of the visit any more.
	w.next()
	w.open(med, "/desk/visit")
	w.click(med, "BUTTON", w.pt["visit.end"])
	w.mediatorOn("/desk/", w.pt["home.heading"])
	w.screenShows("ended", screenWait, showsHeading(w.el["screen.ended"]), showsText(w.el["screen.ended.text"]))
	if s := w.screen(); strings.Contains(s.Text, citizen) || strings.Contains(s.Text, citizenIDMasked) || strings.Contains(s.Text, mediator) {
		t.Errorf("the screen of a visit ended still shows who was served or by whom: %q", s.Text)
	}
	w.axeOn(scr, "screen: the visit ended")
	w.shootBoth("ended")

	t.Logf("pages checked with axe-core:\n\t%s", strings.Join(w.report, "\n\t"))
	t.Logf("the test took %s", time.Since(started).Round(time.Millisecond))
}

// screenWalk is a visit seen from both sides of the desk: the mediator's
// browser and the citizen's screen.
type screenWalk struct {
	t        *testing.T
	med, scr *browser
	axe      string
	base     string
	catalogTexts
	pt, el map[string]string
	// cable is the screen's network.
	cable *cable
	// step numbers the screenshots; live is the screen's document once
	// paired.
	step int
	live string
	// report has a line per page axe-core checked.
	report []string
}

// next is the next step.
func (w *screenWalk) next() { w.step++ }

// startVisit starts, on the mediator's home page, a visit for citizen (of
// national ID citizenID) who reads lang, and records their consent.
func (w *screenWalk) startVisit(citizen, lang string) {
	w.fill(w.med, w.pt["citizen.national_id"], citizenID)
	w.fill(w.med, w.pt["citizen.name"], citizen)
	w.choose(w.med, w.pt["citizen.language"], lang)
	w.click(w.med, "BUTTON", w.pt["home.visit.start.submit"])
	w.mediatorOn("/desk/visit/consent", w.pt["consent.heading"])
	w.tick(w.pt["consent.yes"])
	w.click(w.med, "BUTTON", w.pt["consent.submit"])
}

// open goes to path in b, as if typed in the address bar: through the
// cable for the citizen's screen.
func (w *screenWalk) open(b *browser, path string) {
	w.t.Helper()
	prev := b.documentID()
	base := w.base
	if b == w.scr {
		base = "http://" + w.cable.addr()
	}
	b.navigate(base + path)
	b.waitForDocument(w.t, prev)
}

// click clicks the element of tag whose text is text, which must take b
// to another page, and waits for it.
func (w *screenWalk) click(b *browser, tag, text string) {
	w.t.Helper()
	prev := b.documentID()
	var found bool
	if err := b.eval(`(el => el ? (el.click(), true) : false)([...document.querySelectorAll(`+jsString(tag)+`)].find(`+byText(tag, text)+`))`, &found); err != nil || !found {
		w.t.Fatalf("no %s %q to click on %s (%v)", tag, text, w.where(b), err)
	}
	b.waitForDocument(w.t, prev)
}

// focus puts the focus on the mediator's control labelled label.
func (w *screenWalk) focus(label string) {
	w.t.Helper()
	var found bool
	err := w.med.eval(`(el => el ? (el.focus(), document.activeElement === el) : false)(
		[...document.querySelectorAll("input, select, textarea")].find(`+byLabel(label)+`))`, &found)
	if err != nil || !found {
		w.t.Fatalf("no control labelled %q to focus on %s (%v)", label, w.where(w.med), err)
	}
}

// fill types value into b's text field labelled label.
func (w *screenWalk) fill(b *browser, label, value string) {
	w.t.Helper()
	var found bool
	err := b.eval(`(el => el ? (el.focus(), document.activeElement === el) : false)(
		[...document.querySelectorAll("input, textarea")].find(`+byLabel(label)+`))`, &found)
	if err != nil || !found {
		w.t.Fatalf("no field labelled %q on %s (%v)", label, w.where(b), err)
	}
	b.typeText(value)
}

// tick ticks the mediator's checkbox labelled label.
func (w *screenWalk) tick(label string) {
	w.t.Helper()
	w.focus(label)
	w.med.press(keySpace, 0)
	var on bool
	if err := w.med.eval(`document.activeElement.checked`, &on); err != nil || !on {
		w.t.Fatalf("the checkbox %q is not ticked (%v)", label, err)
	}
}

// choose picks value in b's select labelled label.
func (w *screenWalk) choose(b *browser, label, value string) {
	w.t.Helper()
	var ok bool
	err := b.eval(`(el => { if (!el) return false; el.value = `+jsString(value)+`;
		el.dispatchEvent(new Event("change", {bubbles: true})); return el.value === `+jsString(value)+`; })(
		[...document.querySelectorAll("select")].find(`+byLabel(label)+`))`, &ok)
	if err != nil || !ok {
		w.t.Fatalf("cannot choose %q in %q on %s (%v)", value, label, w.where(b), err)
	}
}

// where is the path of b's page, and the beginning of its query.
func (w *screenWalk) where(b *browser) string {
	var path string
	_ = b.eval(`location.pathname + (location.search.length > 16 ? location.search.slice(0, 12) + "…" : location.search)`, &path)
	return path
}

// mediatorOn checks that the mediator's page's path ends with suffix and
// its <h1> is h1.
func (w *screenWalk) mediatorOn(suffix, h1 string) {
	w.t.Helper()
	var p struct{ Path, H1 string }
	if err := w.med.eval(`({Path: location.pathname, H1: (document.querySelector("h1") || {innerText: ""}).innerText.trim()})`, &p); err != nil {
		w.t.Fatal(err)
	}
	if !strings.HasSuffix(p.Path, suffix) || p.H1 != h1 {
		w.t.Fatalf("the mediator is on %s, %q; want …%s, %q", p.Path, p.H1, suffix, h1)
	}
}

// add adds svc to the visit from the services page, where the mediator is.
func (w *screenWalk) add(svc *events.Service) {
	w.t.Helper()
	w.open(w.med, "/desk/services?q="+url.QueryEscape(svc.Code))
	prev := w.med.documentID()
	var found bool
	err := w.med.eval(`(b => b ? (b.click(), true) : false)(
		[...document.querySelectorAll("#results li")].filter(li => li.querySelector("h2").innerText.trim() === `+jsString(svc.Name.In("pt"))+`)
			.map(li => li.querySelector("button"))[0])`, &found)
	if err != nil || !found {
		w.t.Fatalf("the services page does not offer to add %s (%v)", svc.Code, err)
	}
	w.med.waitForDocument(w.t, prev)
	w.mediatorOn("", svc.Name.In("pt"))
}

// reference is the reference the mediator's confirmation shows.
func (w *screenWalk) reference() string {
	w.t.Helper()
	w.mediatorOn("/done", w.pt["done.heading"])
	var ref string
	if err := w.med.eval(`document.querySelector(".panel .ref").innerText.trim()`, &ref); err != nil || ref == "" {
		w.t.Fatalf("the confirmation shows no reference (%v)", err)
	}
	return ref
}

// statuses are the requests' statuses' names in lang.
func (w *screenWalk) statuses(lang string) []string {
	texts := deskTexts(w.t, lang)
	var out []string
	for k, v := range texts {
		if strings.HasPrefix(k, "status.") {
			out = append(out, v)
		}
	}
	return out
}

// screenState is what the citizen's screen shows.
type screenState struct {
	Lang, H1, Text, HTML, Path string
	// Answers are the screen's answers, by question.
	Answers map[string]string
	// Paired says the mark set in the page when it was paired is still
	// there: the page was not loaded again.
	Paired bool
	// Menus counts the navigation menus.
	Menus int
	// Stream is the state of the page's last EventSource (0 connecting,
	// 1 open, 2 closed; -1 without one); Opened and Failed count how many
	// times its EventSources opened and failed.
	Stream, Opened, Failed int
}

// screen reads the citizen's screen.
func (w *screenWalk) screen() screenState {
	w.t.Helper()
	var s screenState
	err := w.scr.eval(`(() => { const st = window.__streams || [];
		return {Lang: document.documentElement.lang, H1: (document.querySelector("h1") || {innerText: ""}).innerText.trim(),
			Text: document.body.innerText, HTML: document.documentElement.outerHTML, Path: location.pathname,
			Answers: Object.fromEntries([...document.querySelectorAll("#screen dl > div")].map(d =>
				[d.querySelector("dt").innerText.trim(), d.querySelector("dd").innerText.trim()])),
			Paired: window.__paired === true, Menus: document.querySelectorAll("nav, [role=navigation]").length,
			Stream: st.length ? st[st.length - 1].source.readyState : -1,
			Opened: st.reduce((n, s) => n + s.opened, 0), Failed: st.reduce((n, s) => n + s.failed, 0)}; })()`, &s)
	if err != nil {
		w.t.Fatalf("read the citizen's screen: %v", err)
	}
	return s
}

// A screenCheck says what is wrong with what the screen shows, or nil.
type screenCheck func(screenState) error

// showsHeading checks the screen's <h1>.
func showsHeading(h1 string) screenCheck {
	return func(s screenState) error {
		if s.H1 != h1 {
			return fmt.Errorf("the heading is %q, want %q", s.H1, h1)
		}
		return nil
	}
}

// showsAnswer checks that the screen answers question with answer.
func showsAnswer(question, answer string) screenCheck {
	return func(s screenState) error {
		if got, ok := s.Answers[question]; !ok || got != answer {
			return fmt.Errorf("the answer to %q is %q, want %q (answers: %q)", question, got, answer, s.Answers)
		}
		return nil
	}
}

// showsText checks that the screen shows each of texts.
func showsText(texts ...string) screenCheck {
	return func(s screenState) error {
		for _, text := range texts {
			if !strings.Contains(s.Text, text) {
				return fmt.Errorf("%q is not shown", text)
			}
		}
		return nil
	}
}

// screenShows waits up to within for the citizen's screen to pass checks,
// then checks what it must always be: the same page, in Greek, without a
// menu, and without the national ID in full.
func (w *screenWalk) screenShows(name string, within time.Duration, checks ...screenCheck) {
	t := w.t
	t.Helper()
	var s screenState
	workertest.WaitWithin(t, within, "the citizen's screen to show "+name, func() error {
		s = w.screen()
		for _, check := range checks {
			if err := check(s); err != nil {
				return err
			}
		}
		return nil
	})
	if s.Path != "/desk/screen/live" || !s.Paired || w.scr.documentID() != w.live {
		t.Errorf("%s: the citizen's screen was loaded again (%s); it must follow the visit in place", name, s.Path)
	}
	if s.Lang != "el" {
		t.Errorf("%s: the citizen's screen says it is in %q, want el", name, s.Lang)
	}
	if s.Menus != 0 {
		t.Errorf("%s: the citizen's screen shows %d navigation menus", name, s.Menus)
	}
	if strings.Contains(s.HTML, citizenID) {
		t.Errorf("%s: the citizen's screen holds the national ID in full", name)
	}
	if name != "ended" && !strings.Contains(s.Text, citizenIDMasked) {
		t.Errorf("%s: the citizen's screen does not show the national ID masked, %q", name, citizenIDMasked)
	}
}

// axeOn runs axe-core strictly on b's page, named name.
func (w *screenWalk) axeOn(b *browser, name string) {
	w.t.Helper()
	n := b.checkAccessibilityStrictly(w.t, w.axe)
	line := fmt.Sprintf("%s (%s): %d axe-core violations", name, w.where(b), n)
	w.report = append(w.report, line)
	w.t.Log(line)
}

// shoot keeps a screenshot of b's page as <prefix>-<step>-<name>.png.
func (w *screenWalk) shoot(b *browser, prefix, name string) {
	w.t.Helper()
	b.screenshot(filepath.Join(artifactDir(w.t), fmt.Sprintf("%s-%02d-%s.png", prefix, w.step, name)))
}

// shootBoth keeps screenshots of both sides of the desk.
func (w *screenWalk) shootBoth(name string) {
	w.t.Helper()
	w.shoot(w.med, "mediator-pt", name)
	w.shoot(w.scr, "screen-el", name)
}

// cable is the network between the citizen's screen and spotflow: a TCP
// relay that can be pulled out, closing every connection and every new
// one at once, and plugged in again.
type cable struct {
	ln   net.Listener
	to   string
	mu   sync.Mutex
	out  bool
	open map[net.Conn]struct{}
}

// startCable relays connections to to until the test ends.
func startCable(t *testing.T, to string) *cable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cable{ln: ln, to: to, open: make(map[net.Conn]struct{})}
	go c.serve()
	t.Cleanup(func() {
		ln.Close()
		c.pull(true)
	})
	return c
}

// addr is where the screen's end of the cable listens.
func (c *cable) addr() string { return c.ln.Addr().String() }

func (c *cable) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		go c.relay(in)
	}
}

func (c *cable) relay(in net.Conn) {
	if c.isOut() {
		in.Close()
		return
	}
	out, err := net.Dial("tcp", c.to)
	if err != nil {
		in.Close()
		return
	}
	c.mu.Lock()
	if c.out {
		c.mu.Unlock()
		in.Close()
		out.Close()
		return
	}
	c.open[in], c.open[out] = struct{}{}, struct{}{}
	c.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	in.Close()
	out.Close()
	c.mu.Lock()
	delete(c.open, in)
	delete(c.open, out)
	c.mu.Unlock()
}

func (c *cable) isOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out
}

// pull pulls the cable out (true), closing every connection through it, or
// plugs it in again (false).
func (c *cable) pull(out bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = out
	if out {
		for conn := range c.open {
			conn.Close()
		}
	}
}

// pdfPage is a page object of a PDF (not the /Pages tree); pdfMediaBox,
// a page's size, its width in points.
var (
	pdfPage     = regexp.MustCompile(`/Type\s*/Page\b[^s]`)
	pdfMediaBox = regexp.MustCompile(`/MediaBox\s*\[\s*0\s+0\s+([0-9.]+)\s+[0-9.]+\s*\]`)
)

// printToPDF prints the mediator's page on paper width by height inches,
// keeps it as name, and returns how many pages it has.
func (w *screenWalk) printPDF(name string, width, height float64) int {
	t := w.t
	t.Helper()
	var out struct {
		Data string `json:"data"`
	}
	w.med.call(w.med.session, "Page.printToPDF", map[string]any{"paperWidth": width, "paperHeight": height,
		"printBackground": true}, &out)
	pdf, err := base64.StdEncoding.DecodeString(out.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Fatalf("%s is not a PDF", name)
	}
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	pages := len(pdfPage.FindAll(pdf, -1))
	for _, box := range pdfMediaBox.FindAllSubmatch(pdf, -1) {
		if got, _ := strconv.ParseFloat(string(box[1]), 64); math.Abs(got-width*72) > 1 {
			t.Errorf("%s has a page %s points wide, want %.1f", name, box[1], width*72)
		}
	}
	t.Logf("the receipt printed on %.2f×%.2f in: %s, %d pages, %d bytes", width, height, path, pages, len(pdf))
	return pages
}

// readQR photographs the receipt's QR code as the page shows it, enlarged
// so that each module is several pixels wide, and reads it with jsQR,
// as a phone's camera does: when one picture cannot be read, from a
// little closer. (jsQR misses a dense code at a few sizes, whatever its
// content.)
func (w *screenWalk) readQR(jsQR string) string {
	t, b := w.t, w.med
	t.Helper()
	var box struct{ X, Y, Width, Height, Modules float64 }
	err := b.eval(`(svg => { const r = svg.getBoundingClientRect();
		return {X: r.left + scrollX, Y: r.top + scrollY, Width: r.width, Height: r.height, Modules: svg.viewBox.baseVal.width}; })(
		document.querySelector("svg.qr"))`, &box)
	if err != nil || box.Width == 0 {
		t.Fatalf("the receipt shows no QR code (%v)", err)
	}
	if err := b.eval(jsQR+"\n;true", nil); err != nil {
		t.Fatalf("load jsQR into the page: %v", err)
	}
	// The picture takes margin CSS pixels of the page around the code, at
	// pixels a module.
	const margin = 8
	for _, pixels := range []float64{6.5, 8.5, 10.5} {
		scale := pixels * box.Modules / box.Width
		var shot struct {
			Data string `json:"data"`
		}
		b.call(b.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
			"clip": map[string]any{"x": box.X - margin, "y": box.Y - margin, "width": box.Width + 2*margin, "height": box.Height + 2*margin, "scale": scale}}, &shot)
		png, err := base64.StdEncoding.DecodeString(shot.Data)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(artifactDir(t), "receipt-qr.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		var text *string
		err = b.eval(`new Promise((ok, fail) => { const img = new Image();
			img.onload = () => { const c = document.createElement("canvas"); c.width = img.naturalWidth; c.height = img.naturalHeight;
				const g = c.getContext("2d"); g.drawImage(img, 0, 0); const d = g.getImageData(0, 0, c.width, c.height);
				const code = jsQR(d.data, d.width, d.height); ok(code ? code.data : null); };
			img.onerror = () => fail(new Error("the screenshot is not an image"));
			img.src = "data:image/png;base64,`+shot.Data+`"; })`, &text)
		if err != nil {
			t.Fatalf("read the QR code: %v", err)
		}
		if text != nil {
			t.Logf("the receipt's QR code (%.0f modules in %.0f CSS pixels, read at %.1f pixels a module): %.60s… (%d characters)",
				box.Modules, box.Width, pixels, *text, len(*text))
			return *text
		}
		t.Logf("jsQR cannot read the receipt's QR code at %.1f pixels a module", pixels)
	}
	t.Fatalf("jsQR cannot read the receipt's QR code (%.0f modules in %.0f CSS pixels): see receipt-qr.png", box.Modules, box.Width)
	return ""
}

// tamper changes, in the receipt that link carries, the text from to to,
// one character apart, and returns the link to it.
func (w *screenWalk) tamper(link, from, to string) string {
	t := w.t
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	signed, err := receipts.FromCompact(q.Get("r"))
	if err != nil {
		t.Fatalf("the receipt's link does not carry a receipt: %v", err)
	}
	data, _ := json.Marshal(signed)
	if bytes.Count(data, []byte(from)) != 1 {
		t.Fatalf("the receipt does not say %q once: %s", from, data)
	}
	if err := json.Unmarshal(bytes.Replace(data, []byte(from), []byte(to), 1), &signed); err != nil {
		t.Fatal(err)
	}
	compact, err := receipts.Compact(signed)
	if err != nil {
		t.Fatal(err)
	}
	q.Set("r", compact)
	u.RawQuery = q.Encode()
	return u.String()
}
