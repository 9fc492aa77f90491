package agencyapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/agencyapi"
	"github.com/spotflow/spotflow/workers/intaketest"
	"github.com/spotflow/spotflow/workers/ratelimit"
	"github.com/spotflow/spotflow/workers/workertest"
)

var quiet = slog.New(slog.DiscardHandler)

// world is a real intake, router and projector over real NATS and
// Postgres, with no dispatcher: the agency reports by HTTPS alone.
type world struct {
	desk *intaketest.Desk
	url  string
}

func start(t *testing.T) *world {
	t.Helper()
	w := startWithoutProjector(t)
	w.project(t)
	return w
}

// startWithoutProjector is start with the projector yet to run.
func startWithoutProjector(t *testing.T) *world {
	t.Helper()
	d := intaketest.Start(t, nil)
	router, err := workers.NewRouter(workers.RouterConfig{JetStream: d.JS, Catalog: eventstest.Catalog(t), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "Router", router.Run)
	api, err := agencyapi.New(agencyapi.Config{Store: d.Store, Publisher: d.Intake, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &world{desk: d, url: srv.URL}
}

// project runs the projector.
func (w *world) project(t *testing.T) {
	t.Helper()
	projector, err := workers.NewProjector(workers.ProjectorConfig{JetStream: w.desk.JS, Store: w.desk.Store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	workertest.Run(t, "Projector", projector.Run)
}

// submit accepts a criminal-record certificate, which goes to justice
// alone, and waits for its work item to be projected.
func (w *world) submit(t *testing.T, key string) string {
	t.Helper()
	req := eventstest.Request("", "criminal-record-certificate", map[string]any{"purpose": "employment"})
	id, _, err := w.desk.Intake.Accept(t.Context(), w.desk.Desk, key, &events.Submission{
		ServiceCode: req.ServiceCode, Citizen: &req.Citizen, Attributes: req.Attributes,
	})
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	workertest.WaitFor(t, "the work item to be projected", func() error {
		_, err := w.desk.Store.WorkItemState(t.Context(), id, "justice")
		return err
	})
	return id
}

type answer struct {
	code   int
	body   string
	header http.Header
}

func (a answer) err() (code, field string) {
	var e struct {
		Error struct{ Code, Field string }
	}
	_ = json.Unmarshal([]byte(a.body), &e)
	return e.Error.Code, e.Error.Field
}

func (w *world) report(t *testing.T, token, workItem, contentType, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.url+"/v1/agency/work-items/"+workItem+"/status", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

func (w *world) view(t *testing.T, id string) *events.RequestView {
	t.Helper()
	v, err := w.desk.Store.RequestForDesk(t.Context(), w.desk.Desk.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReport_CarriesAnAgencysLaterStatusesToTheRequestOnce(t *testing.T) {
	t.Parallel()
	w := start(t)
	ctx := t.Context()
	token, _, err := w.desk.Store.AddAgencyToken(ctx, "justice", "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	id := w.submit(t, "report-1")
	item := events.WorkItemID(id, "justice")
	const js = "application/json"

	for _, body := range []string{
		`{"id":"` + item + `.accepted","status":"accepted"}`,
		`{"id":"` + item + `.p1","status":"in_progress","note":"Pedido em análise"}`,
		`{"id":"` + item + `.p1","status":"in_progress","note":"Pedido em análise"}`, // a retry
		`{"id":"` + item + `.completed","status":"completed","note":"Certificado emitido"}`,
		`{"id":"` + item + `.completed","status":"completed","note":"Certificado emitido"}`, // a retry
	} {
		if a := w.report(t, token, item, js, body); a.code != http.StatusAccepted {
			t.Fatalf("report %s: %d %s", body, a.code, a.body)
		}
	}
	workertest.WaitFor(t, "the request to be completed", func() error {
		if v := w.view(t, id); v.Status != events.StatusCompleted {
			return fmt.Errorf("request is %s", v.Status)
		}
		return nil
	})
	v := w.view(t, id)
	var statuses []events.Status
	for _, e := range v.Timeline {
		if e.Agency == "justice" {
			statuses = append(statuses, e.Status)
		}
	}
	want := []events.Status{events.StatusAccepted, events.StatusInProgress, events.StatusCompleted}
	if !slices.Equal(statuses, want) {
		t.Errorf("justice's timeline %v, want %v: each report once", statuses, want)
	}

	// Another end of the round is refused before it is published, and the
	// request stays completed.
	if a := w.report(t, token, item, js, `{"id":"`+item+`.rejected","status":"rejected"}`); a.code != http.StatusConflict {
		t.Errorf("a rejection after completion: %d %s, want 409", a.code, a.body)
	} else if code, field := a.err(); code != "refused_terminal" || field != "status" {
		t.Errorf("a rejection after completion: %s on %s, want refused_terminal on status", code, field)
	}
	if a := w.report(t, token, item, js, `{"id":"`+item+`.rejected.r7","status":"rejected","round":7}`); a.code != http.StatusConflict {
		t.Errorf("a round no replay opened: %d %s, want 409", a.code, a.body)
	} else if code, _ := a.err(); code != "refused_round" {
		t.Errorf("a round no replay opened: %s, want refused_round", code)
	}
	stored := natstest.Messages(t, w.desk.JS, events.EventsStream)
	for _, m := range stored {
		if m.Subject == events.StatusSubject("justice") && strings.Contains(string(m.Data), `"rejected"`) {
			t.Errorf("a refused report was published: %s", m.Data)
		}
	}
	if v := w.view(t, id); v.Status != events.StatusCompleted {
		t.Errorf("the request is %s after the refusals, want completed", v.Status)
	}
}

func TestReport_RefusesWhatItMustNotTakeNamingTheField(t *testing.T) {
	t.Parallel()
	w := start(t)
	ctx := t.Context()
	justice, _, err := w.desk.Store.AddAgencyToken(ctx, "justice", "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	tax, _, err := w.desk.Store.AddAgencyToken(ctx, "tax", "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	revoked, revokedKey, err := w.desk.Store.AddAgencyToken(ctx, "justice", "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.desk.Store.RevokeAgencyCredential(ctx, "justice", revokedKey, "operator:test"); err != nil {
		t.Fatal(err)
	}
	id := w.submit(t, "refusals-1")
	item := events.WorkItemID(id, "justice")
	before := natstest.StreamMessages(t, w.desk.JS, events.EventsStream)
	ok := func(fields string) string {
		return `{"id":"` + item + `.x","status":"in_progress"` + fields + `}`
	}
	old := time.Now().Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	cases := []struct {
		name, token, item, contentType, body string
		code                                 int
		errCode, field                       string
	}{
		{"no token", "", item, "application/json", ok(""), 401, "unauthenticated", "Authorization"},
		{"an unknown token", "sfa_nope", item, "application/json", ok(""), 401, "unauthenticated", "Authorization"},
		{"a revoked token", revoked, item, "application/json", ok(""), 401, "unauthenticated", "Authorization"},
		{"another agency's work item", tax, item, "application/json", ok(""), 404, "not_found", ""},
		{"the same request under the agency's own code", tax, events.WorkItemID(id, "tax"), "application/json",
			`{"id":"` + events.WorkItemID(id, "tax") + `.x","status":"in_progress"}`, 404, "not_found", ""},
		{"a request nobody submitted", justice, "no-such-request.justice", "application/json",
			`{"id":"no-such-request.justice.x","status":"in_progress"}`, 404, "not_found", ""},
		{"not JSON", justice, item, "text/plain", ok(""), 415, "unsupported_media_type", "Content-Type"},
		{"malformed JSON", justice, item, "application/json", `{"id":`, 400, "malformed_json", "body"},
		{"an unknown field", justice, item, "application/json", ok(`,"agency":"tax"`), 400, events.CodeUnknownField, "agency"},
		{"no id", justice, item, "application/json", `{"status":"accepted"}`, 422, events.CodeRequired, "id"},
		{"a status agencies do not report", justice, item, "application/json", `{"id":"` + item + `.x","status":"failed"}`, 422, events.CodeInvalidValue, "status"},
		{"a round of the wrong type", justice, item, "application/json", ok(`,"round":"1"`), 422, events.CodeInvalidType, "round"},
		{"a time that is no time", justice, item, "application/json", ok(`,"at":"yesterday"`), 422, events.CodeInvalidValue, "at"},
		{"a time a month ago", justice, item, "application/json", ok(`,"at":"` + old + `"`), 422, "refused_time", "at"},
		{"a note with control characters", justice, item, "application/json", ok(`,"note":"ok\u001b[2J"`), 422, "refused_note", "note"},
		{"an ID outside the work item's", justice, item, "application/json", `{"id":"` + id + `.completed","status":"in_progress"}`, 422, "refused_id", "id"},
		{"a completion under an ID of its own", justice, item, "application/json", `{"id":"` + item + `.done","status":"completed"}`, 422, "refused_id", "id"},
	}
	for _, c := range cases {
		a := w.report(t, c.token, c.item, c.contentType, c.body)
		code, field := a.err()
		if a.code != c.code || code != c.errCode || field != c.field {
			t.Errorf("%s: %d %s on %q, want %d %s on %q (%s)", c.name, a.code, code, field, c.code, c.errCode, c.field, a.body)
		}
	}
	if after := natstest.StreamMessages(t, w.desk.JS, events.EventsStream); after != before {
		t.Errorf("refused reports published %d messages", after-before)
	}
	if v := w.view(t, id); v.Status != events.StatusRouted {
		t.Errorf("the request is %s after refused reports, want routed", v.Status)
	}
}

func TestReport_OfAWorkItemNotProjectedYetIsLeftToTheProjector(t *testing.T) {
	t.Parallel()
	w := startWithoutProjector(t)
	token, _, err := w.desk.Store.AddAgencyToken(t.Context(), "justice", "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	req := eventstest.Request("", "criminal-record-certificate", map[string]any{"purpose": "employment"})
	id, _, err := w.desk.Intake.Accept(t.Context(), w.desk.Desk, "lag-1", &events.Submission{
		ServiceCode: req.ServiceCode, Citizen: &req.Citizen, Attributes: req.Attributes,
	})
	if err != nil {
		t.Fatal(err)
	}
	item := events.WorkItemID(id, "justice")
	// Intake accepted the request; the projection holds nothing of it yet.
	if a := w.report(t, token, item, "application/json", `{"id":"`+item+`.p1","status":"in_progress"}`); a.code != http.StatusAccepted {
		t.Fatalf("a report before the projection caught up: %d %s, want 202", a.code, a.body)
	}
	w.project(t)
	workertest.WaitFor(t, "the report to be applied", func() error {
		v, err := w.desk.Store.RequestForDesk(t.Context(), w.desk.Desk.ID, id)
		if err != nil {
			return err
		}
		if v.Status != events.StatusInProgress {
			return fmt.Errorf("request is %s", v.Status)
		}
		return nil
	})
}

func TestNew_RequiresItsParts(t *testing.T) {
	t.Parallel()
	if _, err := agencyapi.New(agencyapi.Config{}); err == nil {
		t.Error("New without a store or publisher succeeded")
	}
}

// The intake's publisher stores reports on the agency's own subject.
var _ agencyapi.Publisher = (*workers.Intake)(nil)

// countingStore is the real store, counting the token lookups.
type countingStore struct {
	agencyapi.Store
	lookups atomic.Int64
}

func (s *countingStore) AgencyByToken(ctx context.Context, token string) (string, error) {
	s.lookups.Add(1)
	return s.Store.AgencyByToken(ctx, token)
}

func TestReport_RefusesAnAddressThatPresentedUnknownTokensTooOftenBeforeLookingItsTokenUp(t *testing.T) {
	t.Parallel()
	d := intaketest.Start(t, nil)
	store := &countingStore{Store: d.Store}
	// Three failures a minute.
	api, err := agencyapi.New(agencyapi.Config{Store: store, Publisher: d.Intake, FailedAuth: ratelimit.New(3.0/60, 3), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	w := &world{desk: d, url: srv.URL}
	token, _, err := d.Store.AddAgencyToken(t.Context(), "justice", "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	item := events.WorkItemID(events.NewID(time.Now()), "justice")
	body := `{"id":"` + item + `.accepted","status":"accepted"}`
	for i := range 3 {
		if a := w.report(t, "guess-"+strconv.Itoa(i), item, "application/json", body); a.code != http.StatusUnauthorized {
			t.Fatalf("unknown token %d: %d %s, want 401", i, a.code, a.body)
		}
	}
	// The fourth try, even with a good token, is refused unread.
	for _, tok := range []string{"guess-3", token} {
		a := w.report(t, tok, item, "application/json", body)
		retry := a.header.Get("Retry-After")
		if code, field := a.err(); a.code != http.StatusTooManyRequests || code != "too_many_requests" || field != "Authorization" {
			t.Errorf("after three failures, token %.8s…: %d %s, want 429 too_many_requests naming Authorization", tok, a.code, a.body)
		}
		if secs, err := strconv.Atoi(retry); err != nil || secs < 1 || secs > 20 {
			t.Errorf("Retry-After %q, want the seconds until the next failure is allowed (20 at three a minute)", retry)
		}
	}
	if n := store.lookups.Load(); n != 3 {
		t.Errorf("%d token lookups, want 3: a throttled address is refused before its token is looked up", n)
	}
}
