package deskapp_test

import (
	"bufio"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/schemas"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/deskapp"
	"github.com/spotflow/spotflow/workers/intaketest"
	"github.com/spotflow/spotflow/workers/ratelimit"
	"github.com/spotflow/spotflow/workers/receipts"
	"github.com/spotflow/spotflow/workers/workertest"
)

// fast are argon2id parameters cheap enough for many sign-ins in tests;
// the defaults are used by the browser test through `spotflow run`.
var fast = deskapp.Argon2{Memory: 1024, Time: 1, Threads: 1}

// world is the desk application over a real intake, Postgres and
// JetStream, with a mediator of the intake's desk.
type world struct {
	*intaketest.Desk
	srv  *httptest.Server
	code string // the mediator's setup code
}

func start(t *testing.T, edit ...func(*deskapp.Config)) *world {
	t.Helper()
	return startOn(t, intaketest.Start(t, nil), edit...)
}

// startOn is start over an intake started already.
func startOn(t *testing.T, d *intaketest.Desk, edit ...func(*deskapp.Config)) *world {
	t.Helper()
	cfg := deskapp.Config{Store: d.Store, Intake: d.Intake, Catalog: d.Catalog, Hasher: deskapp.NewHasher(fast),
		FailedAuth: ratelimit.New(100.0/60, 100), Logger: slog.New(slog.DiscardHandler)}
	keys, err := receipts.OpenKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Receipts, cfg.Screens = keys, d.Store
	for _, e := range edit {
		e(&cfg)
	}
	app, err := deskapp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	workertest.Run(t, "desk application", app.Run)
	setup, err := d.Store.CreateMediator(t.Context(), events.Mediator{Username: "rui.lopes", DeskID: d.Desk.ID, Name: "Rui Lopes", Language: "pt"},
		events.By{Actor: "operator:test"})
	if err != nil {
		t.Fatal(err)
	}
	return &world{Desk: d, srv: srv, code: setup.Code}
}

// browser is a client with its own cookies, answering with the page.
type browser struct {
	t      *testing.T
	w      *world
	client *http.Client
	// origin and site, when set, are sent as the Origin and the
	// Sec-Fetch-Site of every POST, as browsers send them.
	origin, site string
	// operator, when set, is sent as the operator token (HTTP Basic, with
	// the user name ana).
	operator string
}

func (w *world) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, w: w, client: &http.Client{Jar: jar}}
}

type answer struct {
	status int
	url    string
	body   string
	header http.Header
}

func (b *browser) do(req *http.Request) answer {
	b.t.Helper()
	if b.operator != "" {
		req.SetBasicAuth("ana", b.operator)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Request.URL.Path + "?" + resp.Request.URL.RawQuery, string(body), resp.Header}
}

func (b *browser) get(path string) answer {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.w.srv.URL+path, nil)
	return b.do(req)
}

// post sends form to path, with the CSRF token of the page it came from
// unless form sets one.
func (b *browser) post(path string, from answer, form url.Values) answer {
	b.t.Helper()
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", csrfOf(from.body))
	}
	req, _ := http.NewRequest(http.MethodPost, b.w.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	if b.site != "" {
		req.Header.Set("Sec-Fetch-Site", b.site)
	}
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

func csrfOf(page string) string {
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// signIn sets the mediator's password with the setup code, then signs in.
func (b *browser) signIn(password string) answer {
	b.t.Helper()
	page := b.get("/desk/setup?code=" + url.QueryEscape(b.w.code))
	if a := b.post("/desk/setup", page, url.Values{"code": {b.w.code}, "password": {password}, "password-again": {password}}); a.status != http.StatusOK {
		b.t.Fatalf("set password: %d %s", a.status, a.body)
	}
	page = b.get("/desk/sign-in")
	a := b.post("/desk/sign-in", page, url.Values{"username": {"rui.lopes"}, "password": {password}, "next": {"/desk/"}})
	if a.status != http.StatusOK || !strings.HasPrefix(a.url, "/desk/?") {
		b.t.Fatalf("sign in: %d at %s: %.300s", a.status, a.url, a.body)
	}
	return a
}

func wantStatus(t *testing.T, a answer, status int, what string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: %d at %s, want %d: %.500s", what, a.status, a.url, status, a.body)
	}
}

func TestSignIn_SetsAPasswordOnceThenSignsInWithAStrictCookieAndSignsOut(t *testing.T) {
	t.Parallel()
	w := start(t)
	b := w.browser(t)
	// Anything but sign-in and setup sends a stranger to sign in, and back.
	a := b.get("/desk/visit")
	if !strings.HasPrefix(a.url, "/desk/sign-in?") || !strings.Contains(a.body, `name="next" value="/desk/visit"`) {
		t.Fatalf("a stranger at /desk/visit got %s: %.300s", a.url, a.body)
	}
	// Setting a password: too short, then two different, then right.
	page := b.get("/desk/setup?code=" + url.QueryEscape(w.code))
	if !strings.Contains(page.body, "rui.lopes") {
		t.Errorf("the setup page does not name the account: %.500s", page.body)
	}
	short := b.post("/desk/setup", page, url.Values{"code": {w.code}, "password": {"short"}, "password-again": {"short"}})
	wantStatus(t, short, http.StatusUnprocessableEntity, "a short password")
	if !strings.Contains(short.body, `href="#password"`) || !strings.Contains(short.body, "12") {
		t.Errorf("a short password's error does not link to the field and say the length: %.800s", short.body)
	}
	differ := b.post("/desk/setup", page, url.Values{"code": {w.code}, "password": {"correct horse battery"}, "password-again": {"correct horse batter"}})
	wantStatus(t, differ, http.StatusUnprocessableEntity, "two different passwords")
	wantStatus(t, b.post("/desk/setup", page, url.Values{"code": {w.code}, "password": {"correct horse battery"}, "password-again": {"correct horse battery"}}),
		http.StatusOK, "a good password")
	again := b.post("/desk/setup", page, url.Values{"code": {w.code}, "password": {"another good password"}, "password-again": {"another good password"}})
	wantStatus(t, again, http.StatusUnprocessableEntity, "the setup code used twice")

	page = b.get("/desk/sign-in")
	wrong := b.post("/desk/sign-in", page, url.Values{"username": {"rui.lopes"}, "password": {"another good password"}})
	wantStatus(t, wrong, http.StatusUnauthorized, "the password of the second setup")
	req, _ := http.NewRequest(http.MethodPost, w.srv.URL+"/desk/sign-in", strings.NewReader(url.Values{
		"username": {"Rui.Lopes "}, "password": {"correct horse battery"}, "csrf": {csrfOf(page.body)}, "next": {"/desk/citizen"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	client := &http.Client{Jar: b.client.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/desk/citizen" {
		t.Fatalf("sign-in answered %d to %q, want 303 to where the mediator was going", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "spotflow_desk" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/desk/" || len(cookie.Value) < 40 {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/desk/, a long random value", cookie)
	}
	home := b.get("/desk/")
	wantStatus(t, home, http.StatusOK, "home once signed in")
	if !strings.Contains(home.body, `lang="pt"`) || !strings.Contains(home.body, "Rui Lopes") {
		t.Errorf("home is not in the mediator's language or does not name them: %.400s", home.body)
	}
	csp := home.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy %q is not strict", csp)
	}
	out := b.post("/desk/sign-out", home, url.Values{})
	if !strings.HasPrefix(out.url, "/desk/sign-in") {
		t.Fatalf("sign-out led to %s", out.url)
	}
	// The old cookie is worth nothing now.
	stale := &http.Client{}
	req, _ = http.NewRequest(http.MethodGet, w.srv.URL+"/desk/", nil)
	req.AddCookie(cookie)
	resp, err = stale.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/desk/sign-in" {
		t.Errorf("the signed-out session's cookie still opened %s", resp.Request.URL.Path)
	}
	entries, err := w.Store.AuditEntries(t.Context(), events.AuditQuery{Target: "mediator:rui.lopes"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range slices.Backward(entries) {
		actions = append(actions, string(e.Action))
	}
	want := []string{"mediator_created", "mediator_password_set", "mediator_sign_in_failed", "mediator_signed_in", "mediator_signed_out"}
	if !slices.Equal(actions, want) {
		t.Errorf("audit log %q, want %q", actions, want)
	}
}

func TestSignIn_SlowsDownThenLocksAfterFailuresAndRefusesAThrottledAddress(t *testing.T) {
	t.Parallel()
	w := start(t, func(c *deskapp.Config) { c.LockAfter = 3; c.FailedAuth = ratelimit.New(5.0/60, 5) })
	b := w.browser(t)
	b.signIn("correct horse battery")
	other := w.browser(t)
	page := other.get("/desk/sign-in")
	began := time.Now()
	for i := range 3 {
		a := other.post("/desk/sign-in", page, url.Values{"username": {"rui.lopes"}, "password": {"wrong " + string(rune('a'+i))}})
		wantStatus(t, a, http.StatusUnauthorized, "a wrong password")
		if i == 2 && !strings.Contains(a.body, "15") {
			t.Errorf("the third failure does not say the account is locked for 15 minutes: %.600s", a.body)
		}
	}
	// ¼ s, ½ s and 1 s of pause at least.
	if d := time.Since(began); d < 1750*time.Millisecond {
		t.Errorf("three failures answered in %v: they do not slow down", d)
	}
	locked := other.post("/desk/sign-in", page, url.Values{"username": {"rui.lopes"}, "password": {"correct horse battery"}})
	wantStatus(t, locked, http.StatusUnauthorized, "the right password on a locked account")
	// An unknown username fails like a wrong password, and counts against
	// the address: the fifth failure from it leaves it throttled.
	unknown := other.post("/desk/sign-in", page, url.Values{"username": {"nobody"}, "password": {"x"}})
	wantStatus(t, unknown, http.StatusUnauthorized, "an unknown username")
	other.post("/desk/sign-in", page, url.Values{"username": {"nobody"}, "password": {"y"}})
	throttled := other.post("/desk/sign-in", page, url.Values{"username": {"nobody"}, "password": {"z"}})
	wantStatus(t, throttled, http.StatusTooManyRequests, "an address over its failures")
	if throttled.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

func TestForms_RefuseAPostWithoutTheSessionsTokenOrFromAnotherOrigin(t *testing.T) {
	t.Parallel()
	w := start(t)
	b := w.browser(t)
	home := b.signIn("correct horse battery")
	visit := url.Values{"national_id": {"12345678"}, "name": {"Maria da Silva"}, "language": {"pt"}}
	wantStatus(t, b.post("/desk/visit", home, url.Values{"csrf": {""}, "national_id": {"12345678"}, "name": {"M"}}), http.StatusForbidden, "no token")
	wantStatus(t, b.post("/desk/visit", home, url.Values{"csrf": {"forged"}, "national_id": {"12345678"}, "name": {"M"}}), http.StatusForbidden, "a forged token")
	b.origin = "https://evil.example"
	wantStatus(t, b.post("/desk/visit", home, visit), http.StatusForbidden, "another origin")
	b.origin, b.site = "null", "cross-site"
	wantStatus(t, b.post("/desk/visit", home, visit), http.StatusForbidden, "a hidden origin, from another site")
	// Chromium hides the origin of a form posted under some referrer
	// policies, and says where it came from in Sec-Fetch-Site.
	b.site = "same-origin"
	if a := b.post("/desk/visit", home, visit); a.status != http.StatusOK {
		t.Errorf("a hidden origin, from this site: %d", a.status)
	}
	b.origin, b.site = w.srv.URL, "same-origin"
	a := b.post("/desk/visit", home, visit)
	if a.status != http.StatusOK || !strings.HasPrefix(a.url, "/desk/visit/consent") {
		t.Fatalf("a good form from the same origin: %d at %s", a.status, a.url)
	}
	// The sign-in form is guarded too, before there is a session.
	fresh := w.browser(t)
	page := fresh.get("/desk/sign-in")
	wantStatus(t, fresh.post("/desk/sign-in", page, url.Values{"csrf": {"x"}, "username": {"rui.lopes"}, "password": {"correct horse battery"}}),
		http.StatusForbidden, "sign-in with a wrong form token")
}

func TestSessions_EndAfterIdling(t *testing.T) {
	t.Parallel()
	w := start(t, func(c *deskapp.Config) { c.SessionIdle = 300 * time.Millisecond })
	b := w.browser(t)
	b.signIn("correct horse battery")
	wantStatus(t, b.get("/desk/settings"), http.StatusOK, "settings right after sign-in")
	time.Sleep(time.Second)
	if a := b.get("/desk/settings"); !strings.HasPrefix(a.url, "/desk/sign-in") {
		t.Errorf("after idling past the limit, /desk/settings opened %s", a.url)
	}
}

// visitWith signs in, starts a visit of a citizen who reads lang and
// records their consent.
func visitWith(t *testing.T, b *browser, lang string) answer {
	t.Helper()
	home := b.signIn("correct horse battery")
	page := b.post("/desk/visit", home, url.Values{"national_id": {"12345678"}, "name": {"Μαρία Παπαδοπούλου"}, "language": {lang}})
	wantStatus(t, page, http.StatusOK, "start a visit")
	if !strings.Contains(page.body, `<blockquote class="consent" lang="`+lang+`"`) {
		t.Fatalf("the consent is not shown in the citizen's language %s: %.1500s", lang, page.body)
	}
	refused := b.post("/desk/visit/consent", page, url.Values{"version": {"2026-12-01"}, "language": {lang}})
	wantStatus(t, refused, http.StatusUnprocessableEntity, "consent not ticked")
	consent := b.post("/desk/visit/consent", page, url.Values{"consent": {"yes"}, "version": {"2026-12-01"}, "language": {lang}})
	wantStatus(t, consent, http.StatusOK, "consent")
	return consent
}

var controlOf = regexp.MustCompile(`<(input|textarea|select)[^>]*\bid="(attr-[a-z_]+)(?:-0)?"[^>]*>`)

func TestForm_MakesTheFittingControlOfEveryDatatypeAndShowsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	w := start(t)
	b := w.browser(t)
	page := visitWith(t, b, "pt")
	// Between them, these three services ask for every datatype.
	covered := map[events.Datatype]bool{}
	var form answer
	var svc *events.Service
	for i, code := range []string{"vehicle-ownership-registration", "income-tax-return", "health-appointment"} {
		form = b.post("/desk/visit/services", page, url.Values{"service": {code}})
		wantStatus(t, form, http.StatusOK, "add "+code)
		if !strings.HasSuffix(strings.TrimSuffix(form.url, "?"), "/desk/visit/services/"+strconv.Itoa(i+1)) {
			t.Fatalf("adding %s led to %s", code, form.url)
		}
		controls := map[string]string{}
		for _, m := range controlOf.FindAllStringSubmatch(form.body, -1) {
			if _, seen := controls[m[2]]; !seen {
				controls[m[2]] = m[0]
			}
		}
		svc, _ = w.Catalog.Current().Service(code)
		for _, a := range svc.Attributes {
			covered[a.Datatype] = true
			c := controls["attr-"+a.Code]
			var want string
			switch a.Datatype {
			case events.DatatypeNumber:
				want = `inputmode="decimal"`
			case events.DatatypeDatetime:
				want = `type="date"`
			case events.DatatypeSingleValueList:
				want = `type="radio"`
				if len(a.Values) > 6 {
					want = "<select"
				}
			case events.DatatypeMultiValueList:
				want = `type="checkbox"`
			case events.DatatypeText:
				want = "<textarea"
			default:
				want = `type="text"`
			}
			if !strings.Contains(c, want) {
				t.Errorf("%s: attribute %s (%s) has control %q, want %s", code, a.Code, a.Datatype, c, want)
			}
		}
	}
	if len(covered) != 6 {
		t.Errorf("the forms covered the datatypes %v, not all six", covered)
	}
	action := "/desk/visit/services/3"
	// Posting it empty lists every required field and document at once,
	// each linked.
	empty := b.post(action, form, url.Values{})
	wantStatus(t, empty, http.StatusUnprocessableEntity, "an empty form")
	summary := empty.body[strings.Index(empty.body, "error-summary"):]
	summary = summary[:strings.Index(summary, "</div>")]
	links := regexp.MustCompile(`href="#([a-z0-9_-]+)"`).FindAllStringSubmatch(summary, -1)
	var required int
	for _, a := range svc.Attributes {
		if a.Required {
			required++
		}
	}
	if len(links) != required+len(svc.Documents) {
		t.Errorf("the summary links %d problems, want %d required fields and %d documents: %s", len(links), required, len(svc.Documents), summary)
	}
	for _, l := range links {
		if !strings.Contains(empty.body, `id="`+l[1]+`"`) {
			t.Errorf("the summary links to #%s, which is no element of the page", l[1])
		}
	}
}

func TestVisit_SubmitsTwoServicesOnceEachWithTheMediatorAndConsent(t *testing.T) {
	t.Parallel()
	w := start(t)
	b := w.browser(t)
	page := visitWith(t, b, "el")
	record := b.post("/desk/visit/services", page, url.Values{"service": {"criminal-record-certificate"}})
	wantStatus(t, record, http.StatusOK, "add a certificate")
	check := b.post("/desk/visit/services/1", record, url.Values{"attr.purpose": {"employment"}, "attr.copies": {"2"}, "document": {"citizen-card"}})
	if check.status != http.StatusOK || !strings.HasSuffix(strings.TrimSuffix(check.url, "?"), "/check") {
		t.Fatalf("a filled form led to %d %s: %.1500s", check.status, check.url, check.body)
	}
	// Submitting twice, as a double click does, makes one request.
	first := b.post("/desk/visit/services/1/submit", check, url.Values{})
	second := b.post("/desk/visit/services/1/submit", check, url.Values{})
	wantStatus(t, first, http.StatusOK, "submit")
	id := regexp.MustCompile(`class="ref">([0-9a-f-]{36})<`).FindStringSubmatch(first.body)
	if id == nil || !strings.Contains(second.body, id[1]) {
		t.Fatalf("the confirmation does not show the reference, or the second press another: %.1500s", first.body)
	}
	// A change of address in the same visit: a number with a decimal
	// comma is not asked for, but a date with a time is.
	visit := b.get("/desk/visit")
	address := b.post("/desk/visit/services", visit, url.Values{"service": {"change-of-address"}})
	wantStatus(t, address, http.StatusOK, "add a change of address")
	checked := b.post("/desk/visit/services/2", address, url.Values{"attr.street": {" Rua Augusta 1 "}, "attr.postal_code": {"1100-048"},
		"attr.locality": {"Lisboa"}, "attr.effective_date": {"2027-01-15"}, "attr.effective_date.time": {"09:30"},
		"document": {"citizen-card", "proof-of-address"}})
	wantStatus(t, checked, http.StatusOK, "a filled change of address")
	for _, shown := range []string{"Rua Augusta 1", "1100-048", "2027-01-15 09:30", `href="/desk/visit/services/2#attr-street"`} {
		if !strings.Contains(checked.body, shown) {
			t.Errorf("the check page does not show %q", shown)
		}
	}
	wantStatus(t, b.post("/desk/visit/services/2/submit", checked, url.Values{}), http.StatusOK, "submit the change of address")
	visit = b.get("/desk/visit")
	if n := strings.Count(visit.body, `href="/desk/requests/`); n != 2 {
		t.Errorf("the visit's task list links %d requests, want both", n)
	}

	msgs := natstest.Messages(t, w.JS, events.EventsStream)
	var reqs []events.Request
	for _, m := range msgs {
		var r events.Request
		if json.Unmarshal(m.Data, &r) == nil && r.Schema == events.SchemaRequest {
			reqs = append(reqs, r)
		}
	}
	if len(reqs) != 2 {
		t.Fatalf("%d requests published, want 2", len(reqs))
	}
	if a := reqs[1]; a.VisitID != reqs[0].VisitID || string(a.Attributes["street"]) != `"Rua Augusta 1"` ||
		string(a.Attributes["effective_date"]) != `"2027-01-15T09:30:00"` {
		t.Errorf("change of address published %+v", a)
	}
	r := reqs[0]
	if r.ID != id[1] || r.Mediator != "rui.lopes" || r.Consent == nil || r.Consent.Version != "2026-12-01" || r.Consent.Language != "el" ||
		r.VisitID == "" || r.Citizen.NationalID != "12345678" || string(r.Attributes["copies"]) != "2" {
		t.Errorf("published %+v", r)
	}
}

// found lists the services a search page shows, by their heading ids.
func found(a answer) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<h2 id="svc-([a-z0-9-]+)">`).FindAllStringSubmatch(a.body, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestServices_FoundByWordsInAnyLanguageWithoutAccentsByKeywordAndByGroup(t *testing.T) {
	t.Parallel()
	w := start(t)
	b := w.browser(t)
	b.signIn("correct horse battery")
	for _, tc := range []struct {
		query string
		first string // the best match
		want  []string
	}{
		{"q=conducao", "", []string{"driving-licence-renewal", "driving-licence-replacement", "international-driving-permit"}}, // Portuguese without accents
		{"q=Αδεια+οδηγησης", "", []string{"driving-licence-renewal", "international-driving-permit"}},                          // Greek, capital, no accents
		{"q=permis+conduire", "", []string{"driving-licence-renewal"}},                                                         // French
		{"q=morada", "change-of-address", nil},                                                                                 // Portuguese name
		{"q=address", "change-of-address", nil},                                                                                // English name
		{"q=IRS", "income-tax-return", nil},                                                                                    // a keyword
		{"group=justice", "", []string{"criminal-record-certificate"}},
	} {
		got := found(b.get("/desk/services?" + tc.query))
		if len(got) == 0 {
			t.Errorf("%s found nothing", tc.query)
			continue
		}
		if tc.first != "" && got[0] != tc.first {
			t.Errorf("%s found %v first, want %s", tc.query, got, tc.first)
		}
		for _, want := range tc.want {
			if !slices.Contains(got, want) {
				t.Errorf("%s found %v, without %s", tc.query, got, want)
			}
		}
	}
	if got := found(b.get("/desk/services?q=xyzzy")); len(got) != 0 {
		t.Errorf("a word of no service found %v", got)
	}
	if all := found(b.get("/desk/services")); len(all) != len(w.Catalog.Current().Services) {
		t.Errorf("with no search the page lists %d services, want the %d of the catalogue", len(all), len(w.Catalog.Current().Services))
	}
	// The part the script asks for as the mediator types.
	part := b.get("/desk/services?q=morada&partial=results")
	if strings.Contains(part.body, "<html") || !slices.Contains(found(part), "change-of-address") {
		t.Errorf("the results part is a whole page or lacks the service: %.300s", part.body)
	}
}

// withService adds to the built-in catalogue a service of its own, with
// the attributes given, in every language of the catalogue.
func withService(t *testing.T, attrs ...map[string]any) []byte {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(schemas.Catalog, &c); err != nil {
		t.Fatal(err)
	}
	every := func(s string) map[string]string {
		out := map[string]string{}
		for _, l := range c["languages"].([]any) {
			out[l.(string)] = s + " (" + l.(string) + ")"
		}
		return out
	}
	var list []any
	for i, a := range attrs {
		a["order"], a["description"] = i+1, every(a["code"].(string))
		list = append(list, a)
	}
	c["services"] = append(c["services"].([]any), map[string]any{
		"code": "library-card", "group": "civil-registry", "keywords": []string{"library"},
		"name": every("Library card"), "description": every("A card of the municipal library."),
		"agencies": []string{"civil-registry"}, "attributes": list, "documents": []string{"citizen-card"},
		"sla_hours": 24, "training": true,
	})
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCatalogueChanges_AppearWithoutCodeChanges(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "services.json")
	if err := os.WriteFile(path, withService(t, map[string]any{"code": "branch", "datatype": "string", "required": true}), 0o644); err != nil {
		t.Fatal(err)
	}
	catalog, err := workers.NewCatalogFile(workers.CatalogFileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	w := start(t, func(c *deskapp.Config) { c.Catalog = catalog })
	b := w.browser(t)
	page := visitWith(t, b, "pt")
	if got := found(b.get("/desk/services?q=library")); !slices.Equal(got, []string{"library-card"}) {
		t.Fatalf("a new service is not found: %v", got)
	}
	form := b.post("/desk/visit/services", page, url.Values{"service": {"library-card"}})
	if !strings.Contains(form.body, `id="attr-branch"`) || strings.Contains(form.body, `id="attr-reading_rooms"`) {
		t.Fatalf("the new service's form: %.1500s", form.body)
	}
	// A new attribute, a list, once the file changes.
	if err := os.WriteFile(path, withService(t, map[string]any{"code": "branch", "datatype": "string", "required": true},
		map[string]any{"code": "reading_rooms", "datatype": "multivaluelist", "required": false, "values": []map[string]any{
			{"key": "children", "name": map[string]string{"pt": "Infantil", "en": "Children", "es": "Infantil", "fr": "Enfants", "it": "Bambini", "el": "Παιδικό"}},
			{"key": "adults", "name": map[string]string{"pt": "Adultos", "en": "Adults", "es": "Adultos", "fr": "Adultes", "it": "Adulti", "el": "Ενήλικες"}},
		}}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := catalog.Reload(); err != nil {
		t.Fatal(err)
	}
	form = b.get("/desk/visit/services/1")
	if !strings.Contains(form.body, `id="attr-reading_rooms-0" name="attr.reading_rooms" value="children"`) || !strings.Contains(form.body, "Infantil") {
		t.Errorf("the new attribute is not in the form, as checkboxes in Portuguese: %.2500s", form.body)
	}
}

func TestReceipt_IsSignedPrintedInTheCitizensLanguageAndCheckedByItsQRLink(t *testing.T) {
	t.Parallel()
	w := start(t)
	b := w.browser(t)
	page := visitWith(t, b, "el")
	record := b.post("/desk/visit/services", page, url.Values{"service": {"criminal-record-certificate"}})
	check := b.post("/desk/visit/services/1", record, url.Values{"attr.purpose": {"employment"}, "document": {"citizen-card"}})
	done := b.post("/desk/visit/services/1/submit", check, url.Values{})
	wantStatus(t, done, http.StatusOK, "submit")
	id := regexp.MustCompile(`class="ref">([0-9a-f-]{36})<`).FindStringSubmatch(done.body)[1]

	printed := b.get("/desk/visit/receipt")
	wantStatus(t, printed, http.StatusOK, "the receipt")
	for _, want := range []string{`lang="el"`, "Αποδεικτικό της εξυπηρέτησής σας", id, `<svg class="qr"`, "Απόσπασμα ποινικού μητρώου"} {
		if !strings.Contains(printed.body, want) {
			t.Errorf("the printed receipt lacks %q", want)
		}
	}
	file := b.get("/desk/visit/receipt.json")
	signed, err := receipts.Parse([]byte(file.body))
	if err != nil {
		t.Fatalf("receipt.json: %v: %s", err, file.body)
	}
	for _, personal := range []string{"12345678", "Μαρία", "employment"} {
		if strings.Contains(file.body, personal) || strings.Contains(printed.body, personal) {
			t.Errorf("the receipt holds %q", personal)
		}
	}
	keys, err := receipts.ParsePublished([]byte(b.get("/receipts/keys.json").body))
	if err != nil {
		t.Fatal(err)
	}
	if err := receipts.Verify(signed, keys); err != nil {
		t.Fatalf("the receipt does not verify with the published keys: %v", err)
	}
	r := signed.Receipt
	if r.Mediator != "rui.lopes" || r.Language != "el" || r.ConsentVersion != "2026-12-01" || len(r.Requests) != 1 || r.Requests[0].ID != id ||
		!slices.Equal(r.Requests[0].Agencies, []string{"justice"}) || r.Requests[0].ExpectedBy.Sub(r.Requests[0].SubmittedAt) != 24*time.Hour {
		t.Errorf("receipt %+v", r)
	}
	// The QR code's link: anyone, signed in or not, sees it valid, with
	// the request's status, in the citizen's language.
	link := html.UnescapeString(regexp.MustCompile(`href="https?://[^/]+(/receipts/verify\?r=[^"]+)"`).FindStringSubmatch(printed.body)[1])
	anyone := w.browser(t)
	valid := anyone.get(link)
	wantStatus(t, valid, http.StatusOK, "the verification page")
	if !strings.Contains(valid.body, "Το αποδεικτικό είναι έγκυρο.") || !strings.Contains(valid.body, id) || !strings.Contains(valid.body, "Υποβλήθηκε") {
		t.Errorf("the verification page of a good receipt: %.2000s", valid.body)
	}
	// One character changed: not valid.
	forged := signed
	forged.Receipt.Requests[0].ExpectedBy = forged.Receipt.Requests[0].ExpectedBy.Add(-24 * time.Hour)
	compact, _ := receipts.Compact(forged)
	if bad := anyone.get("/receipts/verify?r=" + compact); !strings.Contains(bad.body, "Το αποδεικτικό δεν είναι έγκυρο.") {
		t.Errorf("a changed receipt was not refused: %.1500s", bad.body)
	}
	if junk := anyone.get("/receipts/verify?r=not-a-receipt&lang=pt"); !strings.Contains(junk.body, "Este comprovativo não é válido.") {
		t.Errorf("a junk receipt: %.800s", junk.body)
	}
}

// screenEvents reads the citizen's screen's stream of steps, as the
// browser's EventSource does, sending what arrives on the channel.
func screenEvents(t *testing.T, b *browser) <-chan string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, b.w.srv.URL+"/desk/screen/events", nil)
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("the screen's stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	steps := make(chan string, 16)
	go func() {
		defer resp.Body.Close()
		defer close(steps)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var step struct{ Lang, HTML string }
				if json.Unmarshal([]byte(data), &step) == nil {
					steps <- step.Lang + " " + step.HTML
				}
			}
		}
	}()
	return steps
}

// nextStep waits for the screen's next step that holds want.
func nextStep(t *testing.T, steps <-chan string, want string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s, ok := <-steps:
			if !ok {
				t.Fatalf("the screen's stream ended before showing %q", want)
			}
			if strings.Contains(s, want) {
				return s
			}
		case <-deadline:
			t.Fatalf("the screen did not show %q within 10 s", want)
		}
	}
}

func TestScreen_PairedWithACodeFollowsTheMediatorsStepsInTheCitizensLanguageUntilTheVisitEnds(t *testing.T) {
	t.Parallel()
	w := start(t)
	b := w.browser(t)
	page := visitWith(t, b, "el") // the mediator works in Portuguese
	paired := b.post("/desk/visit/pair", page, url.Values{})
	wantStatus(t, paired, http.StatusOK, "pair")
	code := regexp.MustCompile(`class="code"[^>]*>(\d{6})<`).FindStringSubmatch(paired.body)
	if code == nil {
		t.Fatalf("no six-digit code on the page: %.1500s", paired.body)
	}

	screen := w.browser(t)
	form := screen.get("/desk/screen")
	wantStatus(t, screen.post("/desk/screen", form, url.Values{"code": {"000000"}}), http.StatusUnprocessableEntity, "a wrong code")
	live := screen.post("/desk/screen", form, url.Values{"code": {code[1]}})
	wantStatus(t, live, http.StatusOK, "the right code")
	if !strings.HasPrefix(live.url, "/desk/screen/live") || !strings.Contains(live.body, `lang="el"`) || !strings.Contains(live.body, "•••••678") {
		t.Fatalf("the paired screen: %s %.1500s", live.url, live.body)
	}
	if strings.Contains(live.body, "12345678") {
		t.Error("the screen shows the national ID in full")
	}
	// The code works once.
	again := w.browser(t)
	if a := again.post("/desk/screen", again.get("/desk/screen"), url.Values{"code": {code[1]}}); a.status != http.StatusUnprocessableEntity {
		t.Errorf("the code used a second time: %d", a.status)
	}
	// The screen is no mediator: it cannot open the desk's pages.
	if a := screen.get("/desk/"); !strings.HasPrefix(a.url, "/desk/sign-in") {
		t.Errorf("the citizen's screen opened %s", a.url)
	}

	steps := screenEvents(t, screen)
	nextStep(t, steps, "el ")
	b.get("/desk/services")
	nextStep(t, steps, "Καλώς ήρθατε")
	form2 := b.post("/desk/visit/services", page, url.Values{"service": {"change-of-address"}})
	nextStep(t, steps, "Αλλαγή διεύθυνσης")
	// The answers as the mediator types them (the script's drafts).
	if a := b.post("/desk/visit/services/1/draft", form2, url.Values{"attr.street": {"Οδός Ερμού 25"}, "document": {"citizen-card"}}); a.status != http.StatusNoContent {
		t.Fatalf("a draft: %d", a.status)
	}
	nextStep(t, steps, "Οδός Ερμού 25")
	check := b.post("/desk/visit/services/1", form2, url.Values{"attr.street": {"Οδός Ερμού 25"}, "attr.postal_code": {"105 63"}, "attr.locality": {"Αθήνα"},
		"document": {"citizen-card", "proof-of-address"}})
	nextStep(t, steps, "Ελέγξτε τις απαντήσεις σας")
	b.post("/desk/visit/services/1/submit", check, url.Values{})
	nextStep(t, steps, "Το αίτημα υποβλήθηκε")
	b.post("/desk/visit/end", b.get("/desk/visit"), url.Values{})
	nextStep(t, steps, "Ευχαριστούμε")
	select {
	case _, ok := <-steps:
		if ok {
			t.Error("the stream went on after the visit ended")
		}
	case <-time.After(10 * time.Second):
		t.Error("the stream stayed open after the visit ended")
	}
	if a := screen.get("/desk/screen/live"); !strings.HasPrefix(a.url, "/desk/screen") || strings.Contains(a.body, "Αλλαγή διεύθυνσης") {
		t.Errorf("after the visit the screen still shows it: %s", a.url)
	}
}

func TestCitizen_CheckedAsTheAPIChecksItWhenAVisitStartsAndWhenLookedUp(t *testing.T) {
	t.Parallel()
	w := start(t)
	b := w.browser(t)
	home := b.signIn("correct horse battery")
	for _, tc := range []struct {
		id, name string
		want     []string
	}{
		{"12", "Maria", []string{"#national-id"}},
		{"1234 5678", "", []string{"#national-id", "#citizen-name"}},
		{"12345678", "Maria\u202eevil", []string{"#citizen-name"}},
	} {
		a := b.post("/desk/visit", home, url.Values{"national_id": {tc.id}, "name": {tc.name}, "language": {"pt"}})
		wantStatus(t, a, http.StatusUnprocessableEntity, "a visit of "+tc.id)
		for _, link := range tc.want {
			if !strings.Contains(a.body, `href="`+link+`"`) {
				t.Errorf("national ID %q, name %q: the summary does not link %s", tc.id, tc.name, link)
			}
		}
	}
	if v, err := w.Store.OpenVisit(t.Context(), "rui.lopes"); err == nil {
		t.Errorf("a refused citizen started visit %s", v.ID)
	}
	page := b.get("/desk/citizen")
	a := b.post("/desk/citizen", page, url.Values{"national_id": {"12"}, "reason": {"asked"}})
	wantStatus(t, a, http.StatusUnprocessableEntity, "a look-up of a malformed ID")
	if !strings.Contains(a.body, `href="#national-id"`) {
		t.Errorf("the look-up's refusal does not link the field: %.800s", a.body)
	}
	for _, id := range []string{"%00", "%FF", "no-such-request"} {
		if a := b.get("/desk/requests/" + id); a.status != http.StatusNotFound {
			t.Errorf("the page of request %s: %d, want 404", id, a.status)
		}
	}
}
