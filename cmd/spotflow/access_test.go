package main

import (
	"net"
	"net/http"
	"testing"
)

// TestRun_GuardsTheDashboardAndMetricsBeyondLoopback binds HTTP to every
// address: the dashboard and /metrics then need the operator's token, and
// without one configured they are refused outright; health stays open.
func TestRun_GuardsTheDashboardAndMetricsBeyondLoopback(t *testing.T) {
	t.Parallel()
	status := func(m *Main, path, auth string) int {
		t.Helper()
		_, port, _ := net.SplitHostPort(m.HTTPAddr())
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+port+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	open := func(c *Config) { c.HTTPAddr = "0.0.0.0:0" }
	withToken := func(c *Config) { c.HTTPAddr, c.OperatorToken = "0.0.0.0:0", "s3cret-operator" }

	noToken, _ := startMain(t, "*:latency=1ms", open)
	guarded, _ := startMain(t, "*:latency=1ms", withToken)
	for _, path := range []string{"/metrics", "/dashboard"} {
		if got := status(noToken, path, ""); got != http.StatusForbidden {
			t.Errorf("%s beyond loopback without an operator token set: %d, want 403", path, got)
		}
		for auth, want := range map[string]int{
			"":                               http.StatusUnauthorized,
			"Bearer wrong":                   http.StatusUnauthorized,
			"Bearer s3cret-operator":         http.StatusOK,
			"Basic b3A6czNjcmV0LW9wZXJhdG9y": http.StatusOK, // op:s3cret-operator
		} {
			if got := status(guarded, path, auth); got != want {
				t.Errorf("%s with %q: %d, want %d", path, auth, got, want)
			}
		}
	}
	if got := status(noToken, "/healthz", ""); got != http.StatusOK {
		t.Errorf("/healthz: %d, want 200 to anyone", got)
	}
}
