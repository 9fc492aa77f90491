package postgres_test

import (
	"errors"
	"testing"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// TestEdgeCredentials_AreIssuedWithTheDesksTokenHashesListedAndRevokedInTheAuditLog
// checks what the hub keeps of desks' edges.
func TestEdgeCredentials_AreIssuedWithTheDesksTokenHashesListedAndRevokedInTheAuditLog(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk, _, err := s.CreateDesk(ctx, "aldeia", "Espaço Cidadão")
	if err != nil {
		t.Fatal(err)
	}
	got, hashes, err := s.AddEdgeCredential(ctx, desk.ID, "UEDGEKEY1", operator)
	if err != nil || got.ID != desk.ID || got.Municipality != "aldeia" || len(hashes) != 1 || len(hashes[0]) != 32 {
		t.Fatalf("AddEdgeCredential = %+v, %d hashes, %v; want the desk and its one token's SHA-256", got, len(hashes), err)
	}
	if _, _, err := s.AddEdgeCredential(ctx, "desk-none", "UEDGEKEY2", operator); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("an edge for no desk: %v, want ErrNotFound", err)
	}
	list, err := s.EdgeCredentials(ctx, false)
	if err != nil || len(list) != 1 || list[0].PublicKey != "UEDGEKEY1" || list[0].Municipality != "aldeia" {
		t.Fatalf("EdgeCredentials = %+v, %v", list, err)
	}
	if n, err := s.RevokeEdgeCredentials(ctx, desk.ID, operator); err != nil || n != 1 {
		t.Fatalf("RevokeEdgeCredentials = %d, %v", n, err)
	}
	if _, err := s.RevokeEdgeCredentials(ctx, desk.ID, operator); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("revoking again: %v, want ErrNotFound", err)
	}
	if list, err := s.EdgeCredentials(ctx, false); err != nil || len(list) != 0 {
		t.Errorf("in force after revocation: %+v, %v", list, err)
	}
	if all, err := s.EdgeCredentials(ctx, true); err != nil || len(all) != 1 || all[0].RevokedAt == nil {
		t.Errorf("all credentials: %+v, %v; want the one, revoked", all, err)
	}
	entries, err := s.AuditEntries(ctx, events.AuditQuery{Target: "desk:" + desk.ID})
	if err != nil {
		t.Fatal(err)
	}
	var actions []events.AuditAction
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	if len(actions) < 2 || actions[0] != events.AuditEdgeCredentialRevoked || actions[1] != events.AuditEdgeCredentialIssued {
		t.Errorf("audit log of the desk: %v, want the revocation after the issue", actions)
	}
}

// TestEdgeMediators_GoFromTheHubToTheEdgesDatabaseWithTheirPasswordHashes
// checks what an edge's bundle takes of the desk's mediators and how the
// edge's own database takes them in: those with a password and in force,
// updated on a second import, and the ones left out disabled.
func TestEdgeMediators_GoFromTheHubToTheEdgesDatabaseWithTheirPasswordHashes(t *testing.T) {
	t.Parallel()
	hub, edge := pgtest.Store(t), pgtest.Store(t)
	ctx := withTimeout(t)
	desk, _, err := hub.CreateDesk(ctx, "aldeia", "Espaço Cidadão")
	if err != nil {
		t.Fatal(err)
	}
	ana := newMediator(t, hub, desk.ID, "ana.sousa")
	if _, err := hub.SetMediatorPassword(ctx, ana.Code, "$argon2id$ana"); err != nil {
		t.Fatal(err)
	}
	newMediator(t, hub, desk.ID, "rui.lopes") // no password yet: cannot sign in anywhere
	list, err := hub.EdgeMediators(ctx, desk.ID)
	if err != nil || len(list) != 1 || list[0].Username != "ana.sousa" || list[0].PasswordHash != "$argon2id$ana" {
		t.Fatalf("EdgeMediators = %+v, %v; want ana with her hash alone", list, err)
	}

	if err := edge.ImportEdgeDesk(ctx, desk, list); err != nil {
		t.Fatal(err)
	}
	in, err := edge.MediatorForSignIn(ctx, "ana.sousa")
	if err != nil || in.PasswordHash != "$argon2id$ana" || in.DeskID != desk.ID || !in.DisabledAt.IsZero() {
		t.Fatalf("ana at the edge: %+v, %v", in, err)
	}
	// A second bundle: ana's new password, and a mediator no longer there.
	if err := edge.ImportEdgeDesk(ctx, desk, []events.EdgeMediator{{Username: "teresa", Name: "Teresa", Language: "pt", PasswordHash: "$argon2id$teresa"}}); err != nil {
		t.Fatal(err)
	}
	if in, _ := edge.MediatorForSignIn(ctx, "ana.sousa"); in.DisabledAt.IsZero() {
		t.Error("a mediator left out of the new bundle may still sign in at the edge")
	}
	if in, err := edge.MediatorForSignIn(ctx, "teresa"); err != nil || in.PasswordHash != "$argon2id$teresa" {
		t.Errorf("teresa at the edge: %+v, %v", in, err)
	}
}
