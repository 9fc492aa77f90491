package postgres_test

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

var operator = events.By{Actor: "operator:ana"}

func newMediator(t *testing.T, s *postgres.Store, deskID, username string) events.MediatorSetup {
	t.Helper()
	setup, err := s.CreateMediator(t.Context(), events.Mediator{Username: username, DeskID: deskID, Name: "Rui Lopes", Language: "pt"}, operator)
	if err != nil {
		t.Fatalf("create mediator: %v", err)
	}
	return setup
}

func startSession(t *testing.T, s *postgres.Store, username, token string) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	if err := s.SignedIn(t.Context(), username, events.SessionStart{TokenHash: sum[:], CSRF: "csrf-" + token,
		ExpiresAt: time.Now().Add(time.Hour), Address: "192.0.2.7"}); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	return sum[:]
}

func TestMediators_SetUpWithAOneTimeCodeLockAfterFailuresAndEndSessionsWhenDisabledOrReset(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	setup := newMediator(t, s, desk.ID, "rui.lopes")
	if len(setup.Code) < 20 || time.Until(setup.ExpiresAt) < 71*time.Hour {
		t.Errorf("setup %+v: want a long one-time code valid 72 hours", setup)
	}
	for _, bad := range []events.Mediator{
		{Username: "rui.lopes", DeskID: desk.ID, Name: "Another", Language: "pt"}, // taken
		{Username: "Rui", DeskID: desk.ID, Name: "Rui", Language: "pt"},           // upper case
		{Username: "ana", DeskID: "desk-none", Name: "Ana", Language: "pt"},       // no such desk
		{Username: "ana", DeskID: desk.ID, Name: "Ana\u202eevil", Language: "pt"}, // bidi override
	} {
		if _, err := s.CreateMediator(ctx, bad, operator); err == nil {
			t.Errorf("CreateMediator(%+v) succeeded", bad)
		}
	}

	in, err := s.MediatorForSignIn(ctx, "rui.lopes")
	if err != nil || in.PasswordSet || in.PasswordHash != "" || in.DeskID != desk.ID {
		t.Fatalf("before setup: %+v, %v", in, err)
	}
	if _, err := s.MediatorForSignIn(ctx, "nobody"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("unknown username: %v, want ErrNotFound", err)
	}
	if u, ok, err := s.SetupCodeValid(ctx, setup.Code); err != nil || !ok || u != "rui.lopes" {
		t.Errorf("SetupCodeValid = %q %v %v", u, ok, err)
	}
	if u, err := s.SetMediatorPassword(ctx, setup.Code, "$argon2id$hash"); err != nil || u != "rui.lopes" {
		t.Fatalf("SetMediatorPassword = %q, %v", u, err)
	}
	if _, err := s.SetMediatorPassword(ctx, setup.Code, "$argon2id$again"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("a used setup code set a password again: %v", err)
	}
	if in, _ := s.MediatorForSignIn(ctx, "rui.lopes"); in.PasswordHash != "$argon2id$hash" || !in.PasswordSet {
		t.Errorf("after setup: %+v", in)
	}

	// Five failures in a row lock the account for the time given.
	for i := 1; i <= 5; i++ {
		n, locked, err := s.SignInFailed(ctx, "rui.lopes", "192.0.2.7", 5, 15*time.Minute)
		if err != nil || n != i || locked != (i == 5) {
			t.Fatalf("failure %d: %d failures, locked %v, %v", i, n, locked, err)
		}
	}
	if in, _ := s.MediatorForSignIn(ctx, "rui.lopes"); time.Until(in.LockedUntil) < 14*time.Minute {
		t.Errorf("locked until %v, want about 15 minutes from now", in.LockedUntil)
	}

	token := startSession(t, s, "rui.lopes", "token-1")
	if in, _ := s.MediatorForSignIn(ctx, "rui.lopes"); in.FailedAttempts != 0 || !in.LockedUntil.IsZero() {
		t.Errorf("a sign-in did not forget the failures: %+v", in)
	}
	ses, err := s.Session(ctx, token, 30*time.Minute)
	if err != nil || ses.Mediator.Username != "rui.lopes" || ses.Desk != desk || ses.CSRF != "csrf-token-1" {
		t.Fatalf("Session = %+v, %v", ses, err)
	}
	if _, err := s.Session(ctx, token, -time.Second); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("a session idle for longer than allowed: %v, want ErrUnauthenticated", err)
	}

	// Disabling ends the session at once; enabling does not bring it back.
	if err := s.DisableMediator(ctx, "rui.lopes", false, operator); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, token, time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("session of a disabled mediator: %v", err)
	}
	if err := s.DisableMediator(ctx, "rui.lopes", true, operator); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, token, time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("session came back when the mediator was enabled: %v", err)
	}
	// A reset forgets the password and ends the new session too.
	token2 := startSession(t, s, "rui.lopes", "token-2")
	again, err := s.ResetMediator(ctx, "rui.lopes", operator)
	if err != nil || again.Code == setup.Code {
		t.Fatalf("reset: %+v %v", again, err)
	}
	if _, err := s.Session(ctx, token2, time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("session after a reset: %v", err)
	}
	if in, _ := s.MediatorForSignIn(ctx, "rui.lopes"); in.PasswordSet {
		t.Errorf("password kept after a reset")
	}
	token3 := startSession(t, s, "rui.lopes", "token-3")
	if err := s.EndSession(ctx, token3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, token3, time.Hour); !errors.Is(err, events.ErrUnauthenticated) {
		t.Errorf("session after sign-out: %v", err)
	}

	list, err := s.Mediators(ctx, desk.ID)
	if err != nil || len(list) != 1 || list[0].Username != "rui.lopes" {
		t.Errorf("Mediators = %+v, %v", list, err)
	}
	got := auditedActions(t, s, "mediator:rui.lopes")
	want := []string{"mediator_created by operator:ana", "mediator_password_set by mediator:rui.lopes"}
	for range 5 {
		want = append(want, "mediator_sign_in_failed by mediator:rui.lopes")
	}
	want = append(want, "mediator_signed_in by mediator:rui.lopes", "mediator_disabled by operator:ana", "mediator_enabled by operator:ana",
		"mediator_signed_in by mediator:rui.lopes", "mediator_reset by operator:ana", "mediator_signed_in by mediator:rui.lopes",
		"mediator_signed_out by mediator:rui.lopes")
	if !slices.Equal(got, want) {
		t.Errorf("audit log\n got %q\nwant %q", got, want)
	}
}

func TestVisits_KeepTheCitizenAndAnswersSealedOnlyWhileTheVisitLasts(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	newMediator(t, s, desk.ID, "rui.lopes")
	newMediator(t, s, desk.ID, "ana.sousa")
	citizen := events.Citizen{NationalID: "12345678", Name: "Maria da Silva"}
	id, err := s.StartVisit(ctx, events.Visit{DeskID: desk.ID, Username: "rui.lopes", Citizen: citizen, Language: "pt"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Visit(ctx, id, "ana.sousa"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("another mediator read the visit: %v", err)
	}
	if err := s.RecordConsent(ctx, id, "rui.lopes", "2026-12-01", "el"); err != nil {
		t.Fatal(err)
	}
	n, err := s.AddVisitService(ctx, id, "rui.lopes", "change-of-address")
	if err != nil || n != 1 {
		t.Fatalf("AddVisitService = %d, %v", n, err)
	}
	answers := map[string]json.RawMessage{"street": json.RawMessage(`"Rua Augusta 1"`)}
	if err := s.SaveVisitAnswers(ctx, id, "rui.lopes", n, answers, []string{"citizen-card"}); err != nil {
		t.Fatal(err)
	}
	// Nothing personal is in the clear in Postgres.
	var clear bool
	if err := s.Pool().QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM visits WHERE citizen::text LIKE '%Maria%' OR citizen::text LIKE '%12345678%')
		    OR EXISTS (SELECT 1 FROM visit_services WHERE encode(answers, 'escape') LIKE '%Augusta%')`).Scan(&clear); err != nil || clear {
		t.Errorf("the citizen or an answer is stored in the clear (%v)", err)
	}
	v, err := s.OpenVisit(ctx, "rui.lopes")
	if err != nil || v.ID != id || v.Citizen != citizen || v.Language != "el" || v.Consent == nil || v.Consent.Version != "2026-12-01" {
		t.Fatalf("OpenVisit = %+v, %v", v, err)
	}
	if len(v.Services) != 1 || string(v.Services[0].Answers["street"]) != `"Rua Augusta 1"` || !slices.Equal(v.Services[0].Documents, []string{"citizen-card"}) ||
		v.Services[0].IdempotencyKey == "" {
		t.Errorf("services %+v", v.Services)
	}
	if err := s.VisitServiceSubmitted(ctx, id, n, "req-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveVisitAnswers(ctx, id, "rui.lopes", n, answers, nil); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("answers saved to a submitted service: %v", err)
	}
	v, _ = s.Visit(ctx, id, "rui.lopes")
	if v.Services[0].RequestID != "req-1" || v.Services[0].Answers != nil || v.Services[0].SubmittedAt.IsZero() {
		t.Errorf("submitted service %+v: want its request and no answers kept", v.Services[0])
	}
	// A second service, then a new visit ends this one and forgets the
	// citizen and the answers not submitted.
	m, _ := s.AddVisitService(ctx, id, "rui.lopes", "criminal-record-certificate")
	if err := s.SaveVisitAnswers(ctx, id, "rui.lopes", m, answers, nil); err != nil {
		t.Fatal(err)
	}
	next, err := s.StartVisit(ctx, events.Visit{DeskID: desk.ID, Username: "rui.lopes", Citizen: events.Citizen{NationalID: "87654321", Name: "João"}, Language: "pt"})
	if err != nil {
		t.Fatal(err)
	}
	v, _ = s.Visit(ctx, id, "rui.lopes")
	if v.EndedAt.IsZero() || v.Citizen != (events.Citizen{}) || v.Services[1].Answers != nil {
		t.Errorf("the visit left open: %+v", v)
	}
	if open, _ := s.OpenVisit(ctx, "rui.lopes"); open == nil || open.ID != next {
		t.Errorf("open visit %+v, want the new one", open)
	}
	// Erasing the new visit's citizen ends it too.
	if _, err := s.EraseCitizen(ctx, "87654321", events.By{Actor: "operator:ana", Reason: "the citizen asked"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenVisit(ctx, "rui.lopes"); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("the erased citizen's visit is still open: %v", err)
	}
}

func TestCitizenRequests_FindsTheDesksRequestsOfANationalIDAndAuditsTheLookUp(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	mine := newRequest(desk.ID, "birth-certificate", t0)
	mine.Citizen.NationalID = "AB-1234"
	mine.Consent = &events.ConsentGiven{Version: "2026-12-01", Language: "pt", At: t0.Add(-time.Minute)}
	other := newRequest(desk.ID, "birth-certificate", t0)
	elsewhere := newRequest("desk-other", "birth-certificate", t0)
	elsewhere.Citizen.NationalID = "AB-1234"
	mustProject(t, s, submitted(mine), submitted(other), submitted(elsewhere))

	if _, err := s.CitizenRequests(ctx, desk.ID, "AB-1234", events.By{Actor: "mediator:rui.lopes"}); err == nil {
		t.Error("a look-up without a reason succeeded")
	}
	found, err := s.CitizenRequests(ctx, desk.ID, "ab-1234", events.By{Actor: "mediator:rui.lopes", Reason: "the citizen asked for their requests"})
	if err != nil || len(found) != 1 || found[0].ID != mine.ID {
		t.Fatalf("CitizenRequests = %+v, %v; want the desk's one request of that citizen", found, err)
	}
	entries, err := s.AuditEntries(ctx, events.AuditQuery{Action: events.AuditCitizenLookedUp})
	if err != nil || len(entries) != 1 || entries[0].Actor != "mediator:rui.lopes" || entries[0].Reason == "" {
		t.Fatalf("audit %+v, %v", entries, err)
	}
	if b, _ := json.Marshal(entries[0]); strings.Contains(strings.ToUpper(string(b)), "AB-1234") {
		t.Errorf("the audit entry holds the national ID: %s", b)
	}
	v, err := s.RequestForDesk(ctx, desk.ID, mine.ID)
	if err != nil || v.Consent == nil || *v.Consent != *mine.Consent || v.Mediator != "ana.sousa" {
		t.Errorf("request view consent %+v mediator %q, %v; want %+v", v.Consent, v.Mediator, err, mine.Consent)
	}
}

func TestEndIdleVisits_EndsVisitsStartedBeforeTheCutoffAndForgetsTheirCitizens(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk := newDesk(t, s, "lisboa")
	newMediator(t, s, desk.ID, "rui.lopes")
	id, err := s.StartVisit(ctx, events.Visit{DeskID: desk.ID, Username: "rui.lopes", Citizen: events.Citizen{NationalID: "12345678", Name: "Maria"}, Language: "pt"})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := s.AddVisitService(ctx, id, "rui.lopes", "birth-certificate")
	if err := s.SaveVisitAnswers(ctx, id, "rui.lopes", n, map[string]json.RawMessage{"x": json.RawMessage(`1`)}, nil); err != nil {
		t.Fatal(err)
	}
	if ended, err := s.EndIdleVisits(ctx, time.Now().Add(-time.Hour)); err != nil || ended != 0 {
		t.Fatalf("a visit started now ended by a cutoff an hour ago: %d, %v", ended, err)
	}
	if ended, err := s.EndIdleVisits(ctx, time.Now().Add(time.Hour)); err != nil || ended != 1 {
		t.Fatalf("EndIdleVisits = %d, %v; want the one visit", ended, err)
	}
	v, err := s.Visit(ctx, id, "rui.lopes")
	if err != nil || v.EndedAt.IsZero() || v.Citizen != (events.Citizen{}) || v.Services[0].Answers != nil {
		t.Errorf("after ending: %+v, %v", v, err)
	}
}
