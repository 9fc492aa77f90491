package httpadapter_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/httpadapter"
)

const nationalID = "12345678"

func workItem(agency string) events.WorkItem {
	return events.WorkItem{
		Schema:       events.SchemaWorkItem,
		ID:           "req-1." + agency,
		RequestID:    "req-1",
		Agency:       agency,
		ServiceCode:  "change-of-address",
		DeskID:       "desk-1",
		Municipality: "lisboa",
		Citizen:      events.Citizen{NationalID: nationalID, Name: "Maria Silva"},
		Attributes:   map[string]json.RawMessage{"street": json.RawMessage(`"Rua Augusta 10"`)},
		SubmittedAt:  time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC),
	}
}

// serve starts a test server with h and returns a client for its
// work-items endpoint.
func serve(t *testing.T, h http.HandlerFunc) *httpadapter.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := httpadapter.New(httpadapter.Config{Endpoint: srv.URL + "/agencies/{agency}/work-items"})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

func TestClient_ClassifiesAnswersByStatus(t *testing.T) {
	t.Parallel()

	type outcome int
	const (
		ok outcome = iota
		transient
		permanent
	)
	retryDate := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name        string
		code        int
		body        string
		header      map[string]string
		want        outcome
		wantReceipt workers.Receipt
		hasDelay    bool          // the error must be a *RetryAfterError
		wantDelay   time.Duration // its delay, give or take two seconds
	}{
		{name: "a 200 with completed is a receipt", code: 200, body: `{"status":"completed"}`,
			want: ok, wantReceipt: workers.Receipt{Status: events.StatusCompleted}},
		{name: "a 201 with accepted and a note is a receipt", code: 201, body: `{"status":"accepted","note":"queued for review"}`,
			want: ok, wantReceipt: workers.Receipt{Status: events.StatusAccepted, Note: "queued for review"}},
		{name: "a 202 with in_progress is a receipt", code: 202, body: `{"status":"in_progress"}`,
			want: ok, wantReceipt: workers.Receipt{Status: events.StatusInProgress}},
		{name: "a 200 with rejected is a receipt and not an error", code: 200, body: `{"status":"rejected","note":"missing document"}`,
			want: ok, wantReceipt: workers.Receipt{Status: events.StatusRejected, Note: "missing document"}},
		{name: "a 200 with fields the adapter does not know is still a receipt", code: 200, body: `{"status":"completed","reference":"X-1"}`,
			want: ok, wantReceipt: workers.Receipt{Status: events.StatusCompleted}},
		{name: "a 200 whose body is not JSON is transient", code: 200, body: `<html>oops</html>`, want: transient},
		{name: "a 200 whose JSON is cut short is transient", code: 200, body: `{"status":"compl`, want: transient},
		{name: "a 200 with an unknown status is transient", code: 200, body: `{"status":"done"}`, want: transient},
		{name: "a 200 with a status agencies may not report is transient", code: 200, body: `{"status":"failed"}`, want: transient},
		{name: "a 204 without a body is transient", code: 204, want: transient},
		{name: "a redirect is transient and not followed", code: 307, header: map[string]string{"Location": "/elsewhere"}, want: transient},
		{name: "a 400 is a permanent refusal", code: 400, body: `{"error":"bad"}`, want: permanent},
		{name: "a 403 is a permanent refusal", code: 403, want: permanent},
		{name: "a 404 is a permanent refusal", code: 404, want: permanent},
		{name: "a 409 is a permanent refusal", code: 409, want: permanent},
		{name: "a 410 is a permanent refusal", code: 410, want: permanent},
		{name: "a 413 is a permanent refusal", code: 413, want: permanent},
		{name: "a 422 is a permanent refusal", code: 422, want: permanent},
		{name: "a 408 is transient", code: 408, want: transient},
		{name: "a 429 without Retry-After is transient without a delay", code: 429, want: transient},
		{name: "a 429 with Retry-After in seconds carries the delay", code: 429,
			header: map[string]string{"Retry-After": "7"}, want: transient, hasDelay: true, wantDelay: 7 * time.Second},
		{name: "a 503 with Retry-After in seconds carries the delay", code: 503,
			header: map[string]string{"Retry-After": "1"}, want: transient, hasDelay: true, wantDelay: time.Second},
		{name: "a 503 with Retry-After as a date carries the delay until then", code: 503,
			header: map[string]string{"Retry-After": retryDate}, want: transient, hasDelay: true, wantDelay: 30 * time.Second},
		{name: "a 503 with an unreadable Retry-After is transient without a delay", code: 503,
			header: map[string]string{"Retry-After": "soon"}, want: transient},
		{name: "a 500 is transient and its Retry-After is ignored", code: 500,
			header: map[string]string{"Retry-After": "5"}, want: transient},
		{name: "a 502 is transient", code: 502, want: transient},
		{name: "a 504 is transient", code: 504, want: transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := serve(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.code)
				io.WriteString(w, tt.body)
			})
			got, err := c.Deliver(t.Context(), workItem("tax"))

			switch tt.want {
			case ok:
				if err != nil {
					t.Fatalf("Deliver: %v", err)
				}
				if got != tt.wantReceipt {
					t.Fatalf("receipt = %+v, want %+v", got, tt.wantReceipt)
				}
				return
			case permanent:
				if err == nil || !events.IsPermanent(err) {
					t.Fatalf("err = %v, want a permanent error", err)
				}
			case transient:
				if err == nil || events.IsPermanent(err) {
					t.Fatalf("err = %v, want a transient error", err)
				}
			}
			if tt.code >= 300 {
				var se *httpadapter.StatusError
				if !errors.As(err, &se) || se.Code != tt.code {
					t.Fatalf("err = %v, want a *StatusError with code %d", err, tt.code)
				}
			}
			var ra *httpadapter.RetryAfterError
			switch {
			case errors.As(err, &ra) != tt.hasDelay:
				t.Fatalf("err = %v; RetryAfterError present = %v, want %v", err, !tt.hasDelay, tt.hasDelay)
			case tt.hasDelay && (ra.Delay > tt.wantDelay || ra.Delay < tt.wantDelay-2*time.Second):
				t.Fatalf("retry after %v, want about %v", ra.Delay, tt.wantDelay)
			}
		})
	}
}

func TestClient_SendsTheWorkItemWithItsIdempotencyKey(t *testing.T) {
	t.Parallel()

	type seen struct {
		method, path, contentType, key, auth string
		body                                 []byte
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{
			method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
			key: r.Header.Get("Idempotency-Key"), auth: r.Header.Get("Authorization"), body: body,
		}
		io.WriteString(w, `{"status":"accepted"}`)
	}))
	t.Cleanup(srv.Close)
	c, err := httpadapter.New(httpadapter.Config{
		Endpoint: srv.URL + "/agencies/{agency}/work-items",
		Header:   http.Header{"Authorization": {"Bearer agency-token"}, "Idempotency-Key": {"overridden"}},
	})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	item := workItem("civil-registry")
	if _, err := c.Deliver(t.Context(), item); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	s := <-got
	want, _ := json.Marshal(item)
	checks := []struct{ what, got, want string }{
		{"method", s.method, http.MethodPost},
		{"path, with the agency in place of {agency}", s.path, "/agencies/civil-registry/work-items"},
		{"Content-Type", s.contentType, "application/json"},
		{"Idempotency-Key", s.key, item.ID},
		{"Authorization from Config.Header", s.auth, "Bearer agency-token"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %q, want %q", ck.what, ck.got, ck.want)
		}
	}
	if !bytes.Equal(s.body, want) {
		t.Errorf("body = %s\nwant %s", s.body, want)
	}
	var back events.WorkItem
	if err := json.Unmarshal(s.body, &back); err != nil || back.Schema != events.SchemaWorkItem || back.ID != item.ID {
		t.Errorf("body does not decode to the work item: %v %+v", err, back)
	}
}

func TestClient_QuotesOnlyABoundedSnippetOfARefusal(t *testing.T) {
	t.Parallel()

	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(w, "unknown\x00service\n"+strings.Repeat("é", 10_000))
	})
	_, err := c.Deliver(t.Context(), workItem("tax"))
	var se *httpadapter.StatusError
	if !errors.As(err, &se) || !events.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent *StatusError", err)
	}
	if len(se.Body) > 200 || !strings.HasPrefix(se.Body, "unknown service ") {
		t.Errorf("snippet is %d bytes: %q; want at most 200 bytes starting with the answer, control characters replaced", len(se.Body), se.Body)
	}
	if !strings.Contains(err.Error(), "422") {
		t.Errorf("error %q does not name the status code", err)
	}
	if strings.Contains(err.Error(), nationalID) {
		t.Errorf("error %q carries the citizen's national ID", err)
	}
}

func TestNew_ValidatesTheEndpoint(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		endpoint string
		ok       bool
	}{
		{"an http URL with an agency placeholder is accepted", "http://127.0.0.1:9090/agencies/{agency}/work-items", true},
		{"an https URL without a placeholder is accepted", "https://tax.example.org/spotflow/work-items", true},
		{"an empty endpoint is refused", "", false},
		{"a relative URL is refused", "/agencies/{agency}/work-items", false},
		{"a URL without a host is refused", "http:///work-items", false},
		{"a scheme other than http or https is refused", "ftp://tax.example.org/work-items", false},
		{"a URL that does not parse is refused", "http://[::1/work-items", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := httpadapter.New(httpadapter.Config{Endpoint: tt.endpoint})
			if (err == nil) != tt.ok {
				t.Fatalf("New(%q) err = %v, want ok = %v", tt.endpoint, err, tt.ok)
			}
		})
	}
}
