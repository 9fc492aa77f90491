package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/workers/access"
	"github.com/spotflow/spotflow/workers/dashboard"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// operatorToken is the operators' token of the dashboards under test.
const operatorToken = "op-secret-for-the-dashboard"

// fixture is a store holding, in the current minute, the requests of two
// desks: "Aldeia" (municipality aldeia) submitted 3, of which 2 were
// completed and 1 rejected; "Loja Lisboa" (lisboa) submitted 6, all
// completed. The tax agency's queue holds 3 work items.
type fixture struct {
	store     *postgres.Store
	requests  []*events.Request
	submitted time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	slas := make(map[string]time.Duration)
	for _, s := range eventstest.Catalog(t).Services {
		slas[s.Code] = s.SLA()
	}
	store := postgres.NewStore(pgtest.Pool(t, pgtest.Schema(t)), []byte("0123456789abcdef0123456789abcdef"), postgres.ServiceLevels(slas))
	fx := &fixture{store: store, submitted: time.Now().UTC().Truncate(time.Minute)}
	ctx := t.Context()
	aldeia, _, err := fx.store.CreateDesk(ctx, "aldeia", "Aldeia")
	if err != nil {
		t.Fatal(err)
	}
	lisboa, _, err := fx.store.CreateDesk(ctx, "lisboa", "Loja Lisboa")
	if err != nil {
		t.Fatal(err)
	}
	fx.project(t, aldeia, events.StatusCompleted, events.StatusCompleted, events.StatusRejected)
	fx.project(t, lisboa, events.StatusCompleted, events.StatusCompleted, events.StatusCompleted,
		events.StatusCompleted, events.StatusCompleted, events.StatusCompleted)
	if _, err := fx.store.FoldRollups(ctx); err != nil {
		t.Fatal(err)
	}
	return fx
}

// project submits one change of address at desk for each outcome, routed
// to the tax agency, which reports the outcome a second later.
func (fx *fixture) project(t *testing.T, desk events.Desk, outcomes ...events.Status) {
	t.Helper()
	var changes []events.Change
	for _, outcome := range outcomes {
		req := eventstest.ChangeOfAddress(events.NewID(time.Now()))
		req.DeskID, req.Municipality, req.SubmittedAt = desk.ID, desk.Municipality, fx.submitted
		fx.requests = append(fx.requests, req)
		changes = append(changes, events.Change{Request: req},
			events.Change{Event: &events.StatusEvent{Schema: events.SchemaStatus,
				ID: events.EventID(req.ID, "", events.StatusRouted), RequestID: req.ID, Status: events.StatusRouted,
				At: req.SubmittedAt, Actor: events.SourceRouter, Agencies: []string{"tax"}}},
			events.Change{Event: &events.StatusEvent{Schema: events.SchemaStatus, ID: events.EventID(req.ID, "tax", outcome),
				RequestID: req.ID, Agency: "tax", Status: outcome, At: req.SubmittedAt.Add(time.Second),
				Actor: "agency:tax", Note: "done"}})
	}
	for _, err := range fx.store.Project(t.Context(), changes) {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// serve serves the dashboard over the fixture's store; operators, when
// set, tells operators apart.
func (fx *fixture) serve(t *testing.T, operators access.Operators, every time.Duration) *httptest.Server {
	t.Helper()
	d, err := dashboard.New(dashboard.Config{
		Store: fx.store, Catalog: eventstest.Catalog(t), Every: every, Operators: operators,
		Backlog: func(context.Context) ([]events.QueueBacklog, error) {
			return []events.QueueBacklog{{Agency: "tax", Pending: 3, AckPending: 0}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	t.Cleanup(d.Close)
	return srv
}

func operators(t *testing.T) access.Operators {
	t.Helper()
	token, err := access.NewToken(operatorToken)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// asOperator is the Authorization header of an operator; "" for anyone.
const asOperator = "Bearer " + operatorToken

func get(t *testing.T, url, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// row is the table row of the page whose header cell is name, in the
// table with the given id (or the first table in the element with that id).
func row(t *testing.T, page, tableID, name string) string {
	t.Helper()
	_, table, ok := strings.Cut(page, ` id="`+tableID+`"`)
	if !ok {
		t.Fatalf("the page has no table %q", tableID)
	}
	table, _, _ = strings.Cut(table, "</table>")
	for line := range strings.SplitSeq(table, "\n") {
		if strings.HasPrefix(line, `<tr><th scope="row">`+name+`</th>`) {
			return line
		}
	}
	t.Fatalf("table %q has no row %q:\n%s", tableID, name, table)
	return ""
}

// withoutBacklog is page without its section on the work queues and its
// headline figure of work items queued, counts of the system shown to
// everyone.
func withoutBacklog(page string) string {
	before, rest, ok := strings.Cut(page, `<section aria-labelledby="backlog-heading">`)
	if !ok {
		return page
	}
	_, after, _ := strings.Cut(rest, "</section>")
	return regexp.MustCompile(`data-figure="backlog" data-value="\d+"`).ReplaceAllString(before+after, "")
}

// smallCount finds a count from 1 to 4 shown as a number: a table cell, a
// figure's value, or a total in the chart's description or legend.
var smallCount = regexp.MustCompile(`<td>[1-4]</td>|data-value="[1-4]"|: [1-4] in the hour|\([1-4]\)</li>`)

// figuresOf reads /dashboard/figures as a map, so that null can be told
// from 0.
func figuresOf(t *testing.T, url, authorization string) map[string]any {
	t.Helper()
	status, body := get(t, url, authorization)
	var f map[string]any
	if err := json.Unmarshal([]byte(body), &f); status != http.StatusOK || err != nil {
		t.Fatalf("GET %s: %d %v %s", url, status, err, body)
	}
	return f
}

func TestDashboard_AnonymousViewShowsNoCountUnderFive(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	srv := fx.serve(t, operators(t), time.Minute)
	status, page := get(t, srv.URL+"/dashboard?range=1h", "")
	if status != http.StatusOK {
		t.Fatalf("GET /dashboard: %d", status)
	}

	// Aldeia's 3 submissions, 2 completions and 1 rejection are fewer
	// than 5; its share and mean rest on 2 completions.
	aldeia := row(t, page, "table-desk", "Aldeia")
	if strings.Count(aldeia, "fewer than 5") != 3 || strings.Count(aldeia, `<span aria-hidden="true">&lt;5</span>`) != 3 {
		t.Errorf("Aldeia's row does not say fewer than 5 for its submitted, completed and rejected: %s", aldeia)
	}
	if want := `<td>0</td><td>0</td><td>—</td><td>—</td></tr>`; !strings.HasSuffix(aldeia, want) {
		t.Errorf("Aldeia's row shows its failures, breaches, share or mean: %s; want it to end %s", aldeia, want)
	}
	if m := row(t, page, "table-municipality", "aldeia"); strings.Count(m, "fewer than 5") != 3 {
		t.Errorf("the municipality aldeia's row shows its small counts: %s", m)
	}
	// Lisboa's 6 are shown, with what is drawn from them.
	if l := row(t, page, "table-desk", "Loja Lisboa"); !strings.Contains(l, `<td>6</td><td>6</td><td>0</td><td>0</td><td>0</td><td>100.0 %</td><td>1.0 s</td>`) {
		t.Errorf("Loja Lisboa's row: %s; want 6 submitted and completed, a share and a mean", l)
	}
	// The headline figures: 9 submitted, 8 completed are shown, the 1
	// rejection is not; 8 completions give a median but no p95 or p99.
	for _, want := range []string{`data-figure="submitted" data-value="9"`, `data-figure="completed" data-value="8"`,
		`data-figure="rejected" data-suppressed="true"`, `data-figure="failed" data-value="0"`,
		`id="suppression"`, `href="/dashboard?operator=1&amp;range=1h"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if !regexp.MustCompile(`<dd data-figure="latency">[0-9.]+ s / — / —</dd>`).MatchString(page) {
		t.Error("the headline latency is not a median alone, with the p95 and p99 of 8 completions left out")
	}
	// The system's own counts are shown: 3 work items queued for tax.
	if !strings.Contains(page, `data-figure="backlog" data-value="3"`) || !strings.Contains(row(t, page, "backlog-table", "Tax and Customs Authority"), "<td>3</td><td>0</td>") {
		t.Error("the backlog, a count of the system, is not shown as it is")
	}
	if m := smallCount.FindAllString(withoutBacklog(page), -1); len(m) > 0 {
		t.Errorf("the anonymous page shows counts under 5: %q", m)
	}

	// Filtered to aldeia, nothing but zeros is left to show.
	_, page = get(t, srv.URL+"/dashboard?range=1h&municipality=aldeia", "")
	minute := row(t, page, "throughput-data", fx.submitted.Format("15:04"))
	if strings.Count(minute, "fewer than 5") != 2 {
		t.Errorf("aldeia's minute of 3 submissions and 2 completions: %s; want both fewer than 5", minute)
	}
	for _, want := range []string{"Submitted: fewer than 5 in the hour.", "Minutes with fewer than 5 are left out of the lines.",
		`<dd data-figure="latency">— / — / —</dd>`, `<dd data-figure="sla-share">—</dd>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page for aldeia lacks %s", want)
		}
	}
	if m := smallCount.FindAllString(withoutBacklog(page), -1); len(m) > 0 {
		t.Errorf("the anonymous page for aldeia shows counts under 5: %q", m)
	}
	// The chart leaves the hidden minute out: 59 of the 60 points remain.
	submittedLine := regexp.MustCompile(`<path class="line submitted" d="([^"]*)"`).FindStringSubmatch(page)
	if submittedLine == nil || strings.Count(submittedLine[1], "M")+strings.Count(submittedLine[1], "L") != 59 {
		t.Errorf("the submitted line of aldeia: %v; want 59 points, the hidden minute left out", submittedLine)
	}

	// The JSON: small counts and what rests on them are null.
	f := figuresOf(t, srv.URL+"/dashboard/figures?range=1h&municipality=aldeia", "")
	for _, name := range []string{"submitted", "completed", "rejected", "within_sla", "p50_ms", "p95_ms", "p99_ms",
		"last_hour_submitted", "last_hour_completed"} {
		if v, ok := f[name]; !ok || v != nil {
			t.Errorf("anonymous figures for aldeia: %s = %v, want null", name, v)
		}
	}
	if f["suppressed"] != true || f["failed"] != 0.0 || f["breached"] != 0.0 || f["backlog"] != 3.0 {
		t.Errorf("anonymous figures for aldeia: %v; want suppressed, 0 failed and breached, a backlog of 3", f)
	}
	f = figuresOf(t, srv.URL+"/dashboard/figures?range=1h", "")
	if f["submitted"] != 9.0 || f["completed"] != 8.0 || f["rejected"] != nil || f["p50_ms"] == nil || f["p95_ms"] != nil ||
		f["p99_ms"] != nil || f["suppressed"] != true {
		t.Errorf("anonymous figures: %v; want 9 and 8, the rejection and the p95 and p99 of 8 completions null, suppressed", f)
	}
}

func TestDashboard_OperatorViewShowsEveryCount(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	srv := fx.serve(t, operators(t), time.Minute)
	for _, authorization := range []string{asOperator, "Basic " + basic(operatorToken)} {
		_, page := get(t, srv.URL+"/dashboard?range=1h", authorization)
		if aldeia := row(t, page, "table-desk", "Aldeia"); !strings.HasPrefix(aldeia, `<tr><th scope="row">Aldeia</th><td>3</td><td>2</td><td>1</td><td>0</td><td>0</td><td>100.0 %</td><td>1.0 s</td>`) {
			t.Errorf("with %s, Aldeia's row: %s; want every figure", authorization, aldeia)
		}
		for _, hidden := range []string{"fewer than 5", `id="suppression"`, `data-suppressed`} {
			if strings.Contains(page, hidden) {
				t.Errorf("with %s, the operator's page holds %s", authorization, hidden)
			}
		}
	}
	f := figuresOf(t, srv.URL+"/dashboard/figures?range=1h&municipality=aldeia", asOperator)
	if f["submitted"] != 3.0 || f["completed"] != 2.0 || f["rejected"] != 1.0 || f["p99_ms"] == nil || f["suppressed"] != false {
		t.Errorf("the operator's figures for aldeia: %v; want 3, 2, 1, a p99, not suppressed", f)
	}
}

func basic(password string) string {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth("operator", password)
	_, credentials, _ := strings.Cut(req.Header.Get("Authorization"), " ")
	return credentials
}

func TestDashboard_CacheNeverServesTheOperatorsViewToAnyoneElse(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	// Readings are shared for a minute: long enough that each request
	// below would get a cached view, if audiences shared them.
	srv := fx.serve(t, operators(t), time.Minute)
	url := srv.URL + "/dashboard?range=1h&municipality=aldeia"
	for _, step := range []struct {
		who, authorization string
		full               bool
	}{
		{"an operator", asOperator, true},
		{"anyone right after", "", false},
		{"someone with a wrong token right after", "Bearer wrong", false},
		{"the operator again", asOperator, true},
	} {
		_, page := get(t, url, step.authorization)
		minute := row(t, page, "throughput-data", fx.submitted.Format("15:04"))
		if full := strings.Contains(minute, "<td>3</td>"); full != step.full {
			t.Errorf("%s got the minute %s; want every count %v", step.who, minute, step.full)
		}
	}
	// The live stream too, opened right after the operator's page.
	html := firstLiveEvent(t, srv.URL+"/dashboard/live?range=1h&municipality=aldeia", "")
	if minute := row(t, html, "throughput-data", fx.submitted.Format("15:04")); strings.Contains(minute, "<td>3</td>") {
		t.Errorf("the anonymous live stream after an operator's page shows the minute %s", minute)
	}
	html = firstLiveEvent(t, srv.URL+"/dashboard/live?range=1h&municipality=aldeia", asOperator)
	if minute := row(t, html, "throughput-data", fx.submitted.Format("15:04")); !strings.Contains(minute, "<td>3</td>") {
		t.Errorf("the operator's live stream lacks the minute's 3 submissions: %s", minute)
	}
}

// firstLiveEvent opens the live stream and returns its first figures.
func firstLiveEvent(t *testing.T, url, authorization string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var html string
			if err := json.Unmarshal([]byte(data), &html); err != nil {
				t.Fatal(err)
			}
			return html
		}
	}
	t.Fatalf("the stream ended without an event: %v", sc.Err())
	return ""
}

func TestDashboard_SignInAsksForTheOperatorsCredential(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	srv := fx.serve(t, operators(t), time.Minute)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/dashboard?operator=1&range=1h", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Basic realm="spotflow operators"`) {
		t.Errorf("sign-in without a credential: %s %q; want 401 with a Basic challenge", resp.Status, resp.Header.Values("WWW-Authenticate"))
	}
	status, page := get(t, srv.URL+"/dashboard?operator=1&range=1h", "Basic "+basic(operatorToken))
	if status != http.StatusOK || !strings.Contains(row(t, page, "table-desk", "Aldeia"), "<td>3</td>") {
		t.Errorf("sign-in with the token as password: %d; want the operator's page", status)
	}

	// Without an operator credential configured, there is no one to sign
	// in: the page says so and offers no link.
	srv = fx.serve(t, nil, time.Minute)
	for _, authorization := range []string{"", asOperator} {
		status, page := get(t, srv.URL+"/dashboard?operator=1&range=1h", authorization)
		if status != http.StatusOK || strings.Contains(page, "operator=1") || !strings.Contains(page, "once an operator token is set") ||
			!strings.Contains(row(t, page, "table-desk", "Aldeia"), "fewer than 5") {
			t.Errorf("with no operators configured and %q: %d, want the suppressed page without a sign-in link", authorization, status)
		}
	}
}

func TestDashboard_BeyondLoopbackOnlyOperatorsGetIn(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	d, err := dashboard.New(dashboard.Config{Store: fx.store, Catalog: eventstest.Catalog(t), Every: time.Minute, Operators: operators(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	policy := access.NewPolicy("0.0.0.0:8080", operators(t))
	srv := httptest.NewServer(policy.Require(d))
	t.Cleanup(srv.Close)
	for _, path := range []string{"/dashboard", "/dashboard/figures", "/dashboard/live", "/dashboard/assets/dashboard.css"} {
		if status, _ := get(t, srv.URL+path, ""); status != http.StatusUnauthorized {
			t.Errorf("GET %s without a credential: %d, want 401", path, status)
		}
	}
	if status, page := get(t, srv.URL+"/dashboard", asOperator); status != http.StatusOK || strings.Contains(page, "fewer than 5") {
		t.Errorf("GET /dashboard as an operator: %d; want every count", status)
	}
}

func TestDashboard_ShowsAggregatesAndNoPersonalData(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	srv := fx.serve(t, operators(t), 100*time.Millisecond)
	for _, authorization := range []string{"", asOperator} {
		status, page := get(t, srv.URL+"/dashboard?range=24h&municipality=lisboa", authorization)
		if status != http.StatusOK {
			t.Fatalf("GET /dashboard: %d", status)
		}
		for _, want := range []string{`data-figure="submitted" data-value="6"`, `data-figure="completed" data-value="6"`,
			`data-figure="backlog" data-value="3"`, `<option value="lisboa" selected>`,
			`<title id="throughput-title">`, `role="img"`, "last 24 hours"} {
			if !strings.Contains(page, want) {
				t.Errorf("the page lacks %q", want)
			}
		}
		for _, req := range fx.requests {
			for _, personal := range []string{req.ID, req.Citizen.NationalID, req.Citizen.Name, req.Mediator, "Rua Augusta"} {
				if strings.Contains(page, personal) {
					t.Errorf("the page shows %q: personal data or a request", personal)
				}
			}
		}
	}
	for _, asset := range []string{"/dashboard/assets/dashboard.css", "/dashboard/assets/dashboard.js"} {
		if status, _ := get(t, srv.URL+asset, ""); status != http.StatusOK {
			t.Errorf("GET %s: %d", asset, status)
		}
	}
	f := figuresOf(t, srv.URL+"/dashboard/figures?range=bogus", "")
	if f["range"] != "1h" || f["submitted"] != 9.0 {
		t.Errorf("GET /dashboard/figures with a bad range: %v, want the last hour with 9 submitted", f)
	}
}

func TestDashboard_LiveStreamSendsFiguresRepeatedly(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	srv := fx.serve(t, operators(t), 100*time.Millisecond)
	resp, err := http.Get(srv.URL + "/dashboard/live?range=1h")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q, want text/event-stream", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	events := 0
	for events < 3 && sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var html string
			if err := json.Unmarshal([]byte(data), &html); err != nil || !strings.Contains(html, `data-figure="submitted"`) {
				t.Fatalf("event data is not the live part of the page: %.200s", data)
			}
			events++
		}
	}
	if events < 3 {
		t.Fatalf("got %d events before the stream ended: %v", events, sc.Err())
	}
}
