package postgres_test

import (
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// newOperator creates username's account, of role, on behalf of operator
// ana, and returns its setup.
func newOperator(t *testing.T, s *postgres.Store, username string, role events.OperatorRole) events.MediatorSetup {
	t.Helper()
	setup, err := s.CreateOperator(t.Context(), events.Operator{Username: username, Name: "Rui Lopes", Role: role, Language: "pt"}, operator)
	if err != nil {
		t.Fatalf("create operator: %v", err)
	}
	return setup
}

// startOperatorSession signs username in with a session whose token is
// token, waiting for the one-time password when secondFactorDue, and
// returns the token's hash.
func startOperatorSession(t *testing.T, s *postgres.Store, username, token string, secondFactorDue bool) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	if err := s.OperatorSignedIn(t.Context(), username, events.SessionStart{TokenHash: sum[:], CSRF: "csrf-" + token,
		ExpiresAt: time.Now().Add(time.Hour), Address: "192.0.2.7"}, secondFactorDue); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	return sum[:]
}

func TestOperators_SetUpWithAOneTimeCodeLockAfterFailuresAndEndSessionsWhenDisabledOrReset(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	setup := newOperator(t, s, "rui", events.RoleOperator)
	if setup.Username != "rui" || len(setup.Code) < 20 || time.Until(setup.ExpiresAt) < 71*time.Hour {
		t.Errorf("setup %+v: want rui's long one-time code valid 72 hours", setup)
	}
	for name, bad := range map[string]events.Operator{
		"a username taken":     {Username: "rui", Name: "Another", Role: events.RoleViewer, Language: "pt"},
		"an upper-case name":   {Username: "Rui", Name: "Rui", Role: events.RoleViewer, Language: "pt"},
		"no name":              {Username: "ana", Role: events.RoleViewer, Language: "pt"},
		"a bidi override":      {Username: "ana", Name: "Ana\u202eevil", Role: events.RoleViewer, Language: "pt"},
		"an unknown role":      {Username: "ana", Name: "Ana", Role: "admin", Language: "pt"},
		"no language":          {Username: "ana", Name: "Ana", Role: events.RoleViewer},
		"a name over 200 byte": {Username: "ana", Name: strings.Repeat("a", 201), Role: events.RoleViewer, Language: "pt"},
	} {
		if _, err := s.CreateOperator(ctx, bad, operator); err == nil {
			t.Errorf("CreateOperator with %s succeeded", name)
		}
	}
	if list, err := s.Operators(ctx); err != nil || len(list) != 1 || list[0].Username != "rui" || list[0].Role != events.RoleOperator ||
		list[0].Name != "Rui Lopes" || list[0].Language != "pt" || list[0].CreatedAt.IsZero() {
		t.Errorf("Operators = %+v, %v; want rui alone, as created", list, err)
	}

	in, err := s.OperatorForSignIn(ctx, "rui")
	if err != nil || in.PasswordSet || in.PasswordHash != "" || in.SecondFactor || !in.SignedInAt.IsZero() {
		t.Fatalf("before setup: %+v, %v", in, err)
	}
	if _, err := s.OperatorForSignIn(ctx, "nobody"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("unknown username: %v, want ErrNotFound", err)
	}
	if _, ok, err := s.SetupCodeValid(ctx, setup.Code); err != nil || ok {
		t.Errorf("an operator's setup code is a mediator's: %v %v", ok, err)
	}
	if u, ok, err := s.OperatorSetupCodeValid(ctx, setup.Code); err != nil || !ok || u != "rui" {
		t.Errorf("OperatorSetupCodeValid = %q %v %v", u, ok, err)
	}
	if _, err := s.SetMediatorPassword(ctx, setup.Code, "$argon2id$mediator"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("an operator's setup code set a mediator's password: %v", err)
	}
	if u, err := s.SetOperatorPassword(ctx, setup.Code, "$argon2id$hash"); err != nil || u != "rui" {
		t.Fatalf("SetOperatorPassword = %q, %v", u, err)
	}
	if _, err := s.SetOperatorPassword(ctx, setup.Code, "$argon2id$again"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("a used setup code set a password again: %v", err)
	}
	if _, ok, _ := s.OperatorSetupCodeValid(ctx, setup.Code); ok {
		t.Error("a used setup code is still valid")
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); in.PasswordHash != "$argon2id$hash" || !in.PasswordSet {
		t.Errorf("after setup: %+v", in)
	}

	// Five failures in a row lock the account for the time given.
	for i := 1; i <= 5; i++ {
		n, locked, err := s.OperatorSignInFailed(ctx, "rui", "192.0.2.7", 5, 15*time.Minute)
		if err != nil || n != i || locked != (i == 5) {
			t.Fatalf("failure %d: %d failures, locked %v, %v", i, n, locked, err)
		}
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); time.Until(in.LockedUntil) < 14*time.Minute || time.Until(in.LockedUntil) > 16*time.Minute {
		t.Errorf("locked until %v, want about 15 minutes from now", in.LockedUntil)
	}
	if err := s.OperatorSignInRefused(ctx, "rui", "192.0.2.7", "locked"); err != nil {
		t.Fatal(err)
	}
	if err := s.OperatorSignInRefused(ctx, "", "192.0.2.9", "unknown username"); err != nil {
		t.Fatal(err)
	}
	if got := auditedActions(t, s, "address:192.0.2.9"); !slices.Equal(got, []string{"operator_sign_in_failed by address:192.0.2.9"}) {
		t.Errorf("a sign-in of an unknown username is audited as %q, want under the address", got)
	}

	token := startOperatorSession(t, s, "rui", "token-1", false)
	if in, _ := s.OperatorForSignIn(ctx, "rui"); !in.LockedUntil.IsZero() || in.SignedInAt.IsZero() {
		t.Errorf("a sign-in did not unlock the account nor note the time: %+v", in)
	}
	if n, locked, err := s.OperatorSignInFailed(ctx, "rui", "192.0.2.7", 5, 15*time.Minute); err != nil || n != 1 || locked {
		t.Errorf("the first failure after a sign-in: %d failures, locked %v, %v; want the count started again", n, locked, err)
	}
	ses, err := s.OperatorSession(ctx, token, 30*time.Minute)
	if err != nil || ses.Operator.Username != "rui" || ses.Operator.Role != events.RoleOperator || ses.CSRF != "csrf-token-1" ||
		ses.SecondFactorDue || time.Until(ses.ExpiresAt) < 59*time.Minute {
		t.Fatalf("OperatorSession = %+v, %v", ses, err)
	}
	if _, err := s.OperatorSession(ctx, token, -time.Second); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("a session idle for longer than allowed: %v, want ErrUnauthenticated", err)
	}
	if _, err := s.Session(ctx, token, time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("an operator's session opened the desk application: %v", err)
	}
	if _, err := s.OperatorSession(ctx, sha256.New().Sum(nil), time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("an unknown session: %v, want ErrUnauthenticated", err)
	}

	// Disabling ends the session at once; enabling does not bring it back.
	if err := s.DisableOperator(ctx, "rui", false, operator); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OperatorSession(ctx, token, time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("session of a disabled operator: %v", err)
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); in.DisabledAt.IsZero() {
		t.Error("a disabled operator reads as enabled")
	}
	if err := s.DisableOperator(ctx, "rui", true, operator); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OperatorSession(ctx, token, time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("session came back when the operator was enabled: %v", err)
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); !in.DisabledAt.IsZero() {
		t.Error("an enabled operator reads as disabled")
	}
	// A reset forgets the password and the second factor and ends the new
	// session too.
	token2 := startOperatorSession(t, s, "rui", "token-2", false)
	if err := s.EnrolSecondFactor(ctx, "rui", "JBSWY3DPEHPK3PXP"); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmSecondFactor(ctx, "rui", 1000, false); err != nil {
		t.Fatal(err)
	}
	again, err := s.ResetOperator(ctx, "rui", operator)
	if err != nil || again.Code == setup.Code || again.Username != "rui" {
		t.Fatalf("reset: %+v %v", again, err)
	}
	if _, err := s.OperatorSession(ctx, token2, time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("session after a reset: %v", err)
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); in.PasswordSet || in.SecondFactor {
		t.Errorf("after a reset: %+v, want no password and no second factor", in)
	}
	if u, ok, err := s.OperatorSetupCodeValid(ctx, again.Code); err != nil || !ok || u != "rui" {
		t.Errorf("the reset's setup code: %q %v %v", u, ok, err)
	}
	token3 := startOperatorSession(t, s, "rui", "token-3", false)
	if err := s.EndOperatorSession(ctx, token3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OperatorSession(ctx, token3, time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("session after sign-out: %v", err)
	}
	if err := s.EndOperatorSession(ctx, token3); err != nil {
		t.Errorf("signing out twice: %v", err)
	}

	for name, change := range map[string]func() error{
		"reset":   func() error { _, err := s.ResetOperator(ctx, "nobody", operator); return err },
		"disable": func() error { return s.DisableOperator(ctx, "nobody", false, operator) },
		"enable":  func() error { return s.DisableOperator(ctx, "nobody", true, operator) },
	} {
		if err := change(); !errors.Is(err, events.ErrNotFound) {
			t.Errorf("%s an unknown operator: %v, want ErrNotFound", name, err)
		}
	}

	got := auditedActions(t, s, "operator:rui")
	want := []string{"operator_created by operator:ana", "operator_password_set by operator:rui"}
	for range 5 {
		want = append(want, "operator_sign_in_failed by operator:rui")
	}
	want = append(want, "operator_sign_in_failed by operator:rui", // refused while locked
		"operator_signed_in by operator:rui", "operator_sign_in_failed by operator:rui",
		"operator_disabled by operator:ana", "operator_enabled by operator:ana",
		"operator_signed_in by operator:rui", "operator_second_factor by operator:rui", "operator_reset by operator:ana",
		"operator_signed_in by operator:rui", "operator_signed_out by operator:rui")
	if !slices.Equal(got, want) {
		t.Errorf("audit log\n got %q\nwant %q", got, want)
	}
}

func TestOperators_ASecondFactorOpensAWaitingSessionAndEachTimeStepIsGoodOnce(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	newOperator(t, s, "rui", events.RoleViewer)
	const secret, other = "JBSWY3DPEHPK3PXP", "KRSXG5CTMVRXEZLU"

	if got, step, err := s.SecondFactorSecret(ctx, "rui", false); err != nil || got != "" || step != 0 {
		t.Errorf("before enrolling: %q, step %d, %v; want none", got, step, err)
	}
	if _, _, err := s.SecondFactorSecret(ctx, "nobody", true); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("the secret of an unknown operator: %v, want ErrNotFound", err)
	}
	if err := s.ConfirmSecondFactor(ctx, "rui", 900, false); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("confirming with nothing enrolled: %v, want ErrUnauthenticated", err)
	}
	if err := s.EnrolSecondFactor(ctx, "rui", other); err != nil {
		t.Fatal(err)
	}
	if err := s.EnrolSecondFactor(ctx, "rui", secret); err != nil { // enrolling again replaces the first
		t.Fatal(err)
	}
	var clear bool
	if err := s.Pool().QueryRow(ctx, `SELECT position(convert_to($1, 'UTF8') IN totp_pending) > 0 FROM operators WHERE username = 'rui'`,
		secret).Scan(&clear); err != nil || clear {
		t.Errorf("the secret is stored in the clear (%v)", err)
	}
	if got, _, err := s.SecondFactorSecret(ctx, "rui", true); err != nil || got != secret {
		t.Errorf("the pending secret: %q, %v; want %q", got, err, secret)
	}
	if got, _, _ := s.SecondFactorSecret(ctx, "rui", false); got != "" {
		t.Errorf("a secret still being enrolled is in force: %q", got)
	}
	if err := s.ConfirmSecondFactor(ctx, "rui", 1000, false); err != nil {
		t.Fatal(err)
	}
	if got, step, err := s.SecondFactorSecret(ctx, "rui", false); err != nil || got != secret || step != 1000 {
		t.Errorf("after confirming: %q, step %d, %v; want %q at step 1000", got, step, err, secret)
	}
	if got, _, _ := s.SecondFactorSecret(ctx, "rui", true); got != "" {
		t.Errorf("the confirmed secret is still pending: %q", got)
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); !in.SecondFactor {
		t.Error("after confirming, the operator has no second factor")
	}

	// The password was right: the session waits for the one-time password.
	waiting := startOperatorSession(t, s, "rui", "token-1", true)
	ses, err := s.OperatorSession(ctx, waiting, time.Hour)
	if err != nil || !ses.SecondFactorDue {
		t.Fatalf("a session waiting for its one-time password: %+v, %v", ses, err)
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); !in.SignedInAt.IsZero() {
		t.Error("a password alone signed the operator in")
	}
	for _, step := range []int64{999, 1000} {
		if err := s.SecondFactorPassed(ctx, waiting, step, "192.0.2.7"); !errors.Is(err, events.ErrUnauthenticated) {
			t.Errorf("a one-time password of step %d, not after the last used (1000): %v, want ErrUnauthenticated", step, err)
		}
	}
	if ses, _ := s.OperatorSession(ctx, waiting, time.Hour); !ses.SecondFactorDue {
		t.Error("a refused one-time password opened the session")
	}
	if err := s.SecondFactorPassed(ctx, waiting, 1001, "192.0.2.7"); err != nil {
		t.Fatalf("SecondFactorPassed: %v", err)
	}
	if ses, err := s.OperatorSession(ctx, waiting, time.Hour); err != nil || ses.SecondFactorDue {
		t.Errorf("after the one-time password: %+v, %v; want the session open", ses, err)
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); in.SignedInAt.IsZero() {
		t.Error("the one-time password did not sign the operator in")
	}
	if err := s.SecondFactorPassed(ctx, waiting, 1002, "192.0.2.7"); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("a session not waiting passed a second factor: %v, want ErrUnauthenticated", err)
	}
	// The same one-time password, seen over a shoulder, opens no other
	// session.
	second := startOperatorSession(t, s, "rui", "token-2", true)
	if err := s.SecondFactorPassed(ctx, second, 1001, "192.0.2.66"); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("a one-time password used again: %v, want ErrUnauthenticated", err)
	}
	if err := s.EndOperatorSession(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := s.SecondFactorPassed(ctx, second, 1005, "192.0.2.7"); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("an ended session passed a second factor: %v, want ErrUnauthenticated", err)
	}
	// Locked after wrong one-time passwords, the account opens no waiting
	// session until the lock ends, even with a right one.
	third := startOperatorSession(t, s, "rui", "token-3", true)
	if _, locked, err := s.OperatorSignInFailed(ctx, "rui", "192.0.2.66", 1, time.Hour); err != nil || !locked {
		t.Fatalf("a failure: locked %v, %v", locked, err)
	}
	if err := s.SecondFactorPassed(ctx, third, 1010, "192.0.2.66"); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("a locked account passed a second factor: %v, want ErrUnauthenticated", err)
	}
	if _, step, _ := s.SecondFactorSecret(ctx, "rui", false); step != 1001 {
		t.Errorf("refused one-time passwords moved the last step to %d, want 1001", step)
	}

	// Removing the second factor takes a one-time password of a step not
	// used yet too.
	if err := s.ConfirmSecondFactor(ctx, "rui", 1001, true); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("removing with a used one-time password: %v, want ErrUnauthenticated", err)
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); !in.SecondFactor {
		t.Error("a refused removal removed the second factor")
	}
	if err := s.ConfirmSecondFactor(ctx, "rui", 1003, true); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.OperatorForSignIn(ctx, "rui"); in.SecondFactor {
		t.Error("the second factor was not removed")
	}
	if got, _, _ := s.SecondFactorSecret(ctx, "rui", false); got != "" {
		t.Errorf("a removed second factor's secret is kept: %q", got)
	}

	entries, err := s.AuditEntries(ctx, events.AuditQuery{Action: events.AuditOperatorSecondFactor})
	if err != nil {
		t.Fatal(err)
	}
	var turned []string
	for _, e := range slices.Backward(entries) {
		turned = append(turned, e.Actor+" "+e.Target+" "+e.Detail["second_factor"].(string))
	}
	if want := []string{"operator:rui operator:rui on", "operator:rui operator:rui off"}; !slices.Equal(turned, want) {
		t.Errorf("second factor audited as %q, want %q", turned, want)
	}
	signIns, err := s.AuditEntries(ctx, events.AuditQuery{Action: events.AuditOperatorSignedIn})
	if err != nil || len(signIns) != 1 || signIns[0].Detail["second_factor"] != true || signIns[0].Detail["address"] != "192.0.2.7" {
		t.Errorf("sign-ins audited %+v (err %v), want the one with the second factor, from its address", signIns, err)
	}
}

func TestOperatorTokens_AreIssuedUsedAndRevokedInTheAuditLog(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	scraper, err := s.IssueOperatorToken(ctx, "prometheus", events.RoleViewer, operator)
	if err != nil {
		t.Fatal(err)
	}
	script, err := s.IssueOperatorToken(ctx, "replay-script", events.RoleOperator, operator)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(scraper, "sfo_") || len(scraper) != 4+43 || scraper == script {
		t.Errorf("tokens %q and %q: want sfo_ and 32 random bytes in base64url, each its own", scraper, script)
	}
	for name, issue := range map[string]func() error{
		"a name taken": func() error {
			_, err := s.IssueOperatorToken(ctx, "prometheus", events.RoleViewer, operator)
			return err
		},
		"a malformed name": func() error {
			_, err := s.IssueOperatorToken(ctx, "Prometheus!", events.RoleViewer, operator)
			return err
		},
		"an unknown role": func() error { _, err := s.IssueOperatorToken(ctx, "grafana", "admin", operator); return err },
		"no actor": func() error {
			_, err := s.IssueOperatorToken(ctx, "grafana", events.RoleViewer, events.By{})
			return err
		},
	} {
		if err := issue(); err == nil {
			t.Errorf("issuing a token with %s succeeded", name)
		}
	}
	var clear int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM operator_tokens WHERE position(convert_to($1, 'UTF8') IN token_hash) > 0
		OR position(convert_to($2, 'UTF8') IN token_hash) > 0`, scraper, script).Scan(&clear); err != nil || clear != 0 {
		t.Errorf("a token is stored in the clear (%v)", err)
	}

	tok, err := s.OperatorByToken(ctx, scraper)
	if err != nil || tok.Name != "prometheus" || tok.Role != events.RoleViewer || tok.Actor() != "token:prometheus" || tok.CreatedAt.IsZero() {
		t.Fatalf("OperatorByToken = %+v, %v", tok, err)
	}
	for _, wrong := range []string{"", "sfo_", scraper + "x", strings.TrimPrefix(scraper, "sfo_")} {
		if tok, err := s.OperatorByToken(ctx, wrong); !errors.Is(err, events.ErrUnauthenticated) {
			t.Errorf("OperatorByToken(%q) = %+v, %v; want ErrUnauthenticated", wrong, tok, err)
		}
	}

	if err := s.RevokeOperatorToken(ctx, "prometheus", events.By{Actor: "operator:rui"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OperatorByToken(ctx, scraper); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("a revoked token: %v, want ErrUnauthenticated at once", err)
	}
	if tok, err := s.OperatorByToken(ctx, script); err != nil || tok.Name != "replay-script" || tok.Role != events.RoleOperator {
		t.Errorf("the other token after a revocation: %+v, %v", tok, err)
	}
	for _, name := range []string{"prometheus", "nobody"} {
		if err := s.RevokeOperatorToken(ctx, name, operator); !errors.Is(err, events.ErrNotFound) {
			t.Errorf("revoking %s: %v, want ErrNotFound", name, err)
		}
	}

	list, err := s.OperatorTokens(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("OperatorTokens = %+v, %v", list, err)
	}
	if p := list[0]; p.Name != "prometheus" || p.Role != events.RoleViewer || p.RevokedAt.IsZero() || p.UsedAt.IsZero() {
		t.Errorf("the revoked token is listed as %+v, want revoked, used", p)
	}
	if r := list[1]; r.Name != "replay-script" || r.Role != events.RoleOperator || !r.RevokedAt.IsZero() || r.UsedAt.IsZero() {
		t.Errorf("the token in force is listed as %+v, want in force, used", r)
	}

	if got, want := auditedActions(t, s, "token:prometheus"), []string{"operator_token_issued by operator:ana", "operator_token_revoked by operator:rui"}; !slices.Equal(got, want) {
		t.Errorf("audit log of token:prometheus\n got %q\nwant %q", got, want)
	}
	if got, want := auditedActions(t, s, "token:replay-script"), []string{"operator_token_issued by operator:ana"}; !slices.Equal(got, want) {
		t.Errorf("audit log of token:replay-script\n got %q\nwant %q", got, want)
	}

	// A revoked token's name may be given to a new token; the old token
	// stays refused. A name in force may not.
	again, err := s.IssueOperatorToken(ctx, "prometheus", events.RoleViewer, operator)
	if err != nil {
		t.Fatalf("issuing a revoked token's name again: %v", err)
	}
	if tok, err := s.OperatorByToken(ctx, again); err != nil || tok.Name != "prometheus" {
		t.Errorf("the new token of a revoked name: %+v, %v", tok, err)
	}
	if _, err := s.OperatorByToken(ctx, scraper); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("the revoked token after its name was given again: %v, want ErrUnauthenticated", err)
	}
	if _, err := s.IssueOperatorToken(ctx, "prometheus", events.RoleViewer, operator); err == nil {
		t.Error("a name in force was issued twice")
	}
}

func TestRegisterOperatorToken_KeepsTheConfiguredTokenAsARevocableMachineCredential(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	const first, second = "configured-secret-1", "configured-secret-2"
	for range 2 { // registering again, at each start, changes nothing
		if err := s.RegisterOperatorToken(ctx, "operator-token", first); err != nil {
			t.Fatal(err)
		}
	}
	if tok, err := s.OperatorByToken(ctx, first); err != nil || tok.Name != "operator-token" || tok.Role != events.RoleOperator {
		t.Fatalf("the configured token: %+v, %v", tok, err)
	}
	if err := s.RevokeOperatorToken(ctx, "operator-token", operator); err != nil {
		t.Fatal(err)
	}
	// A restart with the same configuration does not bring it back.
	if err := s.RegisterOperatorToken(ctx, "operator-token", first); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OperatorByToken(ctx, first); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("a revoked configured token after a restart: %v, want ErrUnauthenticated", err)
	}
	// Another token in the configuration replaces it.
	if err := s.RegisterOperatorToken(ctx, "operator-token", second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OperatorByToken(ctx, second); err != nil {
		t.Errorf("the new configured token: %v", err)
	}
	if _, err := s.OperatorByToken(ctx, first); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("the old configured token after it was replaced: %v", err)
	}
	want := []string{"operator_token_issued by system:spotflow", "operator_token_revoked by operator:ana", "operator_token_issued by system:spotflow"}
	if got := auditedActions(t, s, "token:operator-token"); !slices.Equal(got, want) {
		t.Errorf("audit log of token:operator-token\n got %q\nwant %q", got, want)
	}
}
