package opsapi_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus/natstest"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/opsapi"
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
