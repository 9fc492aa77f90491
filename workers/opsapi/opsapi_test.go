package opsapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/opsapi"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

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

	ops, err := opsapi.New(opsapi.Config{Store: store, Replayer: workers.NewReplayer(store, js), Token: "op-secret", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ops)
	t.Cleanup(srv.Close)
	call := func(method, path, token string) (int, map[string]json.RawMessage) {
		t.Helper()
		r, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("X-Operator", "rui")
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

	if code, _ := call("GET", "/v1/ops/dead-letters", "desk-token"); code != http.StatusUnauthorized {
		t.Errorf("without the operator token: %d, want 401", code)
	}
	code, body := call("GET", "/v1/ops/dead-letters?agency=justice", "op-secret")
	var list []events.DeadLetter
	if err := json.Unmarshal(body["dead_letters"], &list); code != http.StatusOK || err != nil || len(list) != 1 {
		t.Fatalf("list: %d %s", code, body["dead_letters"])
	}
	if strings.Contains(string(body["dead_letters"]), req.Citizen.NationalID) {
		t.Error("the list shows the citizen's national ID")
	}
	if code, _ := call("GET", "/v1/ops/dead-letters?agency=tax", "op-secret"); code != http.StatusOK {
		t.Errorf("list of another agency: %d", code)
	}
	if code, _ := call("GET", fmt.Sprintf("/v1/ops/dead-letters/%d", list[0].ID), "op-secret"); code != http.StatusOK {
		t.Errorf("show: %d", code)
	}
	var reason string
	if err := store.Pool().QueryRow(t.Context(), `SELECT actor || ': ' || reason FROM audit_log WHERE action = 'dead_letter_viewed'`).Scan(&reason); err != nil || reason != "operator:rui: checking why it failed" {
		t.Errorf("the view is in the audit log as %q (%v), want rui's, with the reason", reason, err)
	}
	unexplained, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+fmt.Sprintf("/v1/ops/dead-letters/%d", list[0].ID), nil)
	unexplained.Header.Set("Authorization", "Bearer op-secret")
	resp, err := srv.Client().Do(unexplained)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("show without a reason: %s, want 400", resp.Status)
	}
	if code, _ := call("GET", "/v1/ops/dead-letters/999999", "op-secret"); code != http.StatusNotFound {
		t.Errorf("show unknown: %d, want 404", code)
	}
	if code, body := call("GET", "/v1/ops/dead-letters/seven", "op-secret"); code != http.StatusBadRequest || !strings.Contains(string(body["error"]), `"field":"id"`) {
		t.Errorf("show a bad id: %d %s, want 400 naming the id", code, body["error"])
	}

	code, body = call("POST", "/v1/ops/dead-letters/replay?agency=justice", "op-secret")
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
	var actor string
	if err := store.Pool().QueryRow(t.Context(), `SELECT actor FROM audit_log`).Scan(&actor); err != nil || actor != "operator:rui" {
		t.Errorf("audit actor %q (err %v), want operator:rui", actor, err)
	}
	if code, body := call("POST", "/v1/ops/dead-letters/replay?agency=justice", "op-secret"); code != http.StatusAccepted || string(body["replayed"]) != "[]" {
		t.Errorf("replay all again: %d %s, want nothing left to replay", code, body["replayed"])
	}
}

// TestAPI_ErasesACitizenForAnOperatorWhoSaysWhy erases a citizen through the
// operator API: without a reason or with a malformed body it refuses; with
// them it answers what was erased, audited under the operator's name; the
// citizen's dead letter then cannot be replayed, and replaying every dead
// letter passes over it.
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
	ops, err := opsapi.New(opsapi.Config{Store: store, Replayer: workers.NewReplayer(store, js), Token: "op-secret",
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
		r.Header.Set("X-Operator", "rui")
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
		audited != "operator:rui "+erased.ID+" asked at the desk, ticket 12" {
		t.Errorf("audited %q (err %v), want rui's erasure with the reason", audited, err)
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
