package main

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// The operator's console's browser test plays an outage at the tax
// authority: its simulated back office refuses its first three work items
// (dead-lettered at once), and the justice ministry's its first one. Ana,
// an operator who speaks Portuguese, sets her password with her setup link
// and signs in, sees the alert for tax on the health page, goes to the
// stuck work, filters it to tax, opens one dead letter's message giving a
// reason, goes back and replays all of tax's with a reason, and watches
// the replays page update itself until every one is completed; the audit
// page then shows her sign-in, her view and her replays, and the chain
// verifies. Justice's dead letter, outside the filter, stays waiting. Rui,
// a viewer who speaks Greek, signs in without JavaScript in a browser of
// his own: he sees the stuck work and a dead letter's record, but no form
// that opens a message or replays, and his direct POSTs are refused (403)
// without a word in the audit log. With the keyboard alone; every page
// passes axe-core without a single violation of any impact, speaks its
// operator's language and reflows at 320 CSS pixels.
func TestConsole_AnOperatorReplaysAnAgencysDeadLettersAfterAnOutageAndAViewerCannot(t *testing.T) {
	t.Parallel()
	started := time.Now()
	axe := axeSource(t)
	// Tax answers late enough for the replays page to be seen updating
	// itself.
	m, dbURL := startMain(t, "*:latency=5ms;tax:refuse=3,latency=1500ms;justice:refuse=1")
	pool := pgtest.Pool(t, dbURL)
	store := postgres.NewStore(pool, nil)
	ctx := t.Context()
	base := "http://" + m.HTTPAddr()

	// The outage: three tax-ID certificates, and a criminal record
	// certificate for justice, all dead-lettered.
	_, token, err := store.CreateDesk(ctx, "lisboa", "Loja do Cidadão Saldanha")
	if err != nil {
		t.Fatal(err)
	}
	submit := func(key, body string) string {
		t.Helper()
		a := post(t, http.DefaultClient, base, token, submission{key: key, body: body})
		if a.status != http.StatusAccepted || a.id == "" {
			t.Fatalf("submit %s: %d %s", key, a.status, a.code)
		}
		return a.id
	}
	var taxRequests []string
	for i := range 3 {
		taxRequests = append(taxRequests, submit(fmt.Sprintf("tax-%d", i), fmt.Sprintf(
			`{"service_code":"tax-id-certificate","citizen":{"national_id":"%08d","name":"Inês Ferreira"},"attributes":{"tax_number":"2%08d","year":2025}}`,
			20000000+i, i)))
	}
	justiceRequest := submit("justice-0",
		`{"service_code":"criminal-record-certificate","citizen":{"national_id":"31337000","name":"Rui Lopes"},"attributes":{"purpose":"employment"}}`)
	waitDeadLetters := func(agency string, n int) []events.DeadLetter {
		t.Helper()
		var list []events.DeadLetter
		workertest.WaitWithin(t, 30*time.Second, fmt.Sprintf("%d dead letters of %s", n, agency), func() error {
			var err error
			list, err = store.ListDeadLetters(ctx, events.DeadLetterQuery{Agency: agency, Pending: true, Limit: 10})
			if err == nil && len(list) != n {
				err = fmt.Errorf("%d waiting", len(list))
			}
			return err
		})
		return list
	}
	waitDeadLetters("tax", 3)
	justiceLetter := waitDeadLetters("justice", 1)[0]

	by := events.By{Actor: "operator:test"}
	anaSetup, err := store.CreateOperator(ctx, events.Operator{Username: "ana", Name: "Ana Sousa", Role: events.RoleOperator, Language: "pt"}, by)
	if err != nil {
		t.Fatal(err)
	}
	ruiSetup, err := store.CreateOperator(ctx, events.Operator{Username: "rui", Name: "Rui Lopes", Role: events.RoleViewer, Language: "el"}, by)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spotflow started and the outage played in %s", time.Since(started).Round(time.Millisecond))

	// Ana, in Portuguese, with JavaScript.
	ana := newConsoleWalk(t, axe, base, "pt", true)
	ana.setUp(anaSetup.Code, "ana", "cavalo bateria agrafo certo")

	ana.page("health", "console.health.heading")
	alerts := ana.table(ana.T("console.health.alerts"))
	if !slices.ContainsFunc(alerts, func(r map[string]string) bool {
		return r[ana.T("console.health.alert")] == "SpotflowWorkItemsDeadLettered" && strings.HasPrefix(r[ana.T("console.health.subject")], "tax ") &&
			r[ana.T("console.health.detail")] == ana.T("console.alert.dead-letters", 3)
	}) {
		t.Errorf("the health page raises no SpotflowWorkItemsDeadLettered alert for tax: %v", alerts)
	}

	ana.tabTo("the menu's link to the stuck work", byText("A", ana.T("console.nav.stuck")))
	ana.press(keyEnter)
	ana.page("stuck", "console.stuck.heading")
	if got := ana.agencies(); !slices.Equal(got, []string{"justice", "tax", "tax", "tax"}) {
		t.Errorf("the stuck work lists dead letters of %v, want justice's one and tax's three", got)
	}
	ana.tabTo("the agency to filter by", byLabel(ana.T("console.agency")))
	ana.choose("tax")
	ana.tabTo("the button that filters", byText("BUTTON", ana.T("home.filter.submit")))
	ana.press(keyEnter)
	ana.page("stuck-tax", "console.stuck.heading")
	if got := ana.agencies(); !slices.Equal(got, []string{"tax", "tax", "tax"}) {
		t.Fatalf("the stuck work filtered to tax lists dead letters of %v, want tax's three", got)
	}

	// One dead letter's message, opened with a reason.
	ana.tabTo("the link that opens the first dead letter", `el => el.tagName === "A" && !!el.closest("tbody") &&
		el.innerText.trim().startsWith(`+jsString(ana.T("console.open"))+`)`)
	var href string
	if err := ana.b.eval(`document.activeElement.getAttribute("href")`, &href); err != nil {
		t.Fatal(err)
	}
	letterID, err := strconv.ParseInt(strings.TrimPrefix(href, "/desk/ops/dead-letters/"), 10, 64)
	if err != nil {
		t.Fatalf("the dead letter's link leads to %q", href)
	}
	ana.press(keyEnter)
	ana.page("dead-letter", "console.dead-letter.name", letterID)
	record := ana.summary()
	if record[ana.T("console.agency")] != "tax" || !strings.Contains(record[ana.T("console.last-error")], "refuses") {
		t.Errorf("the dead letter's record shows %v, want tax's refusal", record)
	}
	const viewReason = "A Autoridade Tributária recusou o pedido: ver porquê"
	ana.tabTo("the reason for opening the message", byLabel(ana.T("console.dead-letter.open.reason")))
	ana.b.typeText(viewReason)
	ana.tabTo("the button that opens the message", byText("BUTTON", ana.T("console.dead-letter.open")))
	ana.press(keyEnter)
	ana.page("dead-letter-message", "console.dead-letter.name", letterID)
	var message struct{ Code, Said string }
	if err := ana.b.eval(`({Code: (document.querySelector("main pre") || {innerText: ""}).innerText, Said: document.querySelector("main").innerText})`, &message); err != nil {
		t.Fatal(err)
	}
	if ref := record[ana.T("request.reference")]; ref == "" || !strings.Contains(message.Code, ref) {
		t.Errorf("the message shown does not hold its request %q: %q", ref, message.Code)
	}
	if said := ana.T("console.dead-letter.message.audited", viewReason); !strings.Contains(message.Said, said) {
		t.Errorf("the message's page does not say %q", said)
	}

	// Back to tax's stuck work, and every one of them replayed.
	ana.back("agency=tax")
	if got := ana.agencies(); !slices.Equal(got, []string{"tax", "tax", "tax"}) {
		t.Fatalf("back on the stuck work filtered to tax, dead letters of %v are listed", got)
	}
	const replayReason = "A Autoridade Tributária voltou a aceitar pedidos"
	ana.tabTo("the reason for replaying", byLabel(ana.T("console.replay.reason")))
	ana.b.typeText(replayReason)
	ana.tabTo("the button that replays them all", byText("BUTTON", ana.T("console.replay.all", 3)))
	ana.press(keyEnter)
	ana.replaysComplete(3)

	workertest.WaitWithin(t, 30*time.Second, "the three tax requests to be completed", func() error {
		var done int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE id = ANY($1) AND status = 'completed'`, taxRequests).Scan(&done)
		if err == nil && done != len(taxRequests) {
			err = fmt.Errorf("%d of %d completed", done, len(taxRequests))
		}
		return err
	})
	still := func(when string) {
		t.Helper()
		list, err := store.ListDeadLetters(ctx, events.DeadLetterQuery{ID: justiceLetter.ID, Limit: 1})
		if err != nil || len(list) != 1 || list[0].Replays != 0 {
			t.Errorf("%s justice's dead letter is %+v (%v), want it waiting, never replayed", when, list, err)
		}
		var status string
		if err := pool.QueryRow(ctx, `SELECT status FROM requests WHERE id = $1`, justiceRequest).Scan(&status); err != nil || status == "completed" {
			t.Errorf("%s justice's request is %q (%v), want it not completed", when, status, err)
		}
	}
	still("after tax's dead letters were replayed,")

	// The audit log: her sign-in, the view with its reason, the replays with
	// theirs; and the chain verifies.
	ana.tabTo("the menu's link to the audit log", byText("A", ana.T("console.nav.audit")))
	ana.press(keyEnter)
	ana.page("audit", "console.audit.heading")
	ana.tabTo("who to show", byLabel(ana.T("console.audit.actor")))
	ana.b.typeText("operator:ana")
	ana.tabTo("the button that filters", byText("BUTTON", ana.T("home.filter.submit")))
	ana.press(keyEnter)
	ana.page("audit-ana", "console.audit.heading")
	var seen []string
	for _, r := range ana.table(ana.T("console.audit.entries")) {
		seen = append(seen, r[ana.T("console.audit.actor")]+" "+r[ana.T("console.audit.action")]+" "+r[ana.T("console.reason")])
	}
	for want, n := range map[string]int{
		"operator:ana operator_signed_in ":              1,
		"operator:ana dead_letter_viewed " + viewReason: 1,
		"operator:ana replay " + replayReason:           3,
	} {
		if got := countOf(seen, want); got != n {
			t.Errorf("the audit page filtered to operator:ana shows %d entries %q, want %d; it shows %q", got, want, n, seen)
		}
	}
	for _, s := range seen {
		if !strings.HasPrefix(s, "operator:ana ") {
			t.Errorf("the audit page filtered to operator:ana shows %q", s)
		}
	}
	var chain struct{ Said string }
	if err := ana.b.eval(`({Said: [...document.querySelectorAll("main .notice")].map(n => n.innerText).join(" | ")})`, &chain); err != nil {
		t.Fatal(err)
	}
	verified := regexp.MustCompile(strings.ReplaceAll(regexp.QuoteMeta(ana.T("console.audit.chain.verified")), "%d", `\d+`))
	if !verified.MatchString(chain.Said) || strings.Contains(chain.Said, ana.T("console.audit.chain.broken")) {
		t.Errorf("the audit page says %q, want the chain verified", chain.Said)
	}

	// The pages of people and credentials, and her own account.
	for _, p := range []struct{ name, link, heading string }{
		{"operators", "console.nav.operators", "console.operators.heading"},
		{"desks", "console.nav.desks", "console.desks.heading"},
		{"mediators", "console.nav.mediators", "ops.heading"},
		{"agency-credentials", "console.nav.agency-credentials", "console.agency-credentials.heading"},
		{"account", "console.nav.account", "console.account.heading"},
	} {
		ana.tabTo("the menu's link to the "+p.name, byText("A", ana.T(p.link)))
		ana.press(keyEnter)
		ana.page(p.name, p.heading)
	}
	var chosen string
	if err := ana.b.eval(`[...document.querySelectorAll("select")].find(`+byLabel(ana.T("console.account.language.label"))+`).value`, &chosen); err != nil || chosen != "pt" {
		t.Errorf("her account page has the language %q chosen (%v), want pt", chosen, err)
	}
	ana.tabTo("the link that turns the second factor on", byText("A", ana.T("console.second-factor.add")))
	ana.press(keyEnter)
	ana.page("second-factor", "console.second-factor.add.heading")

	// Rui, a viewer, in Greek, without JavaScript, in a browser of his own.
	rui := newConsoleWalk(t, axe, base, "el", false)
	rui.setUp(ruiSetup.Code, "rui", "άλογο μπαταρία συνδετήρας σωστό")
	rui.page("health", "console.health.heading")
	rui.tabTo("the link to justice's stuck work", `el => el.tagName === "A" && el.innerText.includes(`+jsString(rui.T("console.health.stuck-of", "justice"))+`)`)
	rui.press(keyEnter)
	rui.page("stuck-justice", "console.stuck.heading")
	if got := rui.agencies(); !slices.Equal(got, []string{"justice"}) {
		t.Errorf("justice's stuck work lists dead letters of %v for a viewer, want justice's one", got)
	}
	rui.noChanges("the stuck work", "console.replay.viewer")
	rui.tabTo("the link that opens justice's dead letter", `el => el.tagName === "A" && !!el.closest("tbody") &&
		el.innerText.trim().startsWith(`+jsString(rui.T("console.open"))+`)`)
	rui.press(keyEnter)
	rui.page("dead-letter-viewer", "console.dead-letter.name", justiceLetter.ID)
	rui.noChanges("the dead letter", "console.dead-letter.viewer")

	// What the pages do not offer him, asked for directly with his session
	// and its CSRF token, is refused and leaves no trace in the audit log.
	audited := func() int {
		t.Helper()
		entries, err := store.AuditEntries(ctx, events.AuditQuery{Actor: "operator:rui", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	before := audited()
	rui.b.setJavaScript(true) // for the test's own fetch; the page's script stays unrun
	letter := strconv.FormatInt(justiceLetter.ID, 10)
	for _, p := range []struct {
		path   string
		fields map[string]string
	}{
		{"/desk/ops/dead-letters/" + letter, map[string]string{"reason": "curiosity"}},
		{"/desk/ops/replay", map[string]string{"id": letter, "replay": "selected", "reason": "because"}},
		{"/desk/ops/replay", map[string]string{"replay": "all", "agency": "justice", "reason": "because"}},
	} {
		if got := trainingPost(t, rui.b, p.path, p.fields); got != http.StatusForbidden {
			t.Errorf("a viewer's POST %s %v: %d, want 403", p.path, p.fields, got)
		}
	}
	rui.b.setJavaScript(false)
	if after := audited(); after != before || before == 0 {
		t.Errorf("the audit log holds %d entries by operator:rui before his refused POSTs and %d after: want his sign-in, and nothing more", before, after)
	}
	still("after the viewer's POSTs,")

	t.Logf("every page of the console:\n\t%s\n\t%s", strings.Join(ana.report, "\n\t"), strings.Join(rui.report, "\n\t"))
	t.Logf("the test took %s", time.Since(started).Round(time.Millisecond))
}

// countOf counts the occurrences of s in list.
func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// consoleWalk is an operator's walk through the console in a browser of
// their own: the desk application's walk, with the console's texts, which
// fall back to English (a failure) when the language lacks one.
type consoleWalk struct {
	*deskWalk
	missing map[string]bool
}

// newConsoleWalk starts a browser asking for pages in lang, with or without
// JavaScript.
func newConsoleWalk(t *testing.T, axe, base, lang string, js bool) *consoleWalk {
	t.Helper()
	b := startBrowser(t, 1280, 1000)
	b.call(b.session, "Network.enable", nil, nil)
	b.call(b.session, "Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{"Accept-Language": lang}}, nil)
	if !js {
		b.setJavaScript(false)
	}
	return &consoleWalk{deskWalk: &deskWalk{t: t, b: b, run: deskRun{lang: lang, js: js}, axe: axe, base: base,
		tr: deskTexts(t, lang), en: deskTexts(t, "en")}, missing: map[string]bool{}}
}

// T is the text key in the walk's language, or the English one, failing
// the test, when the language has none.
func (w *consoleWalk) T(key string, args ...any) string {
	w.t.Helper()
	s, ok := w.tr[key]
	if !ok {
		if s, ok = w.en[key]; !ok {
			w.t.Fatalf("no text %q in any language", key)
		}
		if !w.missing[key] {
			w.missing[key] = true
			w.t.Errorf("the console has no %s text %q: it shows the English %q", w.run.lang, key, s)
		}
	}
	if len(args) > 0 {
		s = fmt.Sprintf(s, args...)
	}
	return s
}

// page checks the page shown, named name, whose <h1> is the text key (with
// args): in the walk's language, axe-core clean, reflowing at 320 CSS
// pixels (deskWalk.inspect).
func (w *consoleWalk) page(name, key string, args ...any) {
	w.t.Helper()
	english := w.en[key]
	if len(args) > 0 {
		english = fmt.Sprintf(english, args...)
	}
	want := w.T(key, args...)
	if want == english && w.missing[key] {
		english = "" // told already
	}
	w.inspect("console-"+name, want, english)
}

// setUp opens the setup link with code, sets password, and signs in as
// username, by keyboard.
func (w *consoleWalk) setUp(code, username, password string) {
	t, b := w.t, w.b
	t.Helper()
	w.open("/desk/ops/setup?code=" + code)
	w.page("setup", "console.setup.heading")
	var filled string
	if err := b.eval(`[...document.querySelectorAll("input")].find(`+byLabel(w.T("setup.code"))+`).value`, &filled); err != nil || filled != code {
		t.Errorf("the setup code field holds %q (%v), want the link's code", filled, err)
	}
	w.tabTo("the new password", byLabel(w.T("setup.password")))
	b.typeText(password)
	w.tabTo("the new password again", byLabel(w.T("setup.password.again")))
	b.typeText(password)
	w.tabTo("the button that sets the password", byText("BUTTON", w.T("setup.submit")))
	w.press(keyEnter)
	w.page("sign-in", "console.sign-in.heading")
	var notice string
	if err := b.eval(`(document.querySelector("main [role=status]") || {innerText: ""}).innerText.trim()`, &notice); err != nil || notice != w.T("signin.password-set") {
		t.Errorf("after setting the password the sign-in page says %q (%v), want %q", notice, err, w.T("signin.password-set"))
	}
	w.tabTo("the username", byLabel(w.T("signin.username")))
	b.typeText(username)
	w.tabTo("the password", byLabel(w.T("signin.password")))
	b.typeText(password)
	w.tabTo("the sign-in button", byText("BUTTON", w.T("signin.submit")))
	w.press(keyEnter)
}

// table reads the rows of the table in the region labelled label, each a
// map from its column's heading to its cell's text.
func (w *consoleWalk) table(label string) []map[string]string {
	w.t.Helper()
	var rows []map[string]string
	err := w.b.eval(`(() => { const region = [...document.querySelectorAll("[role=region]")].find(r => r.getAttribute("aria-label") === `+jsString(label)+`);
		if (!region) return [];
		const text = el => el.innerText.replace(/\s+/g, " ").trim();
		const heads = [...region.querySelectorAll("thead th")].map(text);
		return [...region.querySelectorAll("tbody tr")].map(tr => Object.fromEntries([...tr.children].map((c, i) => [heads[i], text(c)]))); })()`, &rows)
	if err != nil {
		w.t.Fatal(err)
	}
	return rows
}

// agencies are the agencies of the dead letters the stuck work lists,
// sorted.
func (w *consoleWalk) agencies() []string {
	w.t.Helper()
	var out []string
	for _, r := range w.table(w.T("console.stuck.dead-letters")) {
		out = append(out, r[w.T("console.agency")])
	}
	slices.Sort(out)
	return out
}

// summary reads the page's summary list, from each term to its
// description.
func (w *consoleWalk) summary() map[string]string {
	w.t.Helper()
	var out map[string]string
	err := w.b.eval(`Object.fromEntries([...document.querySelectorAll("main dl.summary > div")].map(d =>
		[d.querySelector("dt").innerText.trim(), d.querySelector("dd").innerText.trim()]))`, &out)
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// back goes back through the browser's history, as its Back button does,
// to the latest page whose address holds to.
func (w *consoleWalk) back(to string) {
	t, b := w.t, w.b
	t.Helper()
	var h struct {
		CurrentIndex int
		Entries      []struct {
			ID  int
			URL string
		}
	}
	b.call(b.session, "Page.getNavigationHistory", nil, &h)
	for i := h.CurrentIndex - 1; i >= 0; i-- {
		if strings.Contains(h.Entries[i].URL, to) {
			prev := b.documentID()
			b.call(b.session, "Page.navigateToHistoryEntry", map[string]any{"entryId": h.Entries[i].ID}, nil)
			b.waitForDocument(t, prev)
			return
		}
	}
	t.Fatalf("no page of the browser's history has %q in its address", to)
}

// noChanges checks that the page, named what, offers a viewer no form that
// changes anything or opens a message, and says why with the text key.
func (w *consoleWalk) noChanges(what, key string) {
	w.t.Helper()
	var p struct {
		Forms []string
		Boxes int
		Text  string
	}
	err := w.b.eval(`({Forms: [...document.querySelectorAll("main form[method=post]")].map(f => f.getAttribute("action")),
		Boxes: document.querySelectorAll("main input[type=checkbox], main textarea").length, Text: document.querySelector("main").innerText})`, &p)
	if err != nil {
		w.t.Fatal(err)
	}
	if len(p.Forms) > 0 || p.Boxes > 0 {
		w.t.Errorf("%s offers a viewer forms to %v and %d boxes to tick or fill", what, p.Forms, p.Boxes)
	}
	if said := w.T(key); !strings.Contains(p.Text, said) {
		w.t.Errorf("%s does not tell a viewer %q", what, said)
	}
}

// replaysComplete waits, on the replays page that follows a replay, for
// every one of the n replayed dead letters' work to be completed, without
// the page being loaded again.
func (w *consoleWalk) replaysComplete(n int) {
	t, b := w.t, w.b
	t.Helper()
	doc := b.documentID()
	if err := b.eval(`window.__notReloaded = true`, nil); err != nil {
		t.Fatal(err)
	}
	done := w.T("console.replays.count", n, n)
	var first struct {
		Text string
		Live bool
	}
	if err := b.eval(`({Text: document.querySelector("main").innerText, Live: !!document.querySelector("[data-live]")})`, &first); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(first.Text, done) || !first.Live {
		t.Fatalf("the replays were final before their page showed them (live %v): tax must answer later; the page says %q", first.Live, first.Text)
	}
	w.page("replays-open", "console.replays.heading")
	workertest.WaitWithin(t, 45*time.Second, "the replays page to show "+done, func() error {
		var text string
		if err := b.eval(`document.querySelector("main").innerText`, &text); err != nil {
			return err
		}
		if !strings.Contains(text, done) {
			return fmt.Errorf("it says %q", text)
		}
		return nil
	})
	var kept bool
	if err := b.eval(`window.__notReloaded === true`, &kept); err != nil || !kept || b.documentID() != doc {
		t.Error("the replays page was reloaded; it must update itself in place")
	}
	w.page("replays-final", "console.replays.heading")
	rows := w.table(w.T("console.replays.heading"))
	if len(rows) != n {
		t.Errorf("the replays page lists %d replays, want %d: %v", len(rows), n, rows)
	}
	for _, r := range rows {
		if st := r[w.T("request.status")]; !strings.HasPrefix(st, w.T("status.completed")) || r[w.T("console.agency")] != "tax" {
			t.Errorf("a replay of %s is %q, want tax's work completed", r[w.T("console.agency")], st)
		}
	}
}
