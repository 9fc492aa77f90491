package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/workers/dashboard"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// dashboardServer serves the dashboard over a store holding one completed
// change of address from desk-1 in lisboa.
func dashboardServer(t *testing.T) (*httptest.Server, *events.Request) {
	t.Helper()
	store := pgtest.Store(t)
	ctx := t.Context()
	if _, _, err := store.CreateDesk(ctx, "lisboa", "Loja do Cidadão Laranjeiras"); err != nil {
		t.Fatal(err)
	}
	req := eventstest.ChangeOfAddress(events.NewID(time.Now()))
	changes := []events.Change{{Request: req}, {Event: &events.StatusEvent{Schema: events.SchemaStatus,
		ID: events.EventID(req.ID, "", events.StatusRouted), RequestID: req.ID, Status: events.StatusRouted,
		At: req.SubmittedAt, Actor: events.SourceRouter, Agencies: []string{"tax"}}},
		{Event: &events.StatusEvent{Schema: events.SchemaStatus, ID: events.EventID(req.ID, "tax", events.StatusCompleted),
			RequestID: req.ID, Agency: "tax", Status: events.StatusCompleted, At: req.SubmittedAt.Add(time.Second),
			Actor: "agency:tax", Note: "done"}}}
	for _, err := range store.Project(ctx, changes) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.FoldRollups(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := dashboard.New(dashboard.Config{
		Store: store, Catalog: eventstest.Catalog(t), Every: 100 * time.Millisecond,
		Backlog: func(context.Context) ([]events.QueueBacklog, error) {
			return []events.QueueBacklog{{Agency: "tax", Pending: 7, AckPending: 2}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	t.Cleanup(d.Close)
	return srv, req
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestDashboard_ShowsAggregatesAndNoPersonalData(t *testing.T) {
	t.Parallel()
	srv, req := dashboardServer(t)
	status, page := get(t, srv.URL+"/dashboard?range=24h&municipality=lisboa")
	if status != http.StatusOK {
		t.Fatalf("GET /dashboard: %d", status)
	}
	for _, want := range []string{`data-figure="submitted" data-value="1"`, `data-figure="completed" data-value="1"`,
		`data-figure="backlog" data-value="9"`, `<option value="lisboa" selected>`,
		`<title id="throughput-title">`, `role="img"`, "last 24 hours"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, personal := range []string{req.ID, req.Citizen.NationalID, req.Citizen.Name, req.Mediator, "Rua Augusta"} {
		if strings.Contains(page, personal) {
			t.Errorf("the page shows %q: personal data or a request", personal)
		}
	}
	for _, asset := range []string{"/dashboard/assets/dashboard.css", "/dashboard/assets/dashboard.js"} {
		if status, _ := get(t, srv.URL+asset); status != http.StatusOK {
			t.Errorf("GET %s: %d", asset, status)
		}
	}
	status, body := get(t, srv.URL+"/dashboard/figures?range=bogus")
	var f struct {
		Range     string `json:"range"`
		Submitted int64  `json:"submitted"`
	}
	if err := json.Unmarshal([]byte(body), &f); status != http.StatusOK || err != nil || f.Range != "1h" || f.Submitted != 1 {
		t.Errorf("GET /dashboard/figures with a bad range: %d %s, want the last hour with 1 submitted", status, body)
	}
}

func TestDashboard_LiveStreamSendsFiguresRepeatedly(t *testing.T) {
	t.Parallel()
	srv, _ := dashboardServer(t)
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
