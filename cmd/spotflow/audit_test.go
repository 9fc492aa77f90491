package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

var lastLink = regexp.MustCompile(`last link (\d+:[0-9a-f]{64})`)

// auditOn returns a runner of `spotflow audit` on the database dbURL that
// ends the test when the command fails.
func auditOn(t *testing.T, dbURL string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append(append([]string{"audit"}, args...), "--database-url", dbURL, "--data-dir", t.TempDir(), "--log-level", "warn")
		if err := dispatch(t.Context(), args, &stdout, &stderr); err != nil {
			t.Fatalf("spotflow %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
}

// TestAudit_VerifyFailsNamingTheFirstBrokenEntryOnceTheLogIsRewritten
// records operators' actions with spotflow's commands, links and verifies
// the audit log with the real binary, then rewrites an entry as a database
// owner could (disabling the trigger that refuses it): `spotflow audit
// verify` exits non-zero naming that entry, and an anchor noted before
// catches even a chain recomputed after it.
func TestAudit_VerifyFailsNamingTheFirstBrokenEntryOnceTheLogIsRewritten(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	dbURL := pgtest.Schema(t)
	cli := commandsOn(t, dbURL)
	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(bin, append(args, "--database-url", dbURL, "--data-dir", t.TempDir(), "--log-level", "warn")...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}

	desk := issued(t, cli("desk", "create", "--municipality", "lisboa", "--name", "Loja do Cidadão"))
	cli("desk", "issue", "--desk", desk.DeskID)
	cli("desk", "revoke", "--desk", desk.DeskID, "--key", desk.Key, "--reason", "lost")
	if out := auditOn(t, dbURL)("chain"); out != "linked 3 entries\n" {
		t.Errorf("audit chain printed %q", out)
	}
	out, stderr, err := run("audit", "verify")
	m := lastLink.FindStringSubmatch(out)
	if err != nil || !strings.Contains(out, "audit log intact: 3 entries linked, 0 waiting") || m == nil {
		t.Fatalf("audit verify: %v\n%s%s", err, out, stderr)
	}
	anchor := m[1]

	// Rewrite who revoked the credential.
	pool := pgtest.Pool(t, dbURL)
	ctx := t.Context()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			ALTER TABLE audit_log DISABLE TRIGGER audit_log_is_append_only;
			UPDATE audit_log SET actor = 'operator:nobody' WHERE action = 'desk_credential_revoked';
			ALTER TABLE audit_log ENABLE TRIGGER audit_log_is_append_only`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, err = run("audit", "verify")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr, "audit chain broken at link 3 (log entry ") {
		t.Errorf("audit verify of a rewritten log: %v\n%s; want exit status 1 naming link 3", err, stderr)
	}

	// Recompute the whole chain over the rewritten entry, as an owner who
	// knows the canonical form could: only the anchor noted before sees it.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			ALTER TABLE audit_chain DISABLE TRIGGER audit_chain_is_append_only;
			DELETE FROM audit_chain;
			INSERT INTO audit_pending (kind, entry_id) SELECT 'log', id FROM audit_log;
			ALTER TABLE audit_chain ENABLE TRIGGER audit_chain_is_append_only`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	auditOn(t, dbURL)("chain")
	if out, stderr, err := run("audit", "verify"); err != nil {
		t.Errorf("audit verify of a recomputed chain: %v\n%s%s; want it intact but for the anchor", err, out, stderr)
	}
	_, stderr, err = run("audit", "verify", "--anchor", anchor)
	if !errors.As(err, &exit) || !strings.Contains(stderr, "link 3") || !strings.Contains(stderr, "noted down earlier") {
		t.Errorf("audit verify --anchor %s of a recomputed chain: %v\n%s; want it broken at the anchor", anchor, err, stderr)
	}
}

// TestAudit_DatabaseRefusesToChangeTheLog tries what an operator with
// spotflow's own database role might: every UPDATE, DELETE and TRUNCATE of
// the audit log is refused.
func TestAudit_DatabaseRefusesToChangeTheLog(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Schema(t)
	cli := commandsOn(t, dbURL)
	cli("desk", "create", "--municipality", "lisboa", "--name", "Loja do Cidadão")
	auditOn(t, dbURL)("chain")
	pool := pgtest.Pool(t, dbURL)
	for _, sql := range []string{
		`UPDATE audit_log SET actor = 'operator:nobody'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log CASCADE`,
		`UPDATE audit_chain SET hash = sha256(hash)`,
		`DELETE FROM audit_chain`,
		`TRUNCATE audit_chain`,
		`TRUNCATE audit_submissions CASCADE`,
	} {
		if _, err := pool.Exec(t.Context(), sql); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want it refused", sql, err)
		}
	}
	if out := auditOn(t, dbURL)("verify"); !strings.HasPrefix(out, "audit log intact: 1 entries linked") {
		t.Errorf("audit verify printed %q", out)
	}
}

// TestShowDeadLetter_NeedsAReasonAndRecordsTheView is `spotflow dead
// show`'s part: no reason, no view; with one, the view is in the audit log.
func TestShowDeadLetter_NeedsAReasonAndRecordsTheView(t *testing.T) {
	t.Parallel()
	store := postgres.NewStore(pgtest.Pool(t, pgtest.Schema(t)), []byte(strings.Repeat("k", 32)))
	ctx := context.Background()
	if _, err := store.RecordDeadLetter(ctx, events.DeadLetter{
		Stream: events.WorkStream, StreamSeq: 1, Subject: events.WorkSubject("tax"), WorkItemID: "wi-1",
		Agency: "tax", Reason: events.ReasonPermanent, LastError: "refused", Attempts: 1, Payload: []byte(`{"secret":"citizen"}`),
	}); err != nil {
		t.Fatal(err)
	}
	dead, err := store.ListDeadLetters(ctx, events.DeadLetterQuery{})
	if err != nil || len(dead) != 1 {
		t.Fatal(dead, err)
	}
	var stdout bytes.Buffer
	if err := showDeadLetter(ctx, store, dead[0].ID, events.By{Actor: operatorActor("ana")}, &stdout); !errors.Is(err, errUsage) {
		t.Errorf("without a reason: %v, want a usage error", err)
	}
	if err := showDeadLetter(ctx, store, dead[0].ID, events.By{Actor: operatorActor("ana"), Reason: "agency asks why wi-1 failed"}, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), `"work_item_id": "wi-1"`) || strings.Contains(stdout.String(), "citizen") {
		t.Errorf("dead show printed %s, want the dead letter without its message", stdout.String())
	}
	entries, err := store.AuditEntries(ctx, events.AuditQuery{Action: events.AuditDeadLetterViewed})
	if err != nil || len(entries) != 1 || entries[0].Actor != "operator:ana" || entries[0].Reason != "agency asks why wi-1 failed" {
		t.Errorf("audit log of views: %+v (err %v), want ana's, with her reason", entries, err)
	}
}
