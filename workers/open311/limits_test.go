package open311_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/intaketest"
	"github.com/spotflow/spotflow/workers/open311"
	"github.com/spotflow/spotflow/workers/ratelimit"
)

func TestOpen311_RefusesAnAddressThatGuessedApiKeysTooOften(t *testing.T) {
	t.Parallel()
	d := intaketest.Start(t, nil)
	intake, err := workers.NewIntake(workers.IntakeConfig{Store: d.Store, Publisher: natsbus.NewPublisher(d.JS), Catalog: d.Catalog,
		FailedAuth: ratelimit.New(2.0/60, 2), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	api, err := open311.New(open311.Config{Intake: intake, Store: d.Store, Catalog: d.Catalog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	a := &deskAPI{Desk: d, srv: srv}
	for i := range 2 {
		if r := a.open311(t, "GET", "/open311/v2/requests.json", url.Values{"api_key": {"sfd_guess"}}); r.status != http.StatusForbidden {
			t.Fatalf("guess %d: %d, want 403", i+1, r.status)
		}
	}
	for _, key := range []string{"sfd_guess", d.Token} {
		r := a.open311(t, "GET", "/open311/v2/requests.json", url.Values{"api_key": {key}})
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "30" {
			t.Errorf("api_key %q after two guesses: %d, Retry-After %q; want 429 after 30 s", key, r.status, r.header.Get("Retry-After"))
		}
	}
	// What needs no api_key is still served.
	if r := a.open311(t, "GET", "/open311/v2/services.json", nil); r.status != http.StatusOK {
		t.Errorf("services after the guesses: %d", r.status)
	}
}
