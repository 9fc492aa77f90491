package simagency_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/httpadapter"
	"github.com/spotflow/spotflow/workers/simagency"
)

// agencyServer is a simulated agency server under test, reached over HTTP.
type agencyServer struct {
	*simagency.Server
	url    string
	dir    string
	client *httpadapter.Client
}

// startServer starts a server simulating agencies with profiles, keeping its
// journals in dir.
func startServer(t *testing.T, dir string, profiles map[string]simagency.Profile, agencies ...string) *agencyServer {
	t.Helper()
	s, err := simagency.NewServer(simagency.ServerConfig{Dir: dir, Profiles: profiles, Agencies: agencies})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	c, err := httpadapter.New(httpadapter.Config{Endpoint: hs.URL + "/agencies/{agency}/work-items"})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return &agencyServer{Server: s, url: hs.URL, dir: dir, client: c}
}

func item(id, agency string) events.WorkItem {
	return events.WorkItem{
		Schema:      events.SchemaWorkItem,
		ID:          events.WorkItemID(id, agency),
		RequestID:   id,
		Agency:      agency,
		ServiceCode: "change-of-address",
		DeskID:      "desk-1",
		Citizen:     events.Citizen{NationalID: "12345678", Name: "Maria Silva"},
		SubmittedAt: time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC),
	}
}

func TestServer_AppliesARepeatedDeliveryOnce(t *testing.T) {
	t.Parallel()

	s := startServer(t, t.TempDir(), nil, "tax")
	it := item("r1", "tax")
	first, err := s.client.Deliver(t.Context(), it)
	if err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	second, err := s.client.Deliver(t.Context(), it)
	if err != nil {
		t.Fatalf("second delivery: %v", err)
	}
	if first.Status != events.StatusCompleted || second.Status != first.Status {
		t.Fatalf("statuses %q then %q, want completed twice", first.Status, second.Status)
	}
	if second.Note != "already received" {
		t.Errorf("second note = %q, want %q", second.Note, "already received")
	}
	logs, err := simagency.ReadJournals(s.dir)
	if err != nil {
		t.Fatalf("read journals: %v", err)
	}
	if got, want := logs["tax"][it.ID], (simagency.KeyLog{Status: events.StatusCompleted, Applied: 1, Duplicates: 1}); got != want {
		t.Fatalf("journal for %s = %+v, want %+v", it.ID, got, want)
	}
}

func TestServer_RemembersWhatItAppliedAcrossRestarts(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	profiles := map[string]simagency.Profile{"*": {RejectRate: 0.5}}
	first := startServer(t, dir, profiles, "tax")
	before := make(map[string]events.Status)
	for i := range 20 {
		it := item(fmt.Sprintf("r%d", i), "tax")
		r, err := first.client.Deliver(t.Context(), it)
		if err != nil {
			t.Fatalf("deliver %s: %v", it.ID, err)
		}
		before[it.ID] = r.Status
	}
	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	second := startServer(t, dir, map[string]simagency.Profile{"*": {RejectRate: 0}}, "tax")
	for id, status := range before {
		r, err := second.client.Deliver(t.Context(), item(strings.TrimSuffix(id, ".tax"), "tax"))
		if err != nil {
			t.Fatalf("redeliver %s: %v", id, err)
		}
		if r.Status != status || r.Note != "already received" {
			t.Fatalf("%s after restart = %+v, want %q already received", id, r, status)
		}
	}
	got := control(t, second, http.MethodGet, "tax", "")
	if got.Applied != 20 || got.Duplicates != 20 {
		t.Fatalf("control = %+v, want 20 applied and 20 duplicates", got)
	}
}

func TestServer_DecidesRejectionsAsTheInProcessAgencyDoes(t *testing.T) {
	t.Parallel()

	p := simagency.Profile{RejectRate: 0.3}
	s := startServer(t, t.TempDir(), map[string]simagency.Profile{"tax": p}, "tax")
	inProcess := simagency.New("tax", p)
	rejected := 0
	for i := range 100 {
		it := item(fmt.Sprintf("r%d", i), "tax")
		want, err := inProcess.Deliver(t.Context(), it)
		if err != nil {
			t.Fatalf("in-process delivery: %v", err)
		}
		got, err := s.client.Deliver(t.Context(), it)
		if err != nil {
			t.Fatalf("delivery: %v", err)
		}
		if got != want {
			t.Fatalf("%s: server answered %+v, the in-process agency %+v", it.ID, got, want)
		}
		if got.Status == events.StatusRejected {
			rejected++
		}
	}
	if rejected == 0 || rejected == 100 {
		t.Fatalf("%d of 100 rejected at a rate of 0.3", rejected)
	}
}

func TestServer_DownAgencyAnswers503AndTheClientRetries(t *testing.T) {
	t.Parallel()

	s := startServer(t, t.TempDir(), nil, "tax", "imt")
	if err := s.SetDown("tax", true); err != nil {
		t.Fatalf("set down: %v", err)
	}
	_, err := s.client.Deliver(t.Context(), item("r1", "tax"))
	var ra *httpadapter.RetryAfterError
	if err == nil || events.IsPermanent(err) || !errors.As(err, &ra) || ra.Delay != time.Second {
		t.Fatalf("err = %v, want a transient *RetryAfterError of 1s", err)
	}
	if _, err := s.client.Deliver(t.Context(), item("r1", "imt")); err != nil {
		t.Fatalf("another agency is down too: %v", err)
	}
	if err := s.SetDown("tax", false); err != nil {
		t.Fatalf("set up: %v", err)
	}
	r, err := s.client.Deliver(t.Context(), item("r1", "tax"))
	if err != nil || r.Status != events.StatusCompleted || r.Note != "" {
		t.Fatalf("delivery once back up = %+v, %v; want a first completion", r, err)
	}
	if err := s.SetDown("nope", true); !errors.Is(err, simagency.ErrUnknownAgency) {
		t.Fatalf("SetDown on an unknown agency: err = %v, want ErrUnknownAgency", err)
	}
}

func TestServer_TransientRateFailsCallsWithoutApplying(t *testing.T) {
	t.Parallel()

	s := startServer(t, t.TempDir(), map[string]simagency.Profile{"*": {TransientRate: 1}}, "tax")
	for i := range 5 {
		if _, err := s.client.Deliver(t.Context(), item(fmt.Sprintf("r%d", i), "tax")); err == nil || events.IsPermanent(err) {
			t.Fatalf("err = %v, want a transient error", err)
		}
	}
	if got := control(t, s, http.MethodGet, "tax", ""); got.Applied != 0 {
		t.Fatalf("applied %d work items while failing every call", got.Applied)
	}
}

// controlState mirrors the control endpoints' answer.
type controlState struct {
	Agency     string `json:"agency"`
	Down       bool   `json:"down"`
	Latency    string `json:"latency"`
	Applied    int    `json:"applied"`
	Duplicates int    `json:"duplicates"`
}

// control calls the control endpoint of agency and decodes a 200 answer.
func control(t *testing.T, s *agencyServer, method, agency, body string) controlState {
	t.Helper()
	code, data := call(t, method, s.url+"/control/"+agency, "application/json", nil, body)
	if code != http.StatusOK {
		t.Fatalf("%s /control/%s = %d %s", method, agency, code, data)
	}
	var st controlState
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("decode control answer %s: %v", data, err)
	}
	return st
}

func call(t *testing.T, method, url, contentType string, header map[string]string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func TestServer_ControlEndpointTogglesFaults(t *testing.T) {
	t.Parallel()

	s := startServer(t, t.TempDir(), map[string]simagency.Profile{"tax": {Latency: 5 * time.Millisecond}}, "tax")
	if got := control(t, s, http.MethodGet, "tax", ""); got != (controlState{Agency: "tax", Latency: "5ms"}) {
		t.Fatalf("initial state = %+v", got)
	}

	if got := control(t, s, http.MethodPut, "tax", `{"down": true}`); !got.Down || got.Latency != "5ms" {
		t.Fatalf("after down = %+v, want down with latency unchanged", got)
	}
	if _, err := s.client.Deliver(t.Context(), item("r1", "tax")); err == nil || events.IsPermanent(err) {
		t.Fatalf("delivery to a down agency: err = %v, want transient", err)
	}

	if got := control(t, s, http.MethodPut, "tax", `{"down": false, "latency": "0s"}`); got.Down || got.Latency != "0s" {
		t.Fatalf("after up = %+v, want up without latency", got)
	}
	for range 2 {
		if _, err := s.client.Deliver(t.Context(), item("r1", "tax")); err != nil {
			t.Fatalf("delivery once up: %v", err)
		}
	}
	if got := control(t, s, http.MethodGet, "tax", ""); got.Applied != 1 || got.Duplicates != 1 {
		t.Fatalf("counts = %+v, want 1 applied and 1 duplicate", got)
	}

	refusals := []struct {
		name, method, agency, body string
		want                       int
	}{
		{"an unknown agency is not found", http.MethodGet, "nope", "", http.StatusNotFound},
		{"setting an unknown agency is not found", http.MethodPut, "nope", `{"down": true}`, http.StatusNotFound},
		{"a latency that is not a duration is refused", http.MethodPut, "tax", `{"latency": "soon"}`, http.StatusBadRequest},
		{"a negative latency is refused", http.MethodPut, "tax", `{"latency": "-1s"}`, http.StatusBadRequest},
		{"an unknown setting is refused", http.MethodPut, "tax", `{"slow": true}`, http.StatusBadRequest},
		{"a body that is not JSON is refused", http.MethodPut, "tax", `down`, http.StatusBadRequest},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := call(t, tt.method, s.url+"/control/"+tt.agency, "application/json", nil, tt.body); code != tt.want {
				t.Fatalf("%s /control/%s %s = %d %s, want %d", tt.method, tt.agency, tt.body, code, body, tt.want)
			}
		})
	}
}

func TestServer_HonoursLatencyAndItsCallersCancellation(t *testing.T) {
	t.Parallel()

	s := startServer(t, t.TempDir(), nil, "tax")

	t.Run("a call takes at least the agency's latency", func(t *testing.T) {
		if err := s.SetLatency("tax", 150*time.Millisecond); err != nil {
			t.Fatalf("set latency: %v", err)
		}
		start := time.Now()
		if _, err := s.client.Deliver(t.Context(), item("r1", "tax")); err != nil {
			t.Fatalf("deliver: %v", err)
		}
		if took := time.Since(start); took < 150*time.Millisecond {
			t.Fatalf("call took %v, under the latency of 150ms", took)
		}
	})

	t.Run("a caller that gives up ends the call and nothing is applied", func(t *testing.T) {
		if err := s.SetLatency("tax", time.Minute); err != nil {
			t.Fatalf("set latency: %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := s.client.Deliver(ctx, item("r2", "tax"))
		if !errors.Is(err, context.DeadlineExceeded) || events.IsPermanent(err) {
			t.Fatalf("err = %v, want a transient deadline error", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("call took %v after its deadline", took)
		}
		if err := s.SetLatency("tax", 0); err != nil {
			t.Fatalf("set latency: %v", err)
		}
		r, err := s.client.Deliver(t.Context(), item("r2", "tax"))
		if err != nil || r.Note == "already received" {
			t.Fatalf("delivery after the abandoned one = %+v, %v; want a first application", r, err)
		}
	})
}

func TestServer_RefusesDeliveriesThatBreakTheContract(t *testing.T) {
	t.Parallel()

	s := startServer(t, t.TempDir(), nil, "tax")
	good, _ := json.Marshal(item("r1", "tax"))
	forImt, _ := json.Marshal(item("r1", "imt"))
	key := map[string]string{"Idempotency-Key": "r1.tax"}
	tests := []struct {
		name        string
		method      string
		agency      string
		contentType string
		header      map[string]string
		body        string
		want        int
	}{
		{"a well-formed delivery is applied", http.MethodPost, "tax", "application/json", key, string(good), http.StatusOK},
		{"an unknown agency is not found", http.MethodPost, "nope", "application/json", key, string(good), http.StatusNotFound},
		{"a missing Idempotency-Key is refused", http.MethodPost, "tax", "application/json", nil, string(good), http.StatusBadRequest},
		{"an Idempotency-Key other than the id is refused", http.MethodPost, "tax", "application/json",
			map[string]string{"Idempotency-Key": "r2.tax"}, string(good), http.StatusBadRequest},
		{"a body that is not JSON is refused", http.MethodPost, "tax", "application/json", key, "citizen", http.StatusBadRequest},
		{"JSON that is not a work item is refused", http.MethodPost, "tax", "application/json", key, `{"id":"r1.tax"}`, http.StatusBadRequest},
		{"a work item for another agency is unprocessable", http.MethodPost, "tax", "application/json",
			map[string]string{"Idempotency-Key": "r1.imt"}, string(forImt), http.StatusUnprocessableEntity},
		{"a body that is not declared JSON is refused", http.MethodPost, "tax", "text/plain", key, string(good), http.StatusUnsupportedMediaType},
		{"a GET of the work items is not allowed", http.MethodGet, "tax", "", nil, "", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, body := call(t, tt.method, s.url+"/agencies/"+tt.agency+"/work-items", tt.contentType, tt.header, tt.body)
			if code != tt.want {
				t.Fatalf("answer %d %s, want %d", code, body, tt.want)
			}
		})
	}

	t.Run("the client takes an unknown agency as a definitive refusal", func(t *testing.T) {
		t.Parallel()
		_, err := s.client.Deliver(t.Context(), item("r1", "nope"))
		if !events.IsPermanent(err) {
			t.Fatalf("err = %v, want permanent", err)
		}
	})
}

func TestServer_AnswersLikeAnAdapter(t *testing.T) {
	t.Parallel()

	// The server and the in-process agency are interchangeable behind
	// workers.Adapter.
	s := startServer(t, t.TempDir(), nil, "tax")
	for _, a := range []workers.Adapter{s.client, simagency.New("tax", simagency.Profile{})} {
		r, err := a.Deliver(t.Context(), item("r1", "tax"))
		if err != nil || r.Status != events.StatusCompleted {
			t.Fatalf("%T: %+v, %v; want completed", a, r, err)
		}
	}
}

func TestServer_FailsDeliveriesAfterClose(t *testing.T) {
	t.Parallel()

	s := startServer(t, t.TempDir(), nil, "tax")
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_, err := s.client.Deliver(t.Context(), item("r1", "tax"))
	var se *httpadapter.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusInternalServerError || events.IsPermanent(err) {
		t.Fatalf("err = %v, want a transient 500", err)
	}
}

func TestNewServer_ValidatesItsConfig(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		cfg  simagency.ServerConfig
	}{
		{"a server without a directory is refused", simagency.ServerConfig{Agencies: []string{"tax"}}},
		{"a server without agencies is refused", simagency.ServerConfig{Dir: t.TempDir()}},
		{"an agency code that is not a token is refused", simagency.ServerConfig{Dir: t.TempDir(), Agencies: []string{"tax", "../etc"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if s, err := simagency.NewServer(tt.cfg); err == nil {
				s.Close()
				t.Fatal("NewServer succeeded")
			}
		})
	}
}
