package postgres_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
	"github.com/spotflow/spotflow/workers/workertest"
)

var ana = events.By{Actor: "operator:ana"}

// authenticates reports whether token lets its desk in, failing the test
// on anything but events.ErrUnauthenticated.
func authenticates(t *testing.T, s *postgres.Store, token string) bool {
	t.Helper()
	_, err := s.AuthenticateDesk(t.Context(), token)
	if err != nil && !errors.Is(err, events.ErrUnauthenticated) {
		t.Fatalf("AuthenticateDesk: %v", err)
	}
	return err == nil
}

// generation reads the count of revocations and expiry changes.
func generation(t *testing.T, s *postgres.Store) int64 {
	t.Helper()
	g, err := s.DeskCredentialGeneration(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// auditedActions lists the actions the audit log holds on target, oldest
// first, with their actors and reasons.
func auditedActions(t *testing.T, s *postgres.Store, target string) []string {
	t.Helper()
	entries, err := s.AuditEntries(t.Context(), events.AuditQuery{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range slices.Backward(entries) {
		out = append(out, strings.TrimSuffix(string(e.Action)+" by "+e.Actor+" for "+e.Reason, " for "))
	}
	return out
}

func TestDeskCredentials_AreIssuedListedAndRevokedInTheAuditLog(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := t.Context()
	expires := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	desk, first, err := s.RegisterDesk(ctx, "lisboa", "Loja do Cidadão Saldanha", expires, ana)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.IssueDeskCredential(ctx, desk.ID, time.Time{}, ana)
	if err != nil {
		t.Fatal(err)
	}
	if first.Key == second.Key || first.Token == second.Token || !strings.HasPrefix(first.Token, "sfd_") || len(first.Key) != 16 {
		t.Fatalf("credentials %+v and %+v, want two of their own", first, second)
	}
	if first.ExpiresAt == nil || !first.ExpiresAt.Equal(expires) || second.ExpiresAt != nil {
		t.Errorf("expiries %v and %v, want %v and none", first.ExpiresAt, second.ExpiresAt, expires)
	}
	for _, c := range []events.IssuedDeskCredential{first, second} {
		a, err := s.AuthenticateDesk(ctx, c.Token)
		if err != nil || a.Desk != desk || a.Key != c.Key {
			t.Errorf("AuthenticateDesk(credential %s) = %+v, %v; want desk %s", c.Key, a, err, desk.ID)
		}
	}
	if _, err := s.IssueDeskCredential(ctx, "desk-nonesuch", time.Time{}, ana); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("issuing a credential of no desk: %v, want not found", err)
	}
	if _, err := s.IssueDeskCredential(ctx, desk.ID, time.Now().Add(-time.Hour), ana); err == nil {
		t.Error("a credential was issued that had already ended")
	}

	if _, err := s.RevokeDeskCredentials(ctx, desk.ID, first.Key, ana); !errors.Is(err, postgres.ErrReasonRequired) {
		t.Errorf("revoking without a reason: %v, want ErrReasonRequired", err)
	}
	if !authenticates(t, s, first.Token) {
		t.Error("a revocation refused for want of a reason still revoked the credential")
	}
	rui := events.By{Actor: "operator:rui", Reason: "token seen in a screenshot"}
	before := generation(t, s)
	revoked, err := s.RevokeDeskCredentials(ctx, desk.ID, first.Key, rui)
	if err != nil || !slices.Equal(revoked, []string{first.Key}) {
		t.Fatalf("RevokeDeskCredentials = %v, %v; want %s", revoked, err, first.Key)
	}
	if authenticates(t, s, first.Token) || !authenticates(t, s, second.Token) {
		t.Error("after revoking the first credential, want it refused and the second let in")
	}
	if generation(t, s) <= before {
		t.Error("a revocation left the generation as it was: intakes would not notice")
	}
	if _, err := s.RevokeDeskCredentials(ctx, desk.ID, first.Key, rui); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("revoking it again: %v, want not found", err)
	}

	listed, err := s.Desks(ctx, "lisboa")
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != desk.ID || len(listed[0].Credentials) != 2 {
		t.Fatalf("Desks = %+v, want the desk with its two credentials", listed)
	}
	l1, l2 := listed[0].Credentials[0], listed[0].Credentials[1]
	if l1.Key != first.Key || l1.RevokedAt == nil || l1.ExpiresAt == nil || l1.InForce(time.Now()) {
		t.Errorf("first credential listed as %+v, want revoked, with its expiry", l1)
	}
	if l2.Key != second.Key || !l2.InForce(time.Now()) || l2.LastUsedAt != nil {
		t.Errorf("second credential listed as %+v, want in force, never recorded in use", l2)
	}
	if other, err := s.Desks(ctx, "porto"); err != nil || len(other) != 0 {
		t.Errorf("desks of porto: %+v, %v; want none", other, err)
	}

	want := []string{
		"desk_created by operator:ana",
		"desk_credential_issued by operator:ana",
		"desk_credential_revoked by operator:rui for token seen in a screenshot",
	}
	if got := auditedActions(t, s, desk.ID); !slices.Equal(got, want) {
		t.Errorf("audit log on the desk:\n%q\nwant\n%q", got, want)
	}
}

func TestDeskCredentials_RotateEndsTheOthersAfterTheGrace(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := t.Context()
	desk, old, err := s.RegisterDesk(ctx, "braga", "Espaço Cidadão Braga", time.Time{}, ana)
	if err != nil {
		t.Fatal(err)
	}
	fresh, ending, err := s.RotateDeskCredentials(ctx, desk.ID, time.Time{}, time.Now().Add(24*time.Hour), ana)
	if err != nil || !slices.Equal(ending, []string{old.Key}) {
		t.Fatalf("RotateDeskCredentials = %v, %v; want %s set to end", ending, err, old.Key)
	}
	if !authenticates(t, s, old.Token) || !authenticates(t, s, fresh.Token) {
		t.Error("during the grace, want both credentials let in")
	}
	a, err := s.AuthenticateDesk(ctx, old.Token)
	if err != nil || a.ExpiresAt.Before(time.Now().Add(23*time.Hour)) || a.ExpiresAt.After(time.Now().Add(24*time.Hour)) {
		t.Errorf("the old credential ends at %v (err %v), want in a day", a.ExpiresAt, err)
	}

	newest, ending, err := s.RotateDeskCredentials(ctx, desk.ID, time.Time{}, time.Now(), ana)
	if err != nil || !slices.Equal(ending, sorted(old.Key, fresh.Key)) {
		t.Fatalf("RotateDeskCredentials with no grace = %v, %v; want both earlier ones ended", ending, err)
	}
	if authenticates(t, s, old.Token) || authenticates(t, s, fresh.Token) || !authenticates(t, s, newest.Token) {
		t.Error("after a rotation with no grace, want only the newest credential let in")
	}
	if _, _, err := s.RotateDeskCredentials(ctx, "desk-nonesuch", time.Time{}, time.Now(), ana); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("rotating the credentials of no desk: %v, want not found", err)
	}
	want := []string{"desk_created by operator:ana", "desk_credential_rotated by operator:ana", "desk_credential_rotated by operator:ana"}
	if got := auditedActions(t, s, desk.ID); !slices.Equal(got, want) {
		t.Errorf("audit log on the desk: %q, want %q", got, want)
	}
}

func sorted(keys ...string) []string {
	slices.Sort(keys)
	return keys
}

func TestDeskCredentials_EndAtTheirExpiry(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := t.Context()
	desk, cred, err := s.RegisterDesk(ctx, "faro", "Loja do Cidadão Faro", time.Time{}, ana)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExpireDeskCredentials(ctx, desk.ID, "", time.Now().Add(-time.Minute), ana); err == nil {
		t.Error("a credential was set to end in the past")
	}
	before := generation(t, s)
	soon := time.Now().Add(time.Second)
	changed, err := s.ExpireDeskCredentials(ctx, desk.ID, cred.Key, soon, ana)
	if err != nil || !slices.Equal(changed, []string{cred.Key}) {
		t.Fatalf("ExpireDeskCredentials = %v, %v", changed, err)
	}
	if generation(t, s) <= before {
		t.Error("shortening a credential left the generation as it was: intakes would not notice")
	}
	a, err := s.AuthenticateDesk(ctx, cred.Token)
	if err != nil || !a.ExpiresAt.Equal(soon.Truncate(time.Microsecond)) {
		t.Errorf("before its expiry: %+v, %v; want let in, ending at %v", a, err, soon)
	}
	workertest.WaitFor(t, "the credential to end", func() error {
		if authenticates(t, s, cred.Token) {
			return errors.New("still let in")
		}
		return nil
	})
	if _, err := s.ExpireDeskCredentials(ctx, desk.ID, "", time.Now().Add(time.Hour), ana); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("extending an ended credential: %v, want not found", err)
	}
}

func TestDeskCredentials_LastUseIsRecordedWithoutCountingAsAChange(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := t.Context()
	desk, cred, err := s.RegisterDesk(ctx, "evora", "Loja do Cidadão Évora", time.Time{}, ana)
	if err != nil {
		t.Fatal(err)
	}
	before := generation(t, s)
	used := time.Now().Truncate(time.Microsecond)
	if err := s.NoteDeskCredentialsUsed(ctx, map[string]time.Time{cred.Key: used, "not-a-key": used}); err != nil {
		t.Fatal(err)
	}
	if err := s.NoteDeskCredentialsUsed(ctx, map[string]time.Time{cred.Key: used.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	a, err := s.AuthenticateDesk(ctx, cred.Token)
	if err != nil || !a.LastUsedAt.Equal(used) {
		t.Errorf("last used at %v (err %v), want %v, never moved back", a.LastUsedAt, err, used)
	}
	if generation(t, s) != before {
		t.Error("recording a use counted as a change of revocations")
	}
	listed, err := s.Desks(ctx, "")
	if err != nil || len(listed) != 1 || listed[0].ID != desk.ID || listed[0].Credentials[0].LastUsedAt == nil {
		t.Errorf("Desks = %+v (err %v), want the desk's credential with its last use", listed, err)
	}
}

func TestDeskCredentials_TokenIsNotStoredInClear(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	_, cred, err := s.RegisterDesk(t.Context(), "beja", "Espaço Cidadão Beja", time.Time{}, ana)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	err = s.Pool().QueryRow(t.Context(), `
		SELECT EXISTS (SELECT 1 FROM desk_credentials c WHERE to_jsonb(c)::text ILIKE '%' || $1 || '%')
		    OR EXISTS (SELECT 1 FROM audit_log l WHERE to_jsonb(l)::text ILIKE '%' || $1 || '%')`,
		strings.TrimPrefix(cred.Token, "sfd_")).Scan(&found)
	if err != nil || found {
		t.Errorf("the token is stored in clear (err %v)", err)
	}
}
