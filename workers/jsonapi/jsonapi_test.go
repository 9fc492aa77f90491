package jsonapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/spotflow/spotflow/workers/jsonapi"
)

func TestWriteError_AnswersTheErrorAndTellsWhoCountsRefusals(t *testing.T) {
	t.Parallel()
	var refused []string
	h := jsonapi.CountRefusals(func(code string) { refused = append(refused, code) }, func(w http.ResponseWriter, r *http.Request) {
		jsonapi.WriteError(w, http.StatusUnprocessableEntity, jsonapi.Error{Code: "invalid_value", Message: "postal_code is not a postal code", Field: "attributes.postal_code"})
	})
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("POST", "/v1/requests", nil))

	if rec.Code != http.StatusUnprocessableEntity || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("answered %d %q, want 422 as JSON", rec.Code, rec.Header().Get("Content-Type"))
	}
	var body map[string]map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	want := map[string]string{"code": "invalid_value", "message": "postal_code is not a postal code", "field": "attributes.postal_code"}
	for k, v := range want {
		if body["error"][k] != v {
			t.Errorf("error.%s = %q, want %q", k, body["error"][k], v)
		}
	}
	if len(refused) != 1 || refused[0] != "invalid_value" {
		t.Errorf("refusals counted %v, want [invalid_value]", refused)
	}
}

func TestWrite_LeavesOutAnEmptyFieldAndKeepsHTMLCharacters(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	jsonapi.WriteError(rec, http.StatusNotFound, jsonapi.Error{Code: "not_found", Message: "no <such> endpoint"})
	if got, want := rec.Body.String(), `{"error":{"code":"not_found","message":"no <such> endpoint"}}`+"\n"; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	if h := jsonapi.CountRefusals(nil, nil); h != nil {
		t.Error("CountRefusals without a counter wrapped the handler")
	}
}
