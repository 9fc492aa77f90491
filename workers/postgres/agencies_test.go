package postgres_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

func TestAgencyCredentials_AreIssuedListedAndRevokedWithAnAuditTrail(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := t.Context()
	for _, c := range []struct{ agency, key string }{{"tax", "UTAX1"}, {"tax", "UTAX2"}, {"sns", "USNS1"}} {
		if err := s.AddAgencyCredential(ctx, c.agency, c.key, "operator:ana"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddAgencyCredential(ctx, "tax", "UTAX1", "operator:ana"); err == nil {
		t.Error("the same public key was recorded twice")
	}
	if err := s.AddAgencyCredential(ctx, "Not An Agency", "UX", "operator:ana"); err == nil {
		t.Error("a credential was recorded for a malformed agency code")
	}
	keys := func(agency string, revoked bool) []string {
		t.Helper()
		creds, err := s.AgencyCredentials(ctx, agency, "", revoked)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range creds {
			out = append(out, c.PublicKey)
		}
		return out
	}
	if got := keys("", false); len(got) != 3 {
		t.Errorf("credentials in force %v, want three", got)
	}
	if n, err := s.RevokeAgencyCredential(ctx, "tax", "UTAX1", "operator:rui"); err != nil || n != 1 {
		t.Fatalf("revoke UTAX1: %d %v", n, err)
	}
	if got := keys("tax", false); len(got) != 1 || got[0] != "UTAX2" {
		t.Errorf("tax's credentials in force %v, want UTAX2 alone", got)
	}
	if got := keys("tax", true); len(got) != 2 {
		t.Errorf("tax's credentials with the revoked %v, want both", got)
	}
	if _, err := s.RevokeAgencyCredential(ctx, "sns", "UTAX2", "operator:rui"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("revoking tax's key as sns's: %v, want not found", err)
	}
	if n, err := s.RevokeAgencyCredential(ctx, "tax", "", "operator:rui"); err != nil || n != 1 {
		t.Errorf("revoke every credential of tax: %d %v, want the one left", n, err)
	}
	var issued, revoked int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = 'agency_credential_issued'),
		count(*) FILTER (WHERE action = 'agency_credential_revoked') FROM audit_log`).Scan(&issued, &revoked); err != nil || issued != 3 || revoked != 2 {
		t.Errorf("audit log holds %d issues and %d revocations (err %v), want 3 and 2", issued, revoked, err)
	}
}

func TestAgencyTokens_FindTheirAgencyUntilRevoked(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := t.Context()
	token, key, err := s.AddAgencyToken(ctx, "tax", "operator:ana")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "sfa_") || strings.Contains(key, token) {
		t.Errorf("token %q listed under %q", token, key)
	}
	if err := s.AddAgencyCredential(ctx, "tax", "UTAX1", "operator:ana"); err != nil {
		t.Fatal(err)
	}
	if agency, err := s.AgencyByToken(ctx, token); err != nil || agency != "tax" {
		t.Errorf("AgencyByToken = %q, %v, want tax", agency, err)
	}
	for _, wrong := range []string{"", token + "x", key, "UTAX1"} {
		if _, err := s.AgencyByToken(ctx, wrong); !errors.Is(err, events.ErrUnauthenticated) {
			t.Errorf("AgencyByToken(%q) = %v, want unauthenticated", wrong, err)
		}
	}
	nkeys, err := s.AgencyCredentials(ctx, "tax", events.CredentialNkey, false)
	if err != nil || len(nkeys) != 1 || nkeys[0].PublicKey != "UTAX1" {
		t.Errorf("tax's nkeys %+v (%v), want UTAX1 alone: the server must never take a token's hash for an nkey", nkeys, err)
	}
	tokens, err := s.AgencyCredentials(ctx, "tax", events.CredentialToken, false)
	if err != nil || len(tokens) != 1 || tokens[0].PublicKey != key || tokens[0].Kind != events.CredentialToken {
		t.Errorf("tax's tokens %+v (%v), want the one under %s", tokens, err, key)
	}
	if n, err := s.RevokeAgencyCredential(ctx, "tax", key, "operator:rui"); err != nil || n != 1 {
		t.Fatalf("revoke the token: %d %v", n, err)
	}
	if _, err := s.AgencyByToken(ctx, token); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("a revoked token still finds its agency: %v", err)
	}
}
