package opsapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/opsapi"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// TestAPI_ListsShowsAndReplaysDeadLettersForOperatorsOnly drives the API
// with a named machine credential of the operator role: what it views and
// replays is audited under its name, whatever X-Operator says; the
// configured token acts as token:operator-token; an unknown token is
// refused.
func TestAPI_ListsShowsAndReplaysDeadLettersForOperatorsOnly(t *testing.T) {
	t.Parallel()
	store := pgtest.Store(t)
	js := natstest.JetStream(t, "justice")
	req := events.Request{
		Schema: events.SchemaRequest, ID: "req-ops", DeskID: "desk-1", Municipality: "lisboa",
		ServiceCode: "criminal-record-certificate", SubmittedAt: time.Now().UTC(),
		Citizen: events.Citizen{NationalID: "98765432", Name: "Rui Costa"},
	}
	item := deadLetterOf(t, store, &req)
	script := issue(t, store, "replay-script", events.RoleOperator)

	if err := store.RegisterOperatorToken(t.Context(), "operator-token", "op-secret"); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, opsapi.Config{Store: store, Replayer: workers.NewReplayer(store, js), Tokens: store, Logger: slog.New(slog.DiscardHandler)})
	call := func(method, path, token string) (int, map[string]json.RawMessage) {
		t.Helper()
		r, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("X-Operator", "rui") // no longer read: the credential names who acts
		r.Header.Set("X-Reason", "checking why it failed")
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}

	for _, token := range []string{"desk-token", "", script + "x", "sfo_"} {
		if code, _ := call("GET", "/v1/ops/dead-letters", token); code != http.StatusUnauthorized {
			t.Errorf("with the token %q: %d, want 401", token, code)
		}
	}
	code, body := call("GET", "/v1/ops/dead-letters?agency=justice", script)
	var list []events.DeadLetter
	if err := json.Unmarshal(body["dead_letters"], &list); code != http.StatusOK || err != nil || len(list) != 1 {
		t.Fatalf("list: %d %s", code, body["dead_letters"])
	}
	if strings.Contains(string(body["dead_letters"]), req.Citizen.NationalID) {
		t.Error("the list shows the citizen's national ID")
	}
	if code, _ := call("GET", "/v1/ops/dead-letters?agency=tax", script); code != http.StatusOK {
		t.Errorf("list of another agency: %d", code)
	}
	if code, _ := call("GET", fmt.Sprintf("/v1/ops/dead-letters/%d", list[0].ID), script); code != http.StatusOK {
		t.Errorf("show: %d", code)
	}
	if code, _ := call("GET", fmt.Sprintf("/v1/ops/dead-letters/%d", list[0].ID), "op-secret"); code != http.StatusOK {
		t.Errorf("show with the configured token: %d", code)
	}
	if got, want := auditTrail(t, store, events.AuditDeadLetterViewed), []string{
		"token:replay-script: checking why it failed", "token:operator-token: checking why it failed",
	}; !slices.Equal(got, want) {
		t.Errorf("the views are in the audit log as %q, want %q", got, want)
	}
	unexplained, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+fmt.Sprintf("/v1/ops/dead-letters/%d", list[0].ID), nil)
	unexplained.Header.Set("Authorization", "Bearer "+script)
	resp, err := srv.Client().Do(unexplained)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("show without a reason: %s, want 400", resp.Status)
	}
	if code, _ := call("GET", "/v1/ops/dead-letters/999999", script); code != http.StatusNotFound {
		t.Errorf("show unknown: %d, want 404", code)
	}
	if code, body := call("GET", "/v1/ops/dead-letters/seven", script); code != http.StatusBadRequest || !strings.Contains(string(body["error"]), `"field":"id"`) {
		t.Errorf("show a bad id: %d %s, want 400 naming the id", code, body["error"])
	}

	code, body = call("POST", "/v1/ops/dead-letters/replay?agency=justice", script)
	if want := fmt.Sprintf("[%d]", list[0].ID); code != http.StatusAccepted || string(body["replayed"]) != want {
		t.Fatalf("replay all: %d %s, want 202 replaying %s", code, body["replayed"], want)
	}
	var replayed events.WorkItem
	for _, m := range natstest.Messages(t, js, events.WorkStream) {
		if err := json.Unmarshal(m.Data, &replayed); err != nil {
			t.Fatal(err)
		}
	}
	if replayed.ID != item.ID || replayed.Round != 1 {
		t.Errorf("the work queue holds %+v, want work item %s again in round 1", replayed, item.ID)
	}
	if got, want := auditTrail(t, store, events.AuditReplay), []string{"token:replay-script: checking why it failed"}; !slices.Equal(got, want) {
		t.Errorf("the replay is in the audit log as %q, want %q", got, want)
	}
	if code, body := call("POST", "/v1/ops/dead-letters/replay?agency=justice", script); code != http.StatusAccepted || string(body["replayed"]) != "[]" {
		t.Errorf("replay all again: %d %s, want nothing left to replay", code, body["replayed"])
	}

	// Revoked, the credential is refused at its next request.
	if err := store.RevokeOperatorToken(t.Context(), "replay-script", events.By{Actor: "operator:ana"}); err != nil {
		t.Fatal(err)
	}
	if code, _ := call("GET", "/v1/ops/dead-letters", script); code != http.StatusUnauthorized {
		t.Errorf("a revoked token: %d, want 401", code)
	}
	if code, _ := call("POST", fmt.Sprintf("/v1/ops/dead-letters/%d/replay", list[0].ID), script); code != http.StatusUnauthorized {
		t.Errorf("a replay with a revoked token: %d, want 401", code)
	}
	if got := auditTrail(t, store, events.AuditReplay); len(got) != 1 {
		t.Errorf("replays audited after the revocation: %q", got)
	}
}

// TestAPI_AViewerCredentialMayOnlyList issues a viewer's credential: it
// lists dead letters, and is refused, 403, everything that reads a
// message or changes anything, which is then neither done nor audited.
func TestAPI_AViewerCredentialMayOnlyList(t *testing.T) {
	t.Parallel()
	store := pgtest.Store(t)
	js := natstest.JetStream(t, "justice")
	req := events.Request{
		Schema: events.SchemaRequest, ID: "req-viewer", DeskID: "desk-1", Municipality: "lisboa",
		ServiceCode: "criminal-record-certificate", SubmittedAt: time.Now().UTC(),
		Citizen: events.Citizen{NationalID: "98765432", Name: "Rui Costa"},
	}
	deadLetterOf(t, store, &req)
	viewer := issue(t, store, "prometheus", events.RoleViewer)
	// Tokens alone: no configured token.
	srv := serve(t, opsapi.Config{Store: store, Replayer: workers.NewReplayer(store, js), Tokens: store, Logger: slog.New(slog.DiscardHandler)})
	call := func(method, path, body string) (int, string) {
		t.Helper()
		r, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+viewer)
		r.Header.Set("X-Reason", "curious")
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := call("GET", "/v1/ops/dead-letters", "")
	var list struct {
		DeadLetters []events.DeadLetter `json:"dead_letters"`
	}
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list.DeadLetters) != 1 {
		t.Fatalf("a viewer lists: %d %s, want 200 and the dead letter", code, body)
	}
	id := list.DeadLetters[0].ID
	for _, c := range []struct{ method, path, body string }{
		{"GET", fmt.Sprintf("/v1/ops/dead-letters/%d", id), ""},
		{"POST", fmt.Sprintf("/v1/ops/dead-letters/%d/replay", id), ""},
		{"POST", "/v1/ops/dead-letters/replay", ""},
		{"POST", "/v1/ops/citizens/erase", `{"national_id":"98765432"}`},
	} {
		if code, body := call(c.method, c.path, c.body); code != http.StatusForbidden || !strings.Contains(body, `"forbidden"`) {
			t.Errorf("a viewer's %s %s: %d %s, want 403 forbidden", c.method, c.path, code, body)
		}
	}
	if n := natstest.StreamMessages(t, js, events.WorkStream); n != 0 {
		t.Errorf("a viewer's refused replays put %d messages in the work queue", n)
	}
	var acted int
	if err := store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM audit_log WHERE actor = 'token:prometheus'`).Scan(&acted); err != nil || acted != 0 {
		t.Errorf("the viewer's refused requests left %d audit entries (err %v)", acted, err)
	}
	if code := callWith(t, srv, "op-secret"); code != http.StatusUnauthorized {
		t.Errorf("the operator token, when none is configured: %d, want 401", code)
	}
}

func TestNew_RequiresTokensOrAToken(t *testing.T) {
	t.Parallel()
	store := pgtest.Store(t)
	js := natstest.JetStream(t, "justice")
	if _, err := opsapi.New(opsapi.Config{Store: store, Replayer: workers.NewReplayer(store, js)}); err == nil {
		t.Error("New without Tokens nor Token succeeded: no one could use the API")
	}
}

// issue issues a named machine credential of role on behalf of operator
// ana, and returns its token.
func issue(t *testing.T, store *postgres.Store, name string, role events.OperatorRole) string {
	t.Helper()
	token, err := store.IssueOperatorToken(t.Context(), name, role, events.By{Actor: "operator:ana"})
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// serve serves the operator API of cfg for the test.
func serve(t *testing.T, cfg opsapi.Config) *httptest.Server {
	t.Helper()
	ops, err := opsapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ops)
	t.Cleanup(srv.Close)
	return srv
}

// callWith lists the dead letters presenting token and returns the status.
func callWith(t *testing.T, srv *httptest.Server, token string) int {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/v1/ops/dead-letters", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+token)
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// auditTrail lists the audit log's entries of action, oldest first, as
// "actor: reason".
func auditTrail(t *testing.T, store *postgres.Store, action events.AuditAction) []string {
	t.Helper()
	rows, err := store.Pool().Query(t.Context(), `SELECT actor || ': ' || reason FROM audit_log WHERE action = $1 ORDER BY id`, string(action))
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestAPI_ErasesACitizenForAnOperatorWhoSaysWhy erases a citizen through the
// operator API: without a reason or with a malformed body it refuses; with
// them it answers what was erased, audited under the credential's name
// (token:operator-token, for the configured token); the citizen's dead
// letter then cannot be replayed, and replaying every dead letter passes
// over it.
func TestAPI_ErasesACitizenForAnOperatorWhoSaysWhy(t *testing.T) {
	t.Parallel()
	store := pgtest.Store(t)
	js := natstest.JetStream(t, "justice")
	req := &events.Request{
		Schema: events.SchemaRequest, ID: events.NewID(time.Now()), DeskID: "desk-1", Municipality: "lisboa",
		ServiceCode: "criminal-record-certificate", SubmittedAt: time.Now().UTC().Truncate(time.Second),
		Citizen: events.Citizen{NationalID: "55566677", Name: "Rui Costa"},
	}
	for _, err := range store.Project(t.Context(), []events.Change{{Request: req}}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	deadLetterOf(t, store, req)
	var logs strings.Builder
	if err := store.RegisterOperatorToken(t.Context(), "operator-token", "op-secret"); err != nil {
		t.Fatal(err)
	}
	ops, err := opsapi.New(opsapi.Config{Store: store, Replayer: workers.NewReplayer(store, js), Tokens: store,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ops)
	t.Cleanup(srv.Close)
	call := func(method, path, reason, body string) (int, string) {
		t.Helper()
		r, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer op-secret")
		r.Header.Set("X-Operator", "rui") // no longer read
		if reason != "" {
			r.Header.Set("X-Reason", reason)
		}
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		return resp.StatusCode, b.String()
	}

	for _, tc := range []struct {
		reason, body, field string
	}{
		{"", `{"national_id":"55566677"}`, "X-Reason"},
		{"asked at the desk", `{"national_id":"55566677","name":"Rui Costa"}`, "body"},
		{"asked at the desk", `{"national_id":"55566677"} {}`, "body"},
		{"asked at the desk", `{}`, "national_id"},
		{"asked at the desk", `{"national_id":"55 56 66"}`, "national_id"},
	} {
		code, body := call("POST", "/v1/ops/citizens/erase", tc.reason, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(body, `"field":"`+tc.field+`"`) {
			t.Errorf("erase with reason %q and body %s: %d %s, want 400 naming %s", tc.reason, tc.body, code, body, tc.field)
		}
		if strings.Contains(body, "55566677") || strings.Contains(body, "55 56 66") {
			t.Errorf("the refusal repeats the national ID: %s", body)
		}
	}
	if n := erasedRequests(t, store); n != 0 {
		t.Fatalf("refused erasures erased %d requests", n)
	}

	code, body := call("POST", "/v1/ops/citizens/erase", "asked at the desk, ticket 12", `{"national_id":"55566677"}`)
	var erased events.Erasure
	if err := json.Unmarshal([]byte(body), &erased); code != http.StatusOK || err != nil || len(erased.Requests) != 1 || erased.Requests[0] != req.ID || erased.DeadLetters != 1 {
		t.Fatalf("erase: %d %s, want 200 naming request %s and its dead letter", code, body, req.ID)
	}
	if strings.Contains(body, "55566677") || strings.Contains(body, "Rui Costa") || strings.Contains(logs.String(), "55566677") {
		t.Errorf("the national ID or name is in the answer %s or the log %s", body, logs.String())
	}
	var audited string
	if err := store.Pool().QueryRow(t.Context(), `SELECT actor || ' ' || target || ' ' || reason FROM audit_log WHERE action = 'citizen_erased'`).Scan(&audited); err != nil ||
		audited != "token:operator-token "+erased.ID+" asked at the desk, ticket 12" {
		t.Errorf("audited %q (err %v), want the operator token's erasure with the reason", audited, err)
	}

	dead, err := store.ListDeadLetters(t.Context(), events.DeadLetterQuery{Agency: "justice"})
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters %v (err %v)", dead, err)
	}
	path := fmt.Sprintf("/v1/ops/dead-letters/%d", dead[0].ID)
	if code, body := call("GET", path, "checking", ""); code != http.StatusOK || !strings.Contains(body, `"request_id":"`+req.ID+`"`) {
		t.Errorf("show the erased dead letter: %d %s, want its record", code, body)
	}
	if code, body := call("POST", path+"/replay", "", ""); code != http.StatusGone || !strings.Contains(body, "message_deleted") {
		t.Errorf("replay the erased dead letter: %d %s, want 410 message_deleted", code, body)
	}
	// It no longer waits for a replay: replaying all passes it over.
	if pending, err := store.ListDeadLetters(t.Context(), events.DeadLetterQuery{Agency: "justice", Pending: true}); err != nil || len(pending) != 0 {
		t.Errorf("pending dead letters %v (err %v), want none: an erased one cannot be replayed", pending, err)
	}
	if code, body := call("POST", "/v1/ops/dead-letters/replay", "", ""); code != http.StatusAccepted || !strings.Contains(body, `"replayed":[]`) {
		t.Errorf("replay all: %d %s, want 202 replaying nothing", code, body)
	}
	if n := natstest.StreamMessages(t, js, events.WorkStream); n != 0 {
		t.Errorf("the work queue holds %d messages, want none", n)
	}
}

func erasedRequests(t *testing.T, store interface {
	Pool() *pgxpool.Pool
}) int {
	t.Helper()
	var n int
	if err := store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM requests WHERE erased_at IS NOT NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// deadLetterOf records req's work item for justice as a dead letter,
// refused by the agency, and returns the work item.
func deadLetterOf(t *testing.T, store *postgres.Store, req *events.Request) events.WorkItem {
	t.Helper()
	item := req.WorkItemFor("justice")
	payload, err := json.Marshal(item)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.RecordDeadLetter(t.Context(), events.DeadLetter{
		Stream: events.WorkStream, StreamSeq: 7, Subject: events.WorkSubject("justice"), RequestID: req.ID, WorkItemID: item.ID,
		Agency: "justice", Reason: events.ReasonPermanent, LastError: "refused", Attempts: 1, Payload: payload,
	}); err != nil {
		t.Fatal(err)
	}
	return item
}
