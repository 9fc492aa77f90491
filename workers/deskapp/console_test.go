package deskapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp/totp"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/deskapp"
	"github.com/spotflow/spotflow/workers/intaketest"
	"github.com/spotflow/spotflow/workers/postgres"
)

// The operator's console, driven over HTTP as an operator's browser drives
// it, over the real store, JetStream and replayer.

// consolePeople is the store with agencies' credentials made as the
// spotflow command makes them: tokens by the store, nkeys here.
type consolePeople struct {
	*postgres.Store
}

// IssueAgencyCredential makes agency a token or an nkey, as the spotflow
// command does.
func (p consolePeople) IssueAgencyCredential(ctx context.Context, agency string, token bool, by events.By) (string, string, error) {
	if token {
		return p.AddAgencyToken(ctx, agency, by.Actor)
	}
	seed, err := natsbus.NewSeed()
	if err != nil {
		return "", "", err
	}
	key, err := seed.PublicKey()
	if err != nil {
		return "", "", err
	}
	if err := p.AddAgencyCredential(ctx, agency, key, by.Actor); err != nil {
		return "", "", err
	}
	return string(seed), key, nil
}

// startConsole is start with the operator's console, over the intake's
// store and JetStream.
func startConsole(t *testing.T, edit ...func(*deskapp.Config)) *world {
	t.Helper()
	d := intaketest.Start(t, nil)
	console := func(c *deskapp.Config) {
		c.Console = deskapp.ConsoleConfig{
			Accounts: d.Store, Work: d.Store, Replayer: workers.NewReplayer(d.Store, d.JS),
			People: consolePeople{d.Store}, Audit: d.Store,
			VerifyAudit: func(ctx context.Context) (events.AuditChainState, error) { return d.Store.VerifyAudit(ctx) },
			ExportAudit: func(ctx context.Context, w io.Writer, from, to time.Time) error {
				links, err := d.Store.AuditLinks(ctx, from, to, 10000)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(w)
				for _, l := range links {
					if err := enc.Encode(l); err != nil {
						return err
					}
				}
				return nil
			},
			Health: func(ctx context.Context) events.Health { return workers.ReadHealth(ctx, d.JS, d.Store, nil) },
		}
	}
	return startOn(t, d, append([]func(*deskapp.Config){console}, edit...)...)
}

// opsPassword is every operator's password in these tests.
const opsPassword = "a long operator passphrase"

// newOperator creates an operator of role, speaking English, and returns
// their setup code.
func (w *world) newOperator(t *testing.T, username string, role events.OperatorRole) string {
	t.Helper()
	setup, err := w.Store.CreateOperator(t.Context(), events.Operator{Username: username, Name: "Name of " + username, Role: role, Language: "en"},
		events.By{Actor: "operator:root"})
	if err != nil {
		t.Fatal(err)
	}
	return setup.Code
}

// opsSetup sets the password of whoever's setup code code is, as they do
// on the setup page.
func (b *browser) opsSetup(code, password string) answer {
	b.t.Helper()
	page := b.get("/desk/ops/setup?lang=en&code=" + url.QueryEscape(code))
	wantStatus(b.t, page, http.StatusOK, "the setup page")
	return b.post("/desk/ops/setup?lang=en", page, url.Values{"code": {code}, "password": {password}, "password-again": {password}})
}

// opsSignIn signs in on the console's sign-in page, to go to next.
func (b *browser) opsSignIn(username, password, next string) answer {
	b.t.Helper()
	page := b.get("/desk/ops/sign-in?lang=en")
	return b.post("/desk/ops/sign-in?lang=en", page, url.Values{"username": {username}, "password": {password}, "next": {next}})
}

// signedInOperator creates an operator of role who sets their password and
// signs in, in a browser of their own, landing on the console's first page.
func (w *world) signedInOperator(t *testing.T, username string, role events.OperatorRole) (*browser, answer) {
	t.Helper()
	b := w.browser(t)
	if a := b.opsSetup(w.newOperator(t, username, role), opsPassword); !strings.HasPrefix(a.url, "/desk/ops/sign-in?") {
		t.Fatalf("setting %s's password: %d at %s: %.500s", username, a.status, a.url, a.body)
	}
	home := b.opsSignIn(username, opsPassword, "/desk/ops/")
	if home.status != http.StatusOK || home.url != "/desk/ops/?" {
		t.Fatalf("%s signing in: %d at %s: %.500s", username, home.status, home.url, home.body)
	}
	return b, home
}

// auditActions are the actions of the audit entries q selects, oldest
// first.
func auditActions(t *testing.T, w *world, q events.AuditQuery) []string {
	t.Helper()
	entries, err := w.Store.AuditEntries(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range slices.Backward(entries) {
		actions = append(actions, string(e.Action))
	}
	return actions
}

// auditEntries are the entries of action, newest first.
func auditEntries(t *testing.T, w *world, action events.AuditAction) []events.AuditEntry {
	t.Helper()
	entries, err := w.Store.AuditEntries(t.Context(), events.AuditQuery{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

var shownSecret = regexp.MustCompile(`<strong class="ref">([^<]+)</strong>`)

// secretOf is the secret a page shows once: a setup code, a token, a seed.
func secretOf(t *testing.T, a answer) string {
	t.Helper()
	m := shownSecret.FindStringSubmatch(a.body)
	if m == nil {
		t.Fatalf("%s shows no secret: %.1500s", a.url, a.body)
	}
	return html.UnescapeString(m[1])
}

// stuckRequest projects a request of the world's desk whose work item for
// justice failed, records that work item as a dead letter refused by the
// agency, and returns the request, the work item and the dead letter's ID.
func stuckRequest(t *testing.T, w *world) (*events.Request, events.WorkItem, int64) {
	t.Helper()
	ctx := t.Context()
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	desk := w.Desk.Desk
	r := &events.Request{
		Schema: events.SchemaRequest, ID: events.NewID(at), DeskID: desk.ID, Municipality: desk.Municipality, Mediator: "rui.lopes",
		ServiceCode: "criminal-record-certificate", Citizen: events.Citizen{NationalID: "12345678", Name: "Maria Moreira"},
		Attributes: map[string]json.RawMessage{"purpose": json.RawMessage(`"employment"`)}, SubmittedAt: at,
	}
	changes := []events.Change{{Request: r}, {Event: &events.StatusEvent{
		Schema: events.SchemaStatus, ID: events.EventID(r.ID, "", events.StatusRouted), RequestID: r.ID,
		Status: events.StatusRouted, At: at, Actor: events.SourceRouter, Agencies: []string{"justice"},
	}}, {Event: &events.StatusEvent{
		Schema: events.SchemaStatus, ID: events.EventID(r.ID, "justice", events.StatusFailed), RequestID: r.ID, Agency: "justice",
		Status: events.StatusFailed, At: at.Add(time.Second), Actor: events.SourceDispatcher, Note: "refused by the agency",
	}}}
	for i, err := range w.Store.Project(ctx, changes) {
		if err != nil {
			t.Fatalf("project change %d: %v", i, err)
		}
	}
	item := r.WorkItemFor("justice")
	payload, err := json.Marshal(item)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Store.RecordDeadLetter(ctx, events.DeadLetter{
		Stream: events.WorkStream, StreamSeq: 7, Subject: events.WorkSubject("justice"), RequestID: r.ID, WorkItemID: item.ID,
		Agency: "justice", Reason: events.ReasonPermanent, LastError: "refused by the agency", Attempts: 5, Payload: payload,
	}); err != nil {
		t.Fatal(err)
	}
	dead, err := w.Store.ListDeadLetters(ctx, events.DeadLetterQuery{})
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters %+v, %v; want the one recorded", dead, err)
	}
	return r, item, dead[0].ID
}

// deadLetterNow reads dead letter id as the store has it now.
func deadLetterNow(t *testing.T, w *world, id int64) events.DeadLetter {
	t.Helper()
	list, err := w.Store.ListDeadLetters(t.Context(), events.DeadLetterQuery{ID: id, Limit: 1})
	if err != nil || len(list) != 1 {
		t.Fatalf("dead letter %d: %+v, %v", id, list, err)
	}
	return list[0]
}

func TestConsole_SendsAStrangerToSignInFromEveryPage(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	_, _, id := stuckRequest(t, w)
	letter := "/desk/ops/dead-letters/" + strconv.FormatInt(id, 10)
	b := w.browser(t)
	for _, path := range []string{"/desk/ops/", "/desk/ops/account", "/desk/ops/account/second-factor", "/desk/ops/stuck",
		"/desk/ops/agencies/justice/stuck", letter, "/desk/ops/replays", "/desk/ops/audit", "/desk/ops/audit/export",
		"/desk/ops/desks", "/desk/ops/mediators", "/desk/ops/agency-credentials", "/desk/ops/operators"} {
		a := b.get(path)
		if a.status != http.StatusOK || !strings.HasPrefix(a.url, "/desk/ops/sign-in?") || !strings.Contains(a.body, `name="next" value="`+path+`"`) {
			t.Errorf("a stranger at %s got %d at %s, want the sign-in page, coming back after: %.300s", path, a.status, a.url, a.body)
		}
	}
	// A form posted without a session does nothing either.
	for _, path := range []string{letter, "/desk/ops/replay", "/desk/ops/mediators", "/desk/ops/operators", "/desk/ops/desks",
		"/desk/ops/agency-credentials", "/desk/ops/account", "/desk/ops/account/second-factor", "/desk/ops/sign-out"} {
		a := b.post(path, answer{}, url.Values{"csrf": {"x"}, "action": {"create"}, "id": {strconv.FormatInt(id, 10)},
			"reason": {"a stranger's reason"}, "replay": {"all"}})
		if !strings.HasPrefix(a.url, "/desk/ops/sign-in?") {
			t.Errorf("a stranger's post to %s led to %d at %s, want the sign-in page", path, a.status, a.url)
		}
	}
	if d := deadLetterNow(t, w, id); d.Replays != 0 {
		t.Errorf("a stranger replayed the dead letter %d times", d.Replays)
	}
	if got := auditEntries(t, w, events.AuditDeadLetterViewed); len(got) != 0 {
		t.Errorf("a stranger opened the dead letter: %+v", got)
	}
}

func TestConsole_AnOperatorSetsTheirPasswordWithTheirCodeSignsInToTheHealthPageAndSignsOut(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	code := w.newOperator(t, "ana", events.RoleOperator)
	b := w.browser(t)
	page := b.get("/desk/ops/setup?lang=en&code=" + url.QueryEscape(code))
	if !strings.Contains(page.body, "ana") {
		t.Errorf("the setup page does not name the account: %.800s", page.body)
	}
	short := b.post("/desk/ops/setup?lang=en", page, url.Values{"code": {code}, "password": {"short"}, "password-again": {"short"}})
	wantStatus(t, short, http.StatusUnprocessableEntity, "a short password")
	if !strings.Contains(short.body, `href="#password"`) {
		t.Errorf("a short password's error does not link to its field: %.800s", short.body)
	}
	set := b.post("/desk/ops/setup?lang=en", page, url.Values{"code": {code}, "password": {opsPassword}, "password-again": {opsPassword}})
	if set.status != http.StatusOK || !strings.HasPrefix(set.url, "/desk/ops/sign-in?") || !strings.Contains(set.body, "Your password is set") {
		t.Fatalf("setting the password led to %d at %s: %.800s", set.status, set.url, set.body)
	}
	again := b.post("/desk/ops/setup?lang=en", page, url.Values{"code": {code}, "password": {"another long password"}, "password-again": {"another long password"}})
	wantStatus(t, again, http.StatusUnprocessableEntity, "the setup code used twice")

	wrong := b.opsSignIn("ana", "another long password", "/desk/ops/")
	wantStatus(t, wrong, http.StatusUnauthorized, "a wrong password")
	if !strings.Contains(wrong.body, "is not right") {
		t.Errorf("a wrong password's page does not say so: %.800s", wrong.body)
	}
	home := b.opsSignIn("Ana ", opsPassword, "/desk/ops/")
	wantStatus(t, home, http.StatusOK, "the right password")
	if home.url != "/desk/ops/?" || !strings.Contains(home.body, "<h1>Health</h1>") || !strings.Contains(home.body, events.WorkStream) {
		t.Fatalf("signing in landed at %s, want the health page with the streams: %.1500s", home.url, home.body)
	}
	if !strings.Contains(home.body, "Name of ana") || !strings.Contains(home.body, `action="/desk/ops/sign-out"`) {
		t.Errorf("the console does not name the operator or offer to sign out: %.1500s", home.body)
	}
	server, _ := url.Parse(w.srv.URL)
	var session *http.Cookie
	for _, c := range b.client.Jar.Cookies(server) {
		if c.Name == "spotflow_ops" {
			session = c
		}
	}
	if session == nil || len(session.Value) < 40 {
		t.Fatalf("no session cookie after signing in: %v", b.client.Jar.Cookies(server))
	}

	out := b.post("/desk/ops/sign-out", home, url.Values{})
	if !strings.HasPrefix(out.url, "/desk/ops/sign-in?") || !strings.Contains(out.body, "You have signed out") {
		t.Fatalf("signing out led to %s: %.800s", out.url, out.body)
	}
	if a := b.get("/desk/ops/"); !strings.HasPrefix(a.url, "/desk/ops/sign-in?") {
		t.Errorf("after signing out /desk/ops/ opened %s", a.url)
	}
	// The session is over, not only its cookie.
	req, _ := http.NewRequest(http.MethodGet, w.srv.URL+"/desk/ops/stuck", nil)
	req.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/desk/ops/sign-in" {
		t.Errorf("the signed-out session's cookie still opened %s", resp.Request.URL.Path)
	}

	got := auditActions(t, w, events.AuditQuery{Actor: "operator:ana"})
	want := []string{"operator_password_set", "operator_sign_in_failed", "operator_signed_in", "operator_signed_out"}
	if !slices.Equal(got, want) {
		t.Errorf("operator:ana's audit entries %q, want %q", got, want)
	}
}

func TestConsole_RefusesAFormWithAForgedTokenOrFromAnotherOrigin(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	w.newOperator(t, "ines", events.RoleOperator)
	fresh := w.browser(t)
	page := fresh.get("/desk/ops/sign-in?lang=en")
	refused := fresh.post("/desk/ops/sign-in", page, url.Values{"csrf": {"forged"}, "username": {"ines"}, "password": {opsPassword}})
	wantStatus(t, refused, http.StatusForbidden, "sign-in with a forged form token")
	// Before sign-in too, a refusal on the console's paths leads back to
	// the console, not to the mediators' desk.
	if !strings.Contains(refused.body, `href="/desk/ops/"`) || strings.Contains(refused.body, `<a href="/desk/">`) {
		t.Errorf("the refused sign-in does not lead back to the console: %.1500s", refused.body)
	}

	b, home := w.signedInOperator(t, "ana", events.RoleOperator)
	wantStatus(t, b.post("/desk/ops/account", home, url.Values{"csrf": {"forged"}, "language": {"pt"}}), http.StatusForbidden, "a forged token")
	wantStatus(t, b.post("/desk/ops/account", home, url.Values{"csrf": {""}, "language": {"pt"}}), http.StatusForbidden, "no token")
	b.origin = "https://evil.example"
	wantStatus(t, b.post("/desk/ops/account", home, url.Values{"language": {"pt"}}), http.StatusForbidden, "another origin")
	b.origin = ""
	if o, err := w.Store.OperatorForSignIn(t.Context(), "ana"); err != nil || o.Language != "en" {
		t.Fatalf("after refused forms ana's language is %q (%v), want en", o.Language, err)
	}
	// The session's own token, from the same origin, is taken.
	set := b.post("/desk/ops/account", home, url.Values{"language": {"pt"}})
	if set.status != http.StatusOK || !strings.HasPrefix(set.url, "/desk/ops/account?") || !strings.Contains(set.body, `lang="pt"`) {
		t.Errorf("the session's own form led to %d at %s: %.500s", set.status, set.url, set.body)
	}
}

func TestConsole_LocksAnOperatorOutAfterFailedSignIns(t *testing.T) {
	t.Parallel()
	w := startConsole(t, func(c *deskapp.Config) { c.LockAfter = 2 })
	b := w.browser(t)
	b.opsSetup(w.newOperator(t, "ana", events.RoleOperator), opsPassword)
	first := b.opsSignIn("ana", "not the password", "/desk/ops/")
	wantStatus(t, first, http.StatusUnauthorized, "a first wrong password")
	if strings.Contains(first.body, "locked") {
		t.Errorf("one failure locked the account: %.800s", first.body)
	}
	second := b.opsSignIn("ana", "still not the password", "/desk/ops/")
	wantStatus(t, second, http.StatusUnauthorized, "a second wrong password")
	if !strings.Contains(second.body, "This account is locked") {
		t.Errorf("the failure that locks the account does not say so: %.800s", second.body)
	}
	right := b.opsSignIn("ana", opsPassword, "/desk/ops/")
	wantStatus(t, right, http.StatusUnauthorized, "the right password on a locked account")
	if a := b.get("/desk/ops/"); !strings.HasPrefix(a.url, "/desk/ops/sign-in?") {
		t.Errorf("a locked account opened %s", a.url)
	}
	entries, err := w.Store.AuditEntries(t.Context(), events.AuditQuery{Actor: "operator:ana", Action: events.AuditOperatorSignInFailed})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 || entries[0].Detail["refused"] != "locked" || entries[1].Detail["locked"] != true {
		t.Errorf("failed sign-ins in the audit log: %+v; want two failures, the second locking, then a refusal", entries)
	}
}

// wrongCode is a six-digit code that is not right for secret around now.
func wrongCode(t *testing.T, secret string) string {
	t.Helper()
	right := map[string]bool{}
	for _, d := range []time.Duration{-time.Minute, -30 * time.Second, 0, 30 * time.Second, time.Minute} {
		c, err := totp.GenerateCode(secret, time.Now().Add(d))
		if err != nil {
			t.Fatal(err)
		}
		right[c] = true
	}
	for n := 0; ; n++ {
		if c := fmt.Sprintf("%06d", n); !right[c] {
			return c
		}
	}
}

var enrolSecret = regexp.MustCompile(`<code class="ref big">([A-Z2-7]+)</code>`)

func TestConsole_SecondFactorIsAskedForAfterThePasswordAndEachCodeWorksOnce(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	b, _ := w.signedInOperator(t, "ana", events.RoleOperator)
	enrol := b.get("/desk/ops/account/second-factor")
	m := enrolSecret.FindStringSubmatch(enrol.body)
	if m == nil || !strings.Contains(enrol.body, "<svg") {
		t.Fatalf("the enrolment page shows no secret or no QR code: %.2000s", enrol.body)
	}
	wrong := b.post("/desk/ops/account/second-factor", enrol, url.Values{"code": {wrongCode(t, m[1])}})
	wantStatus(t, wrong, http.StatusUnprocessableEntity, "a wrong code at enrolment")
	if !strings.Contains(wrong.body, `href="#code"`) {
		t.Errorf("a wrong code's error does not link to its field: %.1500s", wrong.body)
	}
	// The page shows a new secret each time: the one on it now counts.
	m = enrolSecret.FindStringSubmatch(wrong.body)
	if m == nil {
		t.Fatalf("the page refusing a code shows no secret: %.2000s", wrong.body)
	}
	secret := m[1]
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	on := b.post("/desk/ops/account/second-factor", wrong, url.Values{"code": {code}})
	if on.status != http.StatusOK || !strings.HasPrefix(on.url, "/desk/ops/account?second-factor-on=1") || !strings.Contains(on.body, "The second factor is on") {
		t.Fatalf("confirming the second factor led to %d at %s: %.1500s", on.status, on.url, on.body)
	}
	b.post("/desk/ops/sign-out", on, url.Values{})

	// The password is not enough now.
	asked := b.opsSignIn("ana", opsPassword, "/desk/ops/stuck")
	if asked.status != http.StatusOK || !strings.HasPrefix(asked.url, "/desk/ops/sign-in/code?") {
		t.Fatalf("the right password led to %d at %s, want the page asking for the code: %.800s", asked.status, asked.url, asked.body)
	}
	for _, path := range []string{"/desk/ops/stuck", "/desk/ops/", "/desk/ops/account/second-factor"} {
		if a := b.get(path); !strings.HasPrefix(a.url, "/desk/ops/sign-in?") {
			t.Errorf("waiting for the code, %s opened %s", path, a.url)
		}
	}
	if a := b.post("/desk/ops/account", asked, url.Values{"language": {"pt"}}); !strings.HasPrefix(a.url, "/desk/ops/sign-in?") {
		t.Errorf("waiting for the code, a form was taken: %d at %s", a.status, a.url)
	}
	refused := b.post("/desk/ops/sign-in/code", asked, url.Values{"code": {wrongCode(t, secret)}, "next": {"/desk/ops/stuck"}})
	wantStatus(t, refused, http.StatusUnauthorized, "a wrong code at sign-in")
	// The code of the next time step: the enrolment used this one.
	next, err := totp.GenerateCode(secret, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	in := b.post("/desk/ops/sign-in/code", asked, url.Values{"code": {next}, "next": {"/desk/ops/stuck"}})
	if in.status != http.StatusOK || !strings.HasPrefix(in.url, "/desk/ops/stuck") {
		t.Fatalf("the right code led to %d at %s: %.800s", in.status, in.url, in.body)
	}
	wantStatus(t, b.get("/desk/ops/audit"), http.StatusOK, "the console once the code was given")

	// Someone who saw the code cannot use it again.
	other := w.browser(t)
	again := other.opsSignIn("ana", opsPassword, "/desk/ops/")
	if !strings.HasPrefix(again.url, "/desk/ops/sign-in/code?") {
		t.Fatalf("the second sign-in led to %s, want the page asking for the code", again.url)
	}
	replayed := other.post("/desk/ops/sign-in/code", again, url.Values{"code": {next}, "next": {"/desk/ops/"}})
	wantStatus(t, replayed, http.StatusUnauthorized, "a code used already")
	if a := other.get("/desk/ops/"); !strings.HasPrefix(a.url, "/desk/ops/sign-in?") {
		t.Errorf("a replayed code opened %s", a.url)
	}

	var signedIn []any
	entries, err := w.Store.AuditEntries(t.Context(), events.AuditQuery{Actor: "operator:ana", Action: events.AuditOperatorSignedIn})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range slices.Backward(entries) {
		signedIn = append(signedIn, e.Detail["second_factor"])
	}
	if !slices.Equal(signedIn, []any{false, true}) {
		t.Errorf("ana's sign-ins with a second factor: %v, want one without then one with", signedIn)
	}
	if got := auditEntries(t, w, events.AuditOperatorSecondFactor); len(got) != 1 || got[0].Detail["second_factor"] != "on" {
		t.Errorf("second factor entries %+v, want it turned on once", got)
	}
}

func TestConsole_AViewerSeesStuckWorkButCannotOpenReplayOrChangeAnything(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	r, _, id := stuckRequest(t, w)
	letter := "/desk/ops/dead-letters/" + strconv.FormatInt(id, 10)
	b, home := w.signedInOperator(t, "vera", events.RoleViewer)
	stuck := b.get("/desk/ops/stuck")
	wantStatus(t, stuck, http.StatusOK, "the stuck work, to a viewer")
	if !strings.Contains(stuck.body, r.ID) || !strings.Contains(stuck.body, `href="`+letter+`"`) {
		t.Errorf("the viewer's stuck page does not list the dead letter: %.3000s", stuck.body)
	}
	if strings.Contains(stuck.body, `action="/desk/ops/replay"`) {
		t.Error("the viewer is offered to replay")
	}
	page := b.get(letter)
	wantStatus(t, page, http.StatusOK, "a dead letter's page, to a viewer")
	if !strings.Contains(page.body, r.ID) || strings.Contains(page.body, `name="reason"`) || strings.Contains(page.body, "Maria Moreira") {
		t.Errorf("the viewer's dead letter page: %.3000s", page.body)
	}

	deskID := w.Desk.Desk.ID
	for _, f := range []struct {
		path string
		form url.Values
	}{
		{letter, url.Values{"reason": {"I am curious"}}},
		{"/desk/ops/replay", url.Values{"id": {strconv.FormatInt(id, 10)}, "replay": {"selected"}, "reason": {"the agency is back"}}},
		{"/desk/ops/replay", url.Values{"replay": {"all"}, "reason": {"the agency is back"}}},
		{"/desk/ops/mediators", url.Values{"action": {"create"}, "desk": {deskID}, "username": {"eva"}, "name": {"Eva"}, "language": {"pt"}}},
		{"/desk/ops/mediators", url.Values{"action": {"disable"}, "desk": {deskID}, "username": {"rui.lopes"}}},
		{"/desk/ops/operators", url.Values{"action": {"create"}, "username": {"otto"}, "name": {"Otto"}, "language": {"en"}, "role": {"operator"}}},
		{"/desk/ops/operators", url.Values{"action": {"token-issue"}, "token-name": {"script"}, "role": {"operator"}}},
		{"/desk/ops/desks", url.Values{"action": {"create"}, "municipality": {"porto"}, "name": {"Porto"}}},
		{"/desk/ops/desks", url.Values{"action": {"issue"}, "desk": {deskID}}},
		{"/desk/ops/agency-credentials", url.Values{"action": {"issue"}, "agency": {"justice"}, "kind": {"token"}}},
	} {
		a := b.post(f.path, page, f.form)
		if a.status != http.StatusForbidden || strings.Contains(a.body, "Maria Moreira") || shownSecret.MatchString(a.body) {
			t.Errorf("a viewer's post to %s %v: %d at %s, want 403: %.500s", f.path, f.form, a.status, a.url, a.body)
		}
	}

	ctx := t.Context()
	if got := auditActions(t, w, events.AuditQuery{Actor: "operator:vera"}); !slices.Equal(got, []string{"operator_password_set", "operator_signed_in"}) {
		t.Errorf("the viewer's audit entries %q: they did something", got)
	}
	if d := deadLetterNow(t, w, id); d.Replays != 0 {
		t.Errorf("the viewer replayed the dead letter %d times", d.Replays)
	}
	if n := natstest.StreamMessages(t, w.JS, events.WorkStream); n != 0 {
		t.Errorf("the work queue holds %d messages after a viewer's replays, want none", n)
	}
	if ms, err := w.Store.Mediators(ctx, deskID); err != nil || len(ms) != 1 || !ms[0].DisabledAt.IsZero() {
		t.Errorf("the desk's mediators %+v, %v; want rui.lopes alone, enabled", ms, err)
	}
	if ops, err := w.Store.Operators(ctx); err != nil || len(ops) != 1 {
		t.Errorf("operators %+v, %v; want the viewer alone", ops, err)
	}
	if tokens, err := w.Store.OperatorTokens(ctx); err != nil || len(tokens) != 0 {
		t.Errorf("operator tokens %+v, %v; want none", tokens, err)
	}
	if desks, err := w.Store.Desks(ctx, ""); err != nil || len(desks) != 1 || len(desks[0].Credentials) != 1 {
		t.Errorf("desks %+v, %v; want the one desk with its one credential", desks, err)
	}
	if creds, err := w.Store.AgencyCredentials(ctx, "", "", true); err != nil || len(creds) != 0 {
		t.Errorf("agency credentials %+v, %v; want none", creds, err)
	}
	// The same form token is good for what a viewer may change: their own
	// account.
	if a := b.post("/desk/ops/account", home, url.Values{"language": {"pt"}}); a.status != http.StatusOK || !strings.HasPrefix(a.url, "/desk/ops/account?") {
		t.Errorf("the viewer's own language: %d at %s", a.status, a.url)
	}
}

func TestConsole_ListsStuckWorkOpensADeadLetterWithAReasonAndReplaysIt(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	r, item, id := stuckRequest(t, w)
	ids := strconv.FormatInt(id, 10)
	checkbox := `id="dl-` + ids + `" name="id" value="` + ids + `"`
	b, _ := w.signedInOperator(t, "ana", events.RoleOperator)

	for _, c := range []struct {
		path  string
		shown bool
	}{
		{"/desk/ops/stuck", true},
		{"/desk/ops/stuck?municipality=" + r.Municipality, true},
		{"/desk/ops/stuck?municipality=porto", false},
		{"/desk/ops/stuck?agency=justice", true},
		{"/desk/ops/stuck?agency=tax", false},
		{"/desk/ops/agencies/justice/stuck", true},
		{"/desk/ops/agencies/justice/stuck?municipality=porto", false},
		{"/desk/ops/agencies/tax/stuck", false},
	} {
		a := b.get(c.path)
		wantStatus(t, a, http.StatusOK, c.path)
		if strings.Contains(a.body, checkbox) != c.shown || strings.Contains(a.body, r.ID) != c.shown {
			t.Errorf("%s lists the dead letter and its failed work item: %v, want %v", c.path, !c.shown, c.shown)
		}
	}
	stuck := b.get("/desk/ops/stuck?municipality=" + r.Municipality)
	if !strings.Contains(stuck.body, `<option value="`+r.Municipality+`" selected>`) {
		t.Errorf("the municipality filter does not offer the desk's municipality, chosen: %.3000s", stuck.body)
	}

	// Opening the message takes a reason, in the audit log.
	letter := b.get("/desk/ops/dead-letters/" + ids)
	wantStatus(t, letter, http.StatusOK, "the dead letter's page")
	if strings.Contains(letter.body, "Maria Moreira") {
		t.Error("the dead letter's page shows its message before it is opened")
	}
	blank := b.post("/desk/ops/dead-letters/"+ids, letter, url.Values{"reason": {"  "}})
	wantStatus(t, blank, http.StatusUnprocessableEntity, "opening the message without a reason")
	if !strings.Contains(blank.body, `class="error-summary"`) || !strings.Contains(blank.body, `href="#reason"`) || !strings.Contains(blank.body, `id="reason"`) ||
		strings.Contains(blank.body, "Maria Moreira") {
		t.Errorf("opening without a reason: %.3000s", blank.body)
	}
	if got := auditEntries(t, w, events.AuditDeadLetterViewed); len(got) != 0 {
		t.Errorf("a refused view is in the audit log: %+v", got)
	}
	const why = "the agency says the work item is malformed"
	opened := b.post("/desk/ops/dead-letters/"+ids, letter, url.Values{"reason": {why}})
	wantStatus(t, opened, http.StatusOK, "opening the message with a reason")
	if !strings.Contains(opened.body, "Maria Moreira") || !strings.Contains(opened.body, item.ID) {
		t.Errorf("the opened dead letter does not show its message: %.3000s", opened.body)
	}
	if got := auditEntries(t, w, events.AuditDeadLetterViewed); len(got) != 1 || got[0].Actor != "operator:ana" || got[0].Reason != why || got[0].Target != ids {
		t.Errorf("views in the audit log %+v, want one by operator:ana for %q", got, why)
	}

	// Replaying takes a selection and a reason.
	noReason := b.post("/desk/ops/replay", stuck, url.Values{"id": {ids}, "replay": {"selected"}, "reason": {""}, "municipality": {r.Municipality}})
	wantStatus(t, noReason, http.StatusUnprocessableEntity, "a replay without a reason")
	if !strings.Contains(noReason.body, `href="#reason"`) || !strings.Contains(noReason.body, checkbox+" checked") {
		t.Errorf("a replay without a reason: the summary does not link the reason or the selection is lost: %.3000s", noReason.body)
	}
	none := b.post("/desk/ops/replay", stuck, url.Values{"replay": {"selected"}, "reason": {"the agency is back"}})
	wantStatus(t, none, http.StatusUnprocessableEntity, "a replay of nothing selected")
	if !strings.Contains(none.body, `href="#dead-letters"`) || !strings.Contains(none.body, `id="dead-letters"`) {
		t.Errorf("a replay of nothing: the summary does not link the list: %.3000s", none.body)
	}
	if d := deadLetterNow(t, w, id); d.Replays != 0 {
		t.Fatalf("a refused replay replayed the dead letter %d times", d.Replays)
	}
	const because = "the agency fixed its adapter"
	done := b.post("/desk/ops/replay", stuck, url.Values{"id": {ids}, "replay": {"selected"}, "reason": {because}, "municipality": {r.Municipality}})
	wantStatus(t, done, http.StatusOK, "a replay with a reason")
	if !strings.HasPrefix(done.url, "/desk/ops/replays?since=") || !strings.Contains(done.body, `href="/desk/ops/dead-letters/`+ids+`"`) ||
		!strings.Contains(done.body, r.ID) {
		t.Errorf("the replay led to %s, which does not list it: %.3000s", done.url, done.body)
	}
	replays := auditEntries(t, w, events.AuditReplay)
	if len(replays) != 1 || replays[0].Actor != "operator:ana" || replays[0].Reason != because || replays[0].Target != item.ID {
		t.Errorf("replays in the audit log %+v, want one by operator:ana for %q", replays, because)
	}
	if d := deadLetterNow(t, w, id); d.Replays != 1 {
		t.Errorf("the dead letter was replayed %d times, want once", d.Replays)
	}
	msgs := natstest.Messages(t, w.JS, events.WorkStream)
	if len(msgs) != 1 || msgs[0].Subject != events.WorkSubject("justice") {
		t.Fatalf("the work queue holds %d messages, want the work item again on %s", len(msgs), events.WorkSubject("justice"))
	}
	var again events.WorkItem
	if err := json.Unmarshal(msgs[0].Data, &again); err != nil || again.ID != item.ID || again.Round != 1 {
		t.Errorf("the replayed work item %+v (%v), want %s in round 1", again, err, item.ID)
	}
	// It is no longer waiting for a replay.
	if a := b.get("/desk/ops/stuck"); strings.Contains(a.body, checkbox) {
		t.Error("the replayed dead letter is still offered for replay")
	}
}

func TestConsole_CreatesAMediatorWithACodeShownOnceAndDisablingOneEndsTheirSession(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	mediator := w.browser(t)
	mediator.signIn("correct horse battery")
	b, _ := w.signedInOperator(t, "ana", events.RoleOperator)
	deskID := w.Desk.Desk.ID
	page := b.get("/desk/ops/mediators")
	wantStatus(t, page, http.StatusOK, "the mediators page")
	if !strings.Contains(page.body, "rui.lopes") || !strings.Contains(page.body, `<option value="`+deskID+`" selected>`) {
		t.Errorf("the mediators page does not list the desk's mediator: %.3000s", page.body)
	}
	bad := b.post("/desk/ops/mediators", page, url.Values{"action": {"create"}, "desk": {deskID}, "username": {"9lives"}, "name": {""}, "language": {"pt"}})
	wantStatus(t, bad, http.StatusUnprocessableEntity, "a mediator without a good username or a name")
	if !strings.Contains(bad.body, `href="#new-username"`) || !strings.Contains(bad.body, `href="#new-name"`) {
		t.Errorf("the refusal does not link both fields: %.3000s", bad.body)
	}
	created := b.post("/desk/ops/mediators", page, url.Values{"action": {"create"}, "desk": {deskID}, "username": {"eva.santos"},
		"name": {"Eva Santos"}, "language": {"pt"}})
	wantStatus(t, created, http.StatusOK, "a new mediator")
	code := secretOf(t, created)
	if user, ok, err := w.Store.SetupCodeValid(t.Context(), code); err != nil || !ok || user != "eva.santos" {
		t.Errorf("the code shown is valid %v for %q (%v), want eva.santos's", ok, user, err)
	}
	if a := b.get("/desk/ops/mediators"); strings.Contains(a.body, code) || !strings.Contains(a.body, "eva.santos") {
		t.Errorf("the setup code is shown again, or the new mediator is not listed: %.3000s", a.body)
	}
	taken := b.post("/desk/ops/mediators", page, url.Values{"action": {"create"}, "desk": {deskID}, "username": {"eva.santos"},
		"name": {"Eva Santos"}, "language": {"pt"}})
	wantStatus(t, taken, http.StatusUnprocessableEntity, "a username taken")

	disabled := b.post("/desk/ops/mediators", page, url.Values{"action": {"disable"}, "desk": {deskID}, "username": {"rui.lopes"}})
	wantStatus(t, disabled, http.StatusOK, "disabling a mediator")
	if !strings.HasPrefix(disabled.url, "/desk/ops/mediators?desk=") {
		t.Errorf("disabling led to %s", disabled.url)
	}
	if a := mediator.get("/desk/"); !strings.HasPrefix(a.url, "/desk/sign-in") {
		t.Errorf("the disabled mediator's session still opened %s", a.url)
	}
	for _, want := range []struct {
		action events.AuditAction
		target string
	}{{events.AuditMediatorCreated, "mediator:eva.santos"}, {events.AuditMediatorDisabled, "mediator:rui.lopes"}} {
		if got := auditEntries(t, w, want.action); len(got) == 0 || got[0].Actor != "operator:ana" || got[0].Target != want.target {
			t.Errorf("%s in the audit log: %+v, want by operator:ana on %s", want.action, got, want.target)
		}
	}
}

func TestConsole_CreatesOperatorsIssuesAndRevokesMachineTokensButNoOneDisablesThemselves(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	ctx := t.Context()
	b, _ := w.signedInOperator(t, "ana", events.RoleOperator)
	page := b.get("/desk/ops/operators")
	wantStatus(t, page, http.StatusOK, "the operators page")

	created := b.post("/desk/ops/operators", page, url.Values{"action": {"create"}, "username": {"vera"}, "name": {"Vera Lima"},
		"language": {"en"}, "role": {"viewer"}})
	wantStatus(t, created, http.StatusOK, "a new operator")
	code := secretOf(t, created)
	if user, ok, err := w.Store.OperatorSetupCodeValid(ctx, code); err != nil || !ok || user != "vera" {
		t.Errorf("the code shown is valid %v for %q (%v), want vera's", ok, user, err)
	}
	if o, err := w.Store.OperatorForSignIn(ctx, "vera"); err != nil || o.Role != events.RoleViewer {
		t.Errorf("vera is %+v (%v), want a viewer", o.Operator, err)
	}
	self := b.post("/desk/ops/operators", page, url.Values{"action": {"disable"}, "username": {"ana"}})
	wantStatus(t, self, http.StatusUnprocessableEntity, "an operator disabling themselves")
	if !strings.Contains(self.body, "You cannot reset or disable your own account") {
		t.Errorf("the refusal does not say why: %.2000s", self.body)
	}
	wantStatus(t, b.post("/desk/ops/operators", page, url.Values{"action": {"reset"}, "username": {"ana"}}),
		http.StatusUnprocessableEntity, "an operator resetting themselves")
	if a := b.get("/desk/ops/operators"); a.url != "/desk/ops/operators?" {
		t.Fatalf("after trying to disable herself, ana is at %s", a.url)
	}

	// Another operator, once disabled, is signed out at once.
	vera := w.browser(t)
	vera.opsSetup(code, opsPassword)
	if a := vera.opsSignIn("vera", opsPassword, "/desk/ops/"); a.url != "/desk/ops/?" {
		t.Fatalf("vera signing in landed at %s", a.url)
	}
	wantStatus(t, b.post("/desk/ops/operators", page, url.Values{"action": {"disable"}, "username": {"vera"}}), http.StatusOK, "disabling vera")
	if a := vera.get("/desk/ops/"); !strings.HasPrefix(a.url, "/desk/ops/sign-in?") {
		t.Errorf("the disabled operator's session still opened %s", a.url)
	}

	issued := b.post("/desk/ops/operators", page, url.Values{"action": {"token-issue"}, "token-name": {"prometheus"}, "role": {"viewer"}})
	wantStatus(t, issued, http.StatusOK, "a machine token")
	token := secretOf(t, issued)
	if tok, err := w.Store.OperatorByToken(ctx, token); err != nil || tok.Name != "prometheus" || tok.Role != events.RoleViewer {
		t.Errorf("the token shown stands for %+v (%v), want prometheus, a viewer", tok, err)
	}
	if a := b.get("/desk/ops/operators"); strings.Contains(a.body, token) || !strings.Contains(a.body, "prometheus") {
		t.Errorf("the token is shown again, or is not listed: %.3000s", a.body)
	}
	// A token's name is its own while it is in force: the refusal points
	// at the token's name, not at the form that creates operators.
	taken := b.post("/desk/ops/operators", page, url.Values{"action": {"token-issue"}, "token-name": {"prometheus"}, "role": {"viewer"}})
	wantStatus(t, taken, http.StatusUnprocessableEntity, "a token named as one in force")
	if !strings.Contains(taken.body, `href="#token-name"`) || !strings.Contains(taken.body, `id="token-name-error"`) || strings.Contains(taken.body, `href="#new-username"`) {
		t.Errorf("a token name taken: the summary does not link the token's name: %.4000s", taken.body)
	}
	revoked := b.post("/desk/ops/operators", page, url.Values{"action": {"token-revoke"}, "token-name": {"prometheus"}})
	if revoked.status != http.StatusOK || revoked.url != "/desk/ops/operators?" {
		t.Errorf("revoking the token led to %d at %s", revoked.status, revoked.url)
	}
	if _, err := w.Store.OperatorByToken(ctx, token); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("the revoked token: %v, want refused", err)
	}
	got := auditActions(t, w, events.AuditQuery{Actor: "operator:ana"})
	want := []string{"operator_password_set", "operator_signed_in", "operator_created", "operator_disabled", "operator_token_issued", "operator_token_revoked"}
	if !slices.Equal(got, want) {
		t.Errorf("ana's audit entries %q, want %q", got, want)
	}
}

func TestConsole_RegistersADeskWithATokenShownOnceAndRevokesItWithAReason(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	ctx := t.Context()
	b, _ := w.signedInOperator(t, "ana", events.RoleOperator)
	page := b.get("/desk/ops/desks")
	wantStatus(t, page, http.StatusOK, "the desks page")
	if !strings.Contains(page.body, w.Desk.Desk.ID) {
		t.Errorf("the desks page does not list the desk: %.3000s", page.body)
	}
	bad := b.post("/desk/ops/desks", page, url.Values{"action": {"create"}, "municipality": {"Porto City"}, "name": {""}})
	wantStatus(t, bad, http.StatusUnprocessableEntity, "a desk without a good municipality or a name")
	if !strings.Contains(bad.body, `href="#new-municipality"`) || !strings.Contains(bad.body, `href="#new-name"`) {
		t.Errorf("the refusal does not link both fields: %.3000s", bad.body)
	}
	created := b.post("/desk/ops/desks", page, url.Values{"action": {"create"}, "municipality": {"porto"}, "name": {"Loja do Cidadão Porto"}})
	wantStatus(t, created, http.StatusOK, "a new desk")
	token := secretOf(t, created)
	auth, err := w.Store.AuthenticateDesk(ctx, token)
	if err != nil || auth.Desk.Municipality != "porto" || auth.Desk.Name != "Loja do Cidadão Porto" {
		t.Fatalf("the token shown stands for %+v (%v), want the new desk of porto", auth, err)
	}
	listing := b.get("/desk/ops/desks")
	if strings.Contains(listing.body, token) || !strings.Contains(listing.body, `name="key" value="`+auth.Key+`"`) {
		t.Errorf("the token is shown again, or its credential cannot be revoked: %.4000s", listing.body)
	}
	revoke := url.Values{"action": {"revoke"}, "desk": {auth.Desk.ID}, "key": {auth.Key}}
	noReason := b.post("/desk/ops/desks", listing, revoke)
	wantStatus(t, noReason, http.StatusUnprocessableEntity, "a revocation without a reason")
	if !strings.Contains(noReason.body, `href="#reason-`+auth.Key+`"`) || !strings.Contains(noReason.body, `id="reason-`+auth.Key+`"`) {
		t.Errorf("the refusal does not link the reason of that credential: %.4000s", noReason.body)
	}
	if _, err := w.Store.AuthenticateDesk(ctx, token); err != nil {
		t.Fatalf("a refused revocation revoked the credential: %v", err)
	}
	const why = "the tablet was stolen"
	revoke.Set("reason", why)
	revoked := b.post("/desk/ops/desks", listing, revoke)
	if revoked.status != http.StatusOK || revoked.url != "/desk/ops/desks?" {
		t.Fatalf("revoking led to %d at %s: %.2000s", revoked.status, revoked.url, revoked.body)
	}
	if _, err := w.Store.AuthenticateDesk(ctx, token); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("the revoked desk token: %v, want refused", err)
	}
	if strings.Contains(revoked.body, `name="key" value="`+auth.Key+`"`) {
		t.Error("the revoked credential is still offered for revocation")
	}
	if got := auditEntries(t, w, events.AuditDeskCredentialRevoked); len(got) != 1 || got[0].Actor != "operator:ana" || got[0].Reason != why {
		t.Errorf("revocations in the audit log %+v, want one by operator:ana for %q", got, why)
	}

	// A credential that has expired is no longer offered for revocation:
	// there is nothing left to revoke.
	if _, _, err := w.Store.RotateDeskCredentials(ctx, w.Desk.Desk.ID, time.Time{}, time.Now().Add(-time.Second), events.By{Actor: "operator:root"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Store.AuthenticateDesk(ctx, w.Desk.Token); err == nil {
		t.Fatal("the desk's first credential is still in force after its rotation")
	}
	expired := b.get("/desk/ops/desks")
	for _, d := range mustDesks(t, w) {
		for _, c := range d.Credentials {
			offered := strings.Contains(expired.body, `name="key" value="`+c.Key+`"`)
			if offered != c.InForce(time.Now()) {
				t.Errorf("credential %s of desk %s (expires %v, revoked %v) offered for revocation: %v", c.Key, d.ID, c.ExpiresAt, c.RevokedAt, offered)
			}
		}
	}
}

func mustDesks(t *testing.T, w *world) []events.DeskListing {
	t.Helper()
	desks, err := w.Store.Desks(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	return desks
}

func TestConsole_IssuesAnAgencyATokenOrAnNkeyShownOnceAndRevokesIt(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	ctx := t.Context()
	b, _ := w.signedInOperator(t, "ana", events.RoleOperator)
	page := b.get("/desk/ops/agency-credentials")
	wantStatus(t, page, http.StatusOK, "the agencies' credentials page")

	issued := b.post("/desk/ops/agency-credentials", page, url.Values{"action": {"issue"}, "agency": {"justice"}, "kind": {"token"}})
	wantStatus(t, issued, http.StatusOK, "an agency's token")
	token := secretOf(t, issued)
	if agency, err := w.Store.AgencyByToken(ctx, token); err != nil || agency != "justice" {
		t.Fatalf("the token shown stands for %q (%v), want justice", agency, err)
	}
	seeded := b.post("/desk/ops/agency-credentials", page, url.Values{"action": {"issue"}, "agency": {"justice"}, "kind": {"nkey"}})
	wantStatus(t, seeded, http.StatusOK, "an agency's nkey")
	key, err := natsbus.Seed(secretOf(t, seeded)).PublicKey()
	if err != nil {
		t.Fatalf("the seed shown: %v", err)
	}
	nkeys, err := w.Store.AgencyCredentials(ctx, "justice", events.CredentialNkey, false)
	if err != nil || len(nkeys) != 1 || nkeys[0].PublicKey != key {
		t.Errorf("justice's nkeys %+v (%v), want the seed's public key %s", nkeys, err, key)
	}
	listing := b.get("/desk/ops/agency-credentials")
	if strings.Contains(listing.body, token) || !strings.Contains(listing.body, key) {
		t.Errorf("the token is shown again, or the nkey is not listed: %.3000s", listing.body)
	}
	wantStatus(t, b.post("/desk/ops/agency-credentials", page, url.Values{"action": {"issue"}, "agency": {"nowhere"}, "kind": {"token"}}),
		http.StatusNotFound, "a credential of an agency not in the catalogue")

	tokens, err := w.Store.AgencyCredentials(ctx, "justice", events.CredentialToken, false)
	if err != nil || len(tokens) != 1 {
		t.Fatalf("justice's tokens %+v, %v", tokens, err)
	}
	revoked := b.post("/desk/ops/agency-credentials", listing, url.Values{"action": {"revoke"}, "agency": {"justice"}, "key": {tokens[0].PublicKey}})
	if revoked.status != http.StatusOK || revoked.url != "/desk/ops/agency-credentials?" {
		t.Fatalf("revoking led to %d at %s: %.2000s", revoked.status, revoked.url, revoked.body)
	}
	if _, err := w.Store.AgencyByToken(ctx, token); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("the revoked agency token: %v, want refused", err)
	}
	if nkeys, err := w.Store.AgencyCredentials(ctx, "justice", events.CredentialNkey, false); err != nil || len(nkeys) != 1 {
		t.Errorf("revoking the token touched the nkey: %+v, %v", nkeys, err)
	}
	got := auditActions(t, w, events.AuditQuery{Actor: "operator:ana", Target: "justice"})
	if !slices.Equal(got, []string{"agency_credential_issued", "agency_credential_issued", "agency_credential_revoked"}) {
		t.Errorf("ana's audit entries on justice %q", got)
	}
}

// cell is how the audit page shows an entry's action or target.
func cell(s string) string { return `<td class="ref">` + s + `</td>` }

func TestConsole_AuditPageFiltersEntriesShowsTheChainsStateAndExportsAsADownload(t *testing.T) {
	t.Parallel()
	w := startConsole(t)
	ctx := t.Context()
	b, _ := w.signedInOperator(t, "ana", events.RoleOperator)
	if _, err := w.Store.ChainAudit(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := w.Store.VerifyAudit(ctx)
	if err != nil || st.Linked == 0 {
		t.Fatalf("VerifyAudit = %+v, %v", st, err)
	}
	all := b.get("/desk/ops/audit")
	wantStatus(t, all, http.StatusOK, "the audit page")
	for _, want := range []string{cell("mediator_created"), cell("operator_signed_in"), "<td>operator:test</td>",
		fmt.Sprintf("The chain verifies: %d entries linked", st.Linked), fmt.Sprintf("%d:%s", st.HeadSeq, st.HeadHash)} {
		if !strings.Contains(all.body, want) {
			t.Errorf("the audit page lacks %q: %.4000s", want, all.body)
		}
	}
	mine := b.get("/desk/ops/audit?actor=" + url.QueryEscape("operator:ana"))
	if !strings.Contains(mine.body, cell("operator_signed_in")) || strings.Contains(mine.body, cell("mediator_created")) {
		t.Errorf("the audit page filtered by operator:ana: %.4000s", mine.body)
	}
	if !strings.Contains(mine.body, `value="operator:ana"`) {
		t.Error("the filter does not keep the actor typed")
	}
	byAction := b.get("/desk/ops/audit?action=mediator_created")
	if !strings.Contains(byAction.body, cell("mediator:rui.lopes")) || strings.Contains(byAction.body, cell("operator_signed_in")) {
		t.Errorf("the audit page filtered by action: %.4000s", byAction.body)
	}
	badDate := b.get("/desk/ops/audit?from=yesterday")
	wantStatus(t, badDate, http.StatusUnprocessableEntity, "a date that is no date")
	if !strings.Contains(badDate.body, `href="#from"`) {
		t.Errorf("the date's error does not link its field: %.2000s", badDate.body)
	}

	req, _ := http.NewRequest(http.MethodGet, w.srv.URL+"/desk/ops/audit/export", nil)
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") {
		t.Fatalf("the export: %d, Content-Disposition %q", resp.StatusCode, resp.Header.Get("Content-Disposition"))
	}
	var links int
	for line := range strings.Lines(string(body)) {
		var l postgres.AuditLink
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Hash == "" {
			t.Fatalf("the export's line %q: %v", line, err)
		}
		links++
	}
	if links != int(st.Linked) {
		t.Errorf("the export holds %d links, want the %d linked", links, st.Linked)
	}
	if got := auditEntries(t, w, events.AuditExported); len(got) != 1 || got[0].Actor != "operator:ana" {
		t.Errorf("exports in the audit log %+v, want one by operator:ana", got)
	}

	// Someone rewrites history: the page says the chain does not verify.
	err = pgx.BeginFunc(ctx, w.Store.Pool(), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			ALTER TABLE audit_log DISABLE TRIGGER audit_log_is_append_only;
			UPDATE audit_log SET actor = 'operator:nobody' WHERE action = 'mediator_created';
			ALTER TABLE audit_log ENABLE TRIGGER audit_log_is_append_only`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	broken := b.get("/desk/ops/audit")
	if !strings.Contains(broken.body, "does not verify") || strings.Contains(broken.body, "The chain verifies") {
		t.Errorf("the audit page of a rewritten log: %.4000s", broken.body)
	}
}
