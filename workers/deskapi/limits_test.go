package deskapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers"
	"github.com/spotflow/spotflow/workers/deskapi"
	"github.com/spotflow/spotflow/workers/intaketest"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/ratelimit"
)

// countingStore counts the credentials intake looks up in Postgres.
type countingStore struct {
	*postgres.Store
	lookups atomic.Int64
}

func (c *countingStore) AuthenticateDesk(ctx context.Context, token string) (events.DeskAuthentication, error) {
	c.lookups.Add(1)
	return c.Store.AuthenticateDesk(ctx, token)
}

func TestDeskAPI_RefusesAnAddressThatFailedTooOftenWithoutLookingItsTokenUp(t *testing.T) {
	t.Parallel()
	d := intaketest.Start(t, nil)
	store := &countingStore{Store: d.Store}
	intake, err := workers.NewIntake(workers.IntakeConfig{Store: store, Publisher: natsbus.NewPublisher(d.JS), Catalog: d.Catalog,
		FailedAuth: ratelimit.New(3.0/60, 3), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	api, err := deskapi.New(deskapi.Config{Intake: intake, Store: d.Store, Catalog: d.Catalog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	api2 := &deskAPI{Desk: d, srv: srv}

	for i := range 3 {
		if r := api2.do(t, call{method: http.MethodGet, path: "/v1/requests/x", token: "sfd_guess"}); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, r.status)
		}
	}
	if n := store.lookups.Load(); n != 3 {
		t.Fatalf("%d lookups for three guesses, want 3", n)
	}
	for _, token := range []string{"sfd_guess", "", d.Token} {
		r := api2.do(t, call{method: http.MethodGet, path: "/v1/requests/x", token: token})
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "20" {
			t.Errorf("token %q after three failures: %d, Retry-After %q; want 429 after 20 s", token, r.status, r.header.Get("Retry-After"))
		} else if e := r.err(t); e.Code != "too_many_requests" || e.Field != "Authorization" {
			t.Errorf("token %q after three failures: %+v", token, e)
		}
	}
	if n := store.lookups.Load(); n != 3 {
		t.Errorf("%d lookups in all: a refused address had its token looked up", n)
	}
}

func TestDeskAPI_RefusesADeskOverItsRateWith429AndLetsTheOthersIn(t *testing.T) {
	t.Parallel()
	d := intaketest.Start(t, nil)
	limits, err := workers.NewDeskLimits(workers.DeskLimitsConfig{Rate: 0.5, Burst: 2})
	if err != nil {
		t.Fatal(err)
	}
	intake, err := workers.NewIntake(workers.IntakeConfig{Store: d.Store, Publisher: natsbus.NewPublisher(d.JS), Catalog: d.Catalog,
		Limits: limits, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	api, err := deskapi.New(deskapi.Config{Intake: intake, Store: d.Store, Catalog: d.Catalog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	noisy := &deskAPI{Desk: d, srv: srv}

	mustAccept(t, noisy.submit(t, "rate-1", changeOfAddressBody))
	mustAccept(t, noisy.submit(t, "rate-2", changeOfAddressBody))
	r := noisy.submit(t, "rate-3", changeOfAddressBody)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "2" {
		t.Fatalf("third at once: %d, Retry-After %q; want 429, 2", r.status, r.header.Get("Retry-After"))
	}
	if e := r.err(t); e.Code != "too_many_requests" || !strings.Contains(e.Message, "rate") {
		t.Errorf("third at once: %+v", e)
	}
	// Nothing of the refused one was stored.
	var keys int
	if err := d.Store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM intake_keys WHERE idempotency_key = 'rate-3'`).Scan(&keys); err != nil || keys != 0 {
		t.Errorf("the refused submission's key was claimed (%d, %v)", keys, err)
	}
	// Another desk has a bucket of its own.
	_, other, err := d.Store.CreateDesk(t.Context(), "lisboa", "Another desk")
	if err != nil {
		t.Fatal(err)
	}
	mustAccept(t, noisy.do(t, call{method: "POST", path: "/v1/requests", token: other, contentType: "application/json", key: "rate-1", body: changeOfAddressBody}))
}
