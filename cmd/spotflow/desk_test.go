package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

// issued is what desk create, issue and rotate print.
func issued(t *testing.T, out string) issuedDesk {
	t.Helper()
	var d issuedDesk
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.DeskID == "" || d.Key == "" || !strings.HasPrefix(d.Token, "sfd_") {
		t.Fatalf("printed %q (err %v), want a desk id, a key and a token", out, err)
	}
	return d
}

// listed runs desk list --json and returns the desk id's credentials by key.
func listed(t *testing.T, cli func(args ...string) string, deskID string) map[string]events.DeskCredential {
	t.Helper()
	var desks []events.DeskListing
	if err := json.Unmarshal([]byte(cli("desk", "list", "--json")), &desks); err != nil {
		t.Fatal(err)
	}
	for _, d := range desks {
		if d.ID == deskID {
			out := map[string]events.DeskCredential{}
			for _, c := range d.Credentials {
				out[c.Key] = c
			}
			return out
		}
	}
	t.Fatalf("desk list shows no desk %s: %+v", deskID, desks)
	return nil
}

// TestDesk_CommandsIssueRotateExpireRevokeAndListCredentials runs `spotflow
// desk` as an operator would through a desk's credentials' life, and finds
// every step in the audit log under the operator's name.
func TestDesk_CommandsIssueRotateExpireRevokeAndListCredentials(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Schema(t)
	cli := commandsOn(t, dbURL)

	created := issued(t, cli("desk", "create", "--municipality", "lisboa", "--name", "Loja do Cidadão Saldanha", "--expires", "90d"))
	if created.ExpiresAt == nil || created.ExpiresAt.Sub(time.Now().AddDate(0, 0, 90)).Abs() > time.Minute {
		t.Errorf("desk create --expires 90d: the credential ends at %v, want in 90 days", created.ExpiresAt)
	}
	second := issued(t, cli("desk", "issue", "--desk", created.DeskID))
	if second.Key == created.Key || second.ExpiresAt != nil {
		t.Errorf("desk issue printed %+v, want another credential that never ends", second)
	}
	if out := cli("desk", "expire", "--desk", created.DeskID, "--key", second.Key, "--expires", "2099-01-31"); !strings.Contains(out, second.Key) {
		t.Errorf("desk expire printed %q", out)
	}
	if c := listed(t, cli, created.DeskID)[second.Key]; c.ExpiresAt == nil || !c.ExpiresAt.Equal(time.Date(2099, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("after desk expire --expires 2099-01-31: %+v", c)
	}
	rotated := issued(t, cli("desk", "rotate", "--desk", created.DeskID, "--grace", "1h"))
	if !slices.Equal(rotated.Ending, sortedKeys(created.Key, second.Key)) || rotated.EndingAt == nil {
		t.Errorf("desk rotate printed %+v, want both earlier credentials ending", rotated)
	}

	var stdout, stderr bytes.Buffer
	err := dispatch(t.Context(), []string{"desk", "revoke", "--desk", created.DeskID, "--key", rotated.Key,
		"--database-url", dbURL, "--data-dir", t.TempDir(), "--operator", "ana"}, &stdout, &stderr)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--reason") {
		t.Errorf("desk revoke without --reason: %v, want a usage error asking for one", err)
	}
	if out := cli("desk", "revoke", "--desk", created.DeskID, "--key", rotated.Key, "--reason", "tablet stolen"); !strings.Contains(out, rotated.Key) {
		t.Errorf("desk revoke printed %q", out)
	}

	creds := listed(t, cli, created.DeskID)
	now := time.Now()
	if len(creds) != 3 {
		t.Fatalf("desk list shows %d credentials, want 3", len(creds))
	}
	for _, key := range []string{created.Key, second.Key} {
		if c := creds[key]; !c.InForce(now) || c.ExpiresAt.Sub(now.Add(time.Hour)).Abs() > time.Minute {
			t.Errorf("credential %s after the rotation: %+v, want in force for an hour more", key, c)
		}
	}
	if c := creds[rotated.Key]; c.RevokedAt == nil {
		t.Errorf("the revoked credential is listed as %+v", c)
	}
	table := cli("desk", "list", "--municipality", "lisboa")
	if !strings.HasPrefix(table, "DESK") || !strings.Contains(table, "LAST USED") || strings.Count(table, created.DeskID) != 3 {
		t.Errorf("desk list printed\n%s\nwant a header and a line per credential", table)
	}

	var entries []events.AuditEntry
	if err := json.Unmarshal([]byte(auditOn(t, dbURL)("list", "--target", created.DeskID, "--json")), &entries); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range slices.Backward(entries) {
		got = append(got, fmt.Sprintf("%s %s %s", e.Actor, e.Action, e.Reason))
	}
	want := []string{
		"operator:ana desk_created ",
		"operator:ana desk_credential_issued ",
		"operator:ana desk_credential_expiry ",
		"operator:ana desk_credential_rotated ",
		"operator:ana desk_credential_revoked tablet stolen",
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit log on the desk:\n%q\nwant\n%q", got, want)
	}
}

func sortedKeys(keys ...string) []string {
	slices.Sort(keys)
	return keys
}

func TestParseExpiry_TakesDaysDurationsDatesAndTimesInTheFuture(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90d":                  now.AddDate(0, 0, 90),
		"36h":                  now.Add(36 * time.Hour),
		"2027-01-31":           time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC),
		"2027-01-31T12:00:00Z": time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC),
	} {
		if got, err := parseExpiry(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseExpiry(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "-3d", "soon", "2026-12-01", "-1h", "d"} {
		if got, err := parseExpiry(in, now); err == nil {
			t.Errorf("parseExpiry(%q) = %v, want an error", in, got)
		}
	}
}

// TestDesk_RevocationStopsTheDeskOnEveryIntakeWithinSeconds runs the system
// and a second intake process beside it, registers a desk with `spotflow
// desk create`, submits through both, revokes its credential with `spotflow
// desk revoke`, and sees both refuse it within a few seconds while the
// desk's new credential goes on working.
func TestDesk_RevocationStopsTheDeskOnEveryIntakeWithinSeconds(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Schema(t)
	identities := t.TempDir()
	start := func(roles []string, natsURL string, embed bool) *Main {
		m := &Main{
			Config: Config{
				DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSURL: natsURL, NATSListen: "127.0.0.1:0",
				DatabaseURL: dbURL, Agencies: "*:latency=1ms", CitizenKey: strings.Repeat("ab", 32), NATSIdentities: identities,
			},
			Roles: roles,
			Embed: embed,
		}
		runMain(t, m)
		return m
	}
	front := start(allRoles, "", true)
	second := start([]string{roleIntake}, front.NATSURL(), false)
	bases := []string{"http://" + front.HTTPAddr(), "http://" + second.HTTPAddr()}
	cli := commandsOn(t, dbURL)

	desk := issued(t, cli("desk", "create", "--municipality", "porto", "--name", "Loja do Cidadão Porto"))
	spare := issued(t, cli("desk", "issue", "--desk", desk.DeskID))
	client := &http.Client{Timeout: 10 * time.Second}
	n := 0
	submit := func(base, token string) int {
		n++
		return post(t, client, base, token, submission{key: fmt.Sprint(n), body: validBody(n)}).status
	}
	for _, base := range bases {
		if status := submit(base, desk.Token); status != http.StatusAccepted {
			t.Fatalf("submission to %s: %d, want 202", base, status)
		}
	}

	cli("desk", "revoke", "--desk", desk.DeskID, "--key", desk.Key, "--reason", "token pasted in a support chat")
	revoked := time.Now()
	for _, base := range bases {
		// A refusal every 200 ms: failed authentications are rate-limited per address.
		for status := submit(base, desk.Token); status != http.StatusUnauthorized; status = submit(base, desk.Token) {
			if status != http.StatusAccepted {
				t.Fatalf("submission to %s with the revoked token: %d, want 202 until refused, then 401", base, status)
			}
			if time.Since(revoked) > 10*time.Second {
				t.Fatalf("%s still accepts the revoked token 10s after the revocation", base)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if status := submit(base, spare.Token); status != http.StatusAccepted {
			t.Errorf("submission to %s with the desk's other credential: %d, want 202", base, status)
		}
	}
	took := time.Since(revoked)
	if took > 3*time.Second {
		t.Errorf("the revocation took %s to reach both intakes, want about two seconds at most", took)
	}
	t.Logf("the revocation reached both intakes within %s", took)
	workertest.WaitFor(t, "desk list to show the revoked credential, and when it was last used", func() error {
		if c := listed(t, cli, desk.DeskID)[desk.Key]; c.RevokedAt == nil || c.LastUsedAt == nil {
			return fmt.Errorf("listed as %+v", c)
		}
		return nil
	})
}
