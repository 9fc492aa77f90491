package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/eventstest"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// TestCitizen_ErasesFromTheCommandLineAndTheOperatorAPI runs the whole
// system, submits the requests of two citizens through the desk API, and
// erases one with `spotflow citizen erase --national-id -` (the ID read
// from standard input) and the other with POST /v1/ops/citizens/erase: each
// loses its keyed hash, keeps its status, and is audited with the
// operator's name, or the machine credential's, and the reason; the national ID is printed nowhere. The
// streams were provisioned with the configured max age.
func TestCitizen_ErasesFromTheCommandLineAndTheOperatorAPI(t *testing.T) {
	t.Parallel()
	const token = "op-token-for-erasure"
	m, dbURL := startMain(t, "*:latency=1ms", func(c *Config) { c.OperatorToken, c.StreamMaxAge = token, 3*24*time.Hour })
	streamsMaxAge(t, m, 3*24*time.Hour)
	pool := pgtest.Pool(t, dbURL)
	store := postgres.NewStore(pool, nil)
	ctx := t.Context()
	_, deskToken, err := store.CreateDesk(ctx, "lisboa", "Loja do Cidadão")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + m.HTTPAddr()
	citizens := map[string]string{"cli": "77788899", "api": "66655544"}
	ids := map[string]string{}
	for who, nid := range citizens {
		body := fmt.Sprintf(`{"service_code":"criminal-record-certificate","citizen":{"national_id":%q,"name":"Quitéria Apagada"},"attributes":{"purpose":"employment","copies":1}}`, nid)
		a := post(t, http.DefaultClient, base, deskToken, submission{key: "erase-" + who, body: body})
		if a.status != http.StatusAccepted {
			t.Fatalf("submit for %s: %+v", who, a)
		}
		ids[who] = a.id
	}
	workertest.WaitFor(t, "both requests to end", func() error {
		var ended int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE id = ANY($1) AND status IN ('completed', 'rejected', 'failed')`,
			[]string{ids["cli"], ids["api"]}).Scan(&ended)
		if err == nil && ended != 2 {
			err = fmt.Errorf("%d of 2 ended", ended)
		}
		return err
	})

	args := func(extra ...string) []string {
		return append(append([]string{"erase"}, extra...), "--database-url", dbURL, "--citizen-key", m.Config.CitizenKey,
			"--data-dir", t.TempDir(), "--log-level", "warn")
	}
	var stdout, stderr bytes.Buffer
	if err := citizen(ctx, args("--national-id", "-"), strings.NewReader(citizens["cli"]+"\n"), &stdout, &stderr); !errors.Is(err, errUsage) {
		t.Errorf("citizen erase without --reason: %v, want a usage error", err)
	}
	stdout.Reset()
	stderr.Reset()
	err = citizen(ctx, args("--national-id", "-", "--reason", "asked at the desk", "--operator", "ana"),
		strings.NewReader(citizens["cli"]+"\n"), &stdout, &stderr)
	if err != nil {
		t.Fatalf("citizen erase: %v\n%s", err, stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "erased 1 request(s): "+ids["cli"]) || !strings.Contains(out, "to tell of the erasure: justice") {
		t.Errorf("citizen erase printed %q, want the request and the agency it went to", out)
	}
	if strings.Contains(stdout.String()+stderr.String(), citizens["cli"]) {
		t.Errorf("citizen erase printed the national ID:\n%s%s", stdout.String(), stderr.String())
	}

	r, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/ops/citizens/erase", strings.NewReader(`{"national_id":"`+citizens["api"]+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	// Rui's script erases with his named machine credential; the header
	// that once named the operator names no one now.
	ruiToken, err := store.IssueOperatorToken(ctx, "rui", events.RoleOperator, events.By{Actor: "operator:ana"})
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+ruiToken)
	r.Header.Set("X-Operator", "mallory")
	r.Header.Set("X-Reason", "asked by letter")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var erased events.Erasure
	if err := json.Unmarshal(body, &erased); resp.StatusCode != http.StatusOK || err != nil || len(erased.Requests) != 1 || erased.Requests[0] != ids["api"] {
		t.Errorf("POST /v1/ops/citizens/erase: %d %s, want request %s erased", resp.StatusCode, body, ids["api"])
	}

	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE id = ANY($1) AND (citizen_ref IS NOT NULL OR erased_at IS NULL OR status NOT IN ('completed', 'rejected', 'failed'))`,
		[]string{ids["cli"], ids["api"]}).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d requests keep their citizen or lost their status (err %v)", left, err)
	}
	entries, err := store.AuditEntries(ctx, events.AuditQuery{Action: events.AuditCitizenErased})
	if err != nil || len(entries) != 2 {
		t.Fatalf("audited erasures %+v (err %v), want 2", entries, err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Actor] = e.Reason
	}
	if got["operator:ana"] != "asked at the desk" || got["token:rui"] != "asked by letter" {
		t.Errorf("audited erasures by %v, want operator:ana's and token:rui's with their reasons", got)
	}

	stdout.Reset()
	err = citizen(ctx, append(args("--national-id", "-", "--reason", "asked again"), "--citizen-key", strings.Repeat("cd", 32)),
		strings.NewReader(citizens["cli"]), &stdout, &stderr)
	if !errors.Is(err, postgres.ErrCitizenKeyMismatch) {
		t.Errorf("citizen erase under another citizen key: %v, want ErrCitizenKeyMismatch", err)
	}
}

func TestCitizen_NeedsEraseAndANationalID(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"citizen"}, {"citizen", "forget"}, {"citizen", "erase", "--reason", "asked"}} {
		if err := dispatch(t.Context(), args, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("spotflow %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
	if err := dispatch(t.Context(), []string{"citizen", "--help"}, io.Discard, io.Discard); err != nil {
		t.Errorf("spotflow citizen --help: %v", err)
	}
}

// TestConfig_RetentionAndStreamMaxAgeAreSettings reads the retention of
// requests and the streams' max age from flags and the environment, in days
// or as Go durations, refuses a retention the events stream outlives, and
// provisions the streams with the max age.
func TestConfig_RetentionAndStreamMaxAgeAreSettings(t *testing.T) {
	parse := func(args ...string) (Config, error) {
		var c Config
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.flags(fs, "")
		return c, fs.Parse(args)
	}
	c, err := parse()
	if err != nil || c.RequestRetention != 400*24*time.Hour || c.StreamMaxAge != natsbus.DefaultMaxAge {
		t.Errorf("defaults: retention %v, max age %v (err %v); want 400 days and 7", c.RequestRetention, c.StreamMaxAge, err)
	}
	c, err = parse("--request-retention", "30d", "--stream-max-age", "36h")
	if err != nil || c.RequestRetention != 30*24*time.Hour || c.StreamMaxAge != 36*time.Hour {
		t.Errorf("flags: retention %v, max age %v (err %v); want 30 days and 36h", c.RequestRetention, c.StreamMaxAge, err)
	}
	if err := c.checkRetention(); err != nil {
		t.Errorf("30 days against 36h: %v", err)
	}
	for _, bad := range []string{"-3d", "forever", "3w"} {
		if _, err := parse("--request-retention", bad); err == nil {
			t.Errorf("--request-retention %s: no error", bad)
		}
	}
	t.Setenv("SPOTFLOW_REQUEST_RETENTION", "0")
	t.Setenv("SPOTFLOW_STREAM_MAX_AGE", "2d")
	if c, err = parse(); err != nil || c.RequestRetention != 0 || c.StreamMaxAge != 48*time.Hour {
		t.Errorf("environment: retention %v, max age %v (err %v); want 0 (for ever) and 2 days", c.RequestRetention, c.StreamMaxAge, err)
	}
	if err := c.checkRetention(); err != nil {
		t.Errorf("keeping requests for ever: %v", err)
	}
	c.RequestRetention = 2 * 24 * time.Hour
	if err := c.checkRetention(); err == nil || !strings.Contains(err.Error(), "--stream-max-age (2d)") {
		t.Errorf("a retention no longer than the stream's max age: %v, want a refusal", err)
	}
	if err := (&Config{RequestRetention: 7 * 24 * time.Hour}).checkRetention(); err == nil {
		t.Error("the zero Config's max age outlives a 7-day retention: no error")
	}

	m := &Main{Config: Config{StreamMaxAge: 36 * time.Hour}}
	if got := m.topology(eventstest.Catalog(t)).MaxAge; got != 36*time.Hour {
		t.Errorf("the topology's max age is %v, want 36h", got)
	}
}

// streamsMaxAge checks that m provisioned the events and advisories streams
// with max age want.
func streamsMaxAge(t *testing.T, m *Main, want time.Duration) {
	t.Helper()
	for _, name := range []string{events.EventsStream, events.AdvisoryStream} {
		s, err := m.JetStream().Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.MaxAge != want {
			t.Errorf("stream %s keeps messages %v, want %v", name, info.Config.MaxAge, want)
		}
	}
}
