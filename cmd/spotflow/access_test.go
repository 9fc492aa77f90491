package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// TestRun_GuardsTheDashboardAndMetricsBeyondLoopback binds HTTP to every
// address: the dashboard and /metrics then need an operator's credential,
// whether or not an operator token is configured: the configured token, a
// named machine credential in force, or a signed-in console session (of
// any role). A revoked credential and a disabled operator's session are
// refused at once; health stays open.
func TestRun_GuardsTheDashboardAndMetricsBeyondLoopback(t *testing.T) {
	t.Parallel()
	status := func(client *http.Client, m *Main, path, auth string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, local(m)+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	open := func(c *Config) { c.HTTPAddr = "0.0.0.0:0" }
	withToken := func(c *Config) { c.HTTPAddr, c.OperatorToken = "0.0.0.0:0", "s3cret-operator" }

	noToken, dbURL := startMain(t, "*:latency=1ms", open)
	guarded, _ := startMain(t, "*:latency=1ms", withToken)
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	ctx := t.Context()
	by := events.By{Actor: "operator:test"}
	prometheus, err := store.IssueOperatorToken(ctx, "prometheus", events.RoleViewer, by)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := store.IssueOperatorToken(ctx, "old-script", events.RoleOperator, by)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.RevokeOperatorToken(ctx, "old-script", by); err != nil {
		t.Fatal(err)
	}
	// Rui, a viewer, signed in to the console: his session's cookie.
	setup, err := store.CreateOperator(ctx, events.Operator{Username: "rui", Name: "Rui Lopes", Role: events.RoleViewer, Language: "pt"}, by)
	if err != nil {
		t.Fatal(err)
	}
	rui := newFormClient(t, local(noToken))
	const password = "rui's own long password"
	rui.post("/desk/ops/setup", rui.get("/desk/ops/setup?code="+url.QueryEscape(setup.Code)),
		url.Values{"code": {setup.Code}, "password": {password}, "password-again": {password}})
	rui.post("/desk/ops/sign-in", rui.get("/desk/ops/sign-in"), url.Values{"username": {"rui"}, "password": {password}, "next": {"/desk/ops/"}})

	for _, path := range []string{"/metrics", "/dashboard"} {
		// No operator token configured: the named ones and sessions.
		for auth, want := range map[string]int{
			"":                                http.StatusUnauthorized,
			"Bearer wrong":                    http.StatusUnauthorized,
			"Bearer s3cret-operator":          http.StatusUnauthorized, // the other process's
			"Bearer " + prometheus:            http.StatusOK,
			"Basic " + basic("x", prometheus): http.StatusOK,
			"Bearer " + revoked:               http.StatusUnauthorized,
			"Basic " + basic("x", revoked):    http.StatusUnauthorized,
		} {
			if got := status(http.DefaultClient, noToken, path, auth); got != want {
				t.Errorf("%s without an operator token configured, with %q: %d, want %d", path, auth, got, want)
			}
		}
		if got := status(rui.client, noToken, path, ""); got != http.StatusOK {
			t.Errorf("%s with a viewer's console session: %d, want 200", path, got)
		}
		// An operator token configured: it, as before.
		for auth, want := range map[string]int{
			"":                               http.StatusUnauthorized,
			"Bearer wrong":                   http.StatusUnauthorized,
			"Bearer s3cret-operator":         http.StatusOK,
			"Basic b3A6czNjcmV0LW9wZXJhdG9y": http.StatusOK, // op:s3cret-operator
		} {
			if got := status(http.DefaultClient, guarded, path, auth); got != want {
				t.Errorf("%s with %q: %d, want %d", path, auth, got, want)
			}
		}
	}

	// A revoked token is refused within seconds (the check trusts what
	// it recognised for 5 s); a disabled operator's session at once.
	if err := store.RevokeOperatorToken(ctx, "prometheus", by); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for status(http.DefaultClient, noToken, "/metrics", "Bearer "+prometheus) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("/metrics still takes a token revoked 15 s ago")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := store.DisableOperator(ctx, "rui", false, by); err != nil {
		t.Fatal(err)
	}
	if got := status(rui.client, noToken, "/dashboard", ""); got != http.StatusUnauthorized {
		t.Errorf("/dashboard with the session of an operator just disabled: %d, want 401", got)
	}
	for _, m := range []*Main{noToken, guarded} {
		if got := status(http.DefaultClient, m, "/healthz", ""); got != http.StatusOK {
			t.Errorf("/healthz: %d, want 200 to anyone", got)
		}
	}
}

// local is the address of m's HTTP server on the loopback interface.
func local(m *Main) string {
	_, port, _ := net.SplitHostPort(m.HTTPAddr())
	return "http://127.0.0.1:" + port
}

// basic is the credentials of HTTP Basic authentication.
func basic(user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return req.Header.Get("Authorization")[len("Basic "):]
}

func TestRun_StopsLookingUpTokensFromAnAddressThatGuessedTooOften(t *testing.T) {
	t.Parallel()
	m, dbURL := startMain(t, "*:latency=1ms", func(c *Config) { c.HTTPAddr, c.AuthFailures = "0.0.0.0:0", 3 })
	store := postgres.NewStore(pgtest.Pool(t, dbURL), nil)
	scraper, err := store.IssueOperatorToken(t.Context(), "prometheus", events.RoleViewer, events.By{Actor: "operator:test"})
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, local(m)+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if got := get(fmt.Sprintf("guess-%d", i)); got != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, got)
		}
	}
	// The address has guessed three times this minute: even a token in
	// force is no longer looked up from it.
	if got := get(scraper); got != http.StatusUnauthorized {
		t.Errorf("a token in force, never seen before, from an address past its failures: %d, want 401", got)
	}
}
