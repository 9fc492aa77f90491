package postgres_test

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/schemas"
	"github.com/spotflow/spotflow/workers/postgres"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

// chain links what is pending and fails the test on an error.
func chain(t *testing.T, s *postgres.Store) int {
	t.Helper()
	n, err := s.ChainAudit(t.Context())
	if err != nil {
		t.Fatalf("ChainAudit: %v", err)
	}
	return n
}

// verify verifies the chain and fails the test unless it is intact.
func verify(t *testing.T, s *postgres.Store, anchors ...postgres.AuditAnchor) events.AuditChainState {
	t.Helper()
	st, err := s.VerifyAudit(t.Context(), anchors...)
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	return st
}

// brokenAt verifies the chain and returns where it broke, failing the test
// if it did not.
func brokenAt(t *testing.T, s *postgres.Store) *postgres.BrokenChainError {
	t.Helper()
	st, err := s.VerifyAudit(t.Context())
	var broken *postgres.BrokenChainError
	if !errors.As(err, &broken) {
		t.Fatalf("VerifyAudit = %+v, %v; want a broken chain", st, err)
	}
	return broken
}

// tamper runs sql on table with its append-only trigger disabled, as a
// database owner bent on rewriting history could.
func tamper(t *testing.T, s *postgres.Store, table, trigger, sql string, args ...any) {
	t.Helper()
	ctx := t.Context()
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE `+table+` DISABLE TRIGGER `+trigger); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ALTER TABLE `+table+` ENABLE TRIGGER `+trigger)
		return err
	})
	if err != nil {
		t.Fatalf("tamper with %s: %v", table, err)
	}
}

// someHistory records eight entries: four actions of operators, then four
// submissions.
func someHistory(t *testing.T, s *postgres.Store) {
	t.Helper()
	ctx := t.Context()
	desk, _, err := s.RegisterDesk(ctx, "lisboa", "Loja do Cidadão Saldanha", time.Time{}, events.By{Actor: "operator:ana"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddAgencyCredential(ctx, "tax", "U"+desk.ID, "operator:ana"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeDeskCredentials(ctx, desk.ID, "", events.By{Actor: "operator:rui", Reason: "the desk closed"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(ctx, events.By{Actor: "operator:rui", Reason: "citizen asked at the counter"}, events.AuditCitizenLookedUp, "citizen-ref-1", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		r := newRequest(desk.ID, "change-of-address", t0.Add(time.Duration(i)*time.Second))
		mustProject(t, s, submitted(r))
	}
}

func TestAudit_ChainLinksEveryEntryAndVerifyRecomputesIt(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	someHistory(t, s)

	before := verify(t, s)
	if before.Linked != 0 || before.Pending != 8 {
		t.Errorf("before chaining: %+v, want nothing linked and 8 entries pending", before)
	}
	if n := chain(t, s); n != 8 {
		t.Errorf("ChainAudit linked %d entries, want 8", n)
	}
	first := verify(t, s)
	if first.Linked != 8 || first.Pending != 0 || first.HeadSeq != 8 || len(first.HeadHash) != 64 {
		t.Errorf("after chaining: %+v, want 8 linked, none pending, the head at 8", first)
	}
	if n := chain(t, s); n != 0 {
		t.Errorf("ChainAudit with nothing pending linked %d", n)
	}

	someHistory(t, s)
	chain(t, s)
	second := verify(t, s, postgres.AuditAnchor{Seq: first.HeadSeq, Hash: first.HeadHash})
	if second.Linked != 16 || second.HeadHash == first.HeadHash {
		t.Errorf("after more history: %+v, want 16 linked and a new head", second)
	}
	_, err := s.VerifyAudit(t.Context(), postgres.AuditAnchor{Seq: first.HeadSeq, Hash: second.HeadHash})
	var broken *postgres.BrokenChainError
	if !errors.As(err, &broken) || broken.Seq != first.HeadSeq {
		t.Errorf("VerifyAudit with a wrong anchor: %v, want the chain broken at link %d", err, first.HeadSeq)
	}
	if _, err := s.VerifyAudit(t.Context(), postgres.AuditAnchor{Seq: 99, Hash: second.HeadHash}); !errors.As(err, &broken) {
		t.Errorf("VerifyAudit with an anchor past the head: %v, want a broken chain", err)
	}

	entries, err := s.AuditEntries(t.Context(), events.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 16 {
		t.Fatalf("AuditEntries listed %d entries, want 16", len(entries))
	}
	var seqs []int64
	for _, e := range entries {
		seqs = append(seqs, e.Seq)
	}
	slices.Sort(seqs)
	if seqs[0] != 1 || seqs[15] != 16 || len(slices.Compact(seqs)) != 16 {
		t.Errorf("entries' places in the chain %v, want 1 to 16 once each", seqs)
	}
}

func TestAudit_SubmissionsAreRecordedWithTheirMediatorOnce(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	desk, _, err := s.CreateDesk(t.Context(), "lisboa", "Loja do Cidadão Laranjeiras")
	if err != nil {
		t.Fatal(err)
	}
	r := newRequest(desk.ID, "change-of-address", t0)
	r.VisitID = "visit-1"
	anonymous := newRequest(desk.ID, "tax-id-certificate", t0.Add(time.Second))
	anonymous.Mediator = ""
	mustProject(t, s, submitted(r), submitted(anonymous))
	mustProject(t, s, submitted(r)) // redelivered: projected once, recorded once

	entries, err := s.AuditEntries(t.Context(), events.AuditQuery{Action: events.AuditSubmission})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]events.AuditEntry{}
	for _, e := range entries {
		got[e.Target] = e
	}
	if len(entries) != 2 {
		t.Fatalf("submissions recorded %+v, want one per request", entries)
	}
	want := events.AuditEntry{
		Kind: "submission", At: t0, Actor: "mediator:ana.sousa", Action: events.AuditSubmission, Target: r.ID,
		Detail: map[string]any{"desk": desk.ID, "municipality": "lisboa", "service": "change-of-address", "visit": "visit-1"},
	}
	e := got[r.ID]
	if e.Kind != want.Kind || !e.At.Equal(want.At) || e.Actor != want.Actor || e.Action != want.Action || fmt.Sprint(e.Detail) != fmt.Sprint(want.Detail) {
		t.Errorf("submission recorded as %+v, want %+v", e, want)
	}
	if a := got[anonymous.ID].Actor; a != "desk:"+desk.ID {
		t.Errorf("a submission without a mediator is recorded as %q's, want the desk's", a)
	}
	byAna, err := s.AuditEntries(t.Context(), events.AuditQuery{Actor: "mediator:ana.sousa"})
	if err != nil || len(byAna) != 1 {
		t.Errorf("entries of mediator:ana.sousa: %+v (err %v), want her submission", byAna, err)
	}
}

func TestAudit_VerifyNamesTheFirstBrokenEntry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		tamper       func(t *testing.T, s *postgres.Store)
		seq          int64
		kind, reason string
	}{{
		name: "an operator's entry rewritten",
		tamper: func(t *testing.T, s *postgres.Store) {
			tamper(t, s, "audit_log", "audit_log_is_append_only",
				`UPDATE audit_log SET actor = 'operator:nobody' WHERE id = (SELECT log_id FROM audit_chain WHERE seq = 3)`)
		},
		seq: 3, kind: "log", reason: "altered",
	}, {
		name: "a submission's mediator rewritten",
		tamper: func(t *testing.T, s *postgres.Store) {
			tamper(t, s, "audit_submissions", "audit_submissions_is_append_only",
				`UPDATE audit_submissions SET mediator = 'someone.else' WHERE id = (SELECT submission_id FROM audit_chain WHERE seq = 6)`)
		},
		seq: 6, kind: "submission", reason: "altered",
	}, {
		name: "a reason rewritten",
		tamper: func(t *testing.T, s *postgres.Store) {
			tamper(t, s, "audit_log", "audit_log_is_append_only", `UPDATE audit_log SET reason = '' WHERE reason <> ''`)
		},
		seq: 3, kind: "log", reason: "altered",
	}, {
		name: "a link's hash recomputed over a rewritten entry",
		tamper: func(t *testing.T, s *postgres.Store) {
			tamper(t, s, "audit_chain", "audit_chain_is_append_only",
				`UPDATE audit_chain SET hash = sha256(hash) WHERE seq = 2`)
		},
		seq: 2, kind: "log", reason: "altered",
	}, {
		name: "a link removed",
		tamper: func(t *testing.T, s *postgres.Store) {
			tamper(t, s, "audit_chain", "audit_chain_is_append_only", `DELETE FROM audit_chain WHERE seq = 5`)
		},
		seq: 6, kind: "submission", reason: "link 5 is missing",
	}, {
		name: "an entry slipped in unlinked",
		tamper: func(t *testing.T, s *postgres.Store) {
			var id int64
			err := s.Pool().QueryRow(t.Context(), `INSERT INTO audit_log (actor, action, target) VALUES ('operator:nobody', 'replay', 'x') RETURNING id`).Scan(&id)
			if err == nil {
				_, err = s.Pool().Exec(t.Context(), `DELETE FROM audit_pending WHERE kind = 'log' AND entry_id = $1`, id)
			}
			if err != nil {
				t.Fatal(err)
			}
		},
		seq: 0, kind: "log", reason: "neither linked nor waiting",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := pgtest.Store(t)
			someHistory(t, s)
			chain(t, s)
			verify(t, s)
			tt.tamper(t, s)
			broken := brokenAt(t, s)
			if broken.Seq != tt.seq || broken.Kind != tt.kind || !strings.Contains(broken.Problem, tt.reason) {
				t.Errorf("VerifyAudit: %v; want link %d (%s entry) named, %q", broken, tt.seq, tt.kind, tt.reason)
			}
			if broken.Kind != "" && broken.EntryID == 0 {
				t.Errorf("VerifyAudit: %v names no entry", broken)
			}
		})
	}
}

func TestAudit_RefusesUpdateDeleteAndTruncate(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	someHistory(t, s)
	chain(t, s)
	ctx := t.Context()
	for _, sql := range []string{
		`UPDATE audit_log SET actor = 'operator:nobody'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log CASCADE`,
		`UPDATE audit_submissions SET mediator = 'someone.else'`,
		`DELETE FROM audit_submissions`,
		`TRUNCATE audit_submissions CASCADE`,
		`UPDATE audit_chain SET hash = sha256(hash)`,
		`DELETE FROM audit_chain`,
		`TRUNCATE audit_chain`,
	} {
		_, err := s.Pool().Exec(ctx, sql)
		if err == nil || !strings.Contains(err.Error(), "is append-only") {
			t.Errorf("%s: %v, want it refused as append-only", sql, err)
		}
	}
	if st := verify(t, s); st.Linked != 8 {
		t.Errorf("after the refusals: %+v, want the 8 entries still linked", st)
	}
}

func TestAudit_RefusesAnEntryWithoutAnActorOrAReasonItNeeds(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := t.Context()
	for name, tt := range map[string]struct {
		by     events.By
		action events.AuditAction
	}{
		"an unknown action":                {events.By{Actor: "operator:ana"}, "coffee_break"},
		"no actor":                         {events.By{Reason: "curious"}, events.AuditReplay},
		"a look-up without a reason":       {events.By{Actor: "operator:ana"}, events.AuditCitizenLookedUp},
		"an erasure with a blank reason":   {events.By{Actor: "operator:ana", Reason: "  "}, events.AuditCitizenErased},
		"a submission, the database's own": {events.By{Actor: "mediator:ana"}, events.AuditSubmission},
	} {
		if err := s.Audit(ctx, tt.by, tt.action, "x", nil); err == nil {
			t.Errorf("Audit of %s succeeded", name)
		}
	}
	if err := s.Audit(ctx, events.By{Actor: "operator:ana"}, events.AuditCitizenLookedUp, "x", nil); !errors.Is(err, postgres.ErrReasonRequired) {
		t.Errorf("Audit of a look-up without a reason: %v, want ErrReasonRequired", err)
	}
	if st := verify(t, s); st.Pending != 0 {
		t.Errorf("refused entries left %d entries behind", st.Pending)
	}
	if err := s.Audit(ctx, events.By{Actor: "operator:ana"}, events.AuditOperatorSignedIn, "ana", nil); err != nil {
		t.Errorf("Audit of a sign-in: %v", err)
	}
}

func TestAudit_ChainersAndWritersAtOnceLeaveOneIntactChain(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	desk, _, err := s.CreateDesk(t.Context(), "porto", "Loja do Cidadão Porto")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				r := newRequest(desk.ID, "change-of-address", t0.Add(time.Duration(w*100+i)*time.Millisecond))
				if err := errors.Join(s.Project(t.Context(), []events.Change{submitted(r)})...); err != nil {
					errs <- err
					return
				}
				if err := s.Audit(t.Context(), events.By{Actor: "operator:ana"}, events.AuditOperatorSignedIn, strconv.Itoa(i), nil); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 3 {
		wg.Go(func() {
			for range 20 {
				if _, err := s.ChainAudit(t.Context()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	chain(t, s)
	// 100 submissions, 100 sign-ins
	if st := verify(t, s); st.Linked != 200 || st.Pending != 0 {
		t.Errorf("after writers and chainers at once: %+v, want 200 entries linked", st)
	}
}

// TestMigrations_BringEarlierAuditEntriesAndDeskTokensAlong applies the
// migrations up to 009, writes what a deployment of then would hold (an
// audit entry, a desk with its token), then the rest: the entry is linked
// first, and the token still lets the desk in.
func TestMigrations_BringEarlierAuditEntriesAndDeskTokensAlong(t *testing.T) {
	t.Parallel()
	base := pgtest.URL(t)
	ctx := withTimeout(t)
	admin := pgtest.Pool(t, base)
	schema := fmt.Sprintf("test_migrate_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(t.Context(), "DROP SCHEMA "+schema+" CASCADE") })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	pool := pgtest.Pool(t, u.String())

	if _, err := pool.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(schemas.Migrations, "migrations/*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		v, _ := strconv.Atoi(strings.SplitN(path.Base(name), "_", 2)[0])
		if v > 9 {
			continue
		}
		sql, err := fs.ReadFile(schemas.Migrations, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, v, path.Base(name)); err != nil {
			t.Fatal(err)
		}
	}
	const token = "sfd_an-old-token-of-a-desk-made-before-credentials"
	if _, err := pool.Exec(ctx, `INSERT INTO desks (id, municipality, name, token_hash) VALUES ('desk-old', 'braga', 'Old desk', sha256($1::bytea))`,
		[]byte(token)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO audit_log (actor, action, target, detail) VALUES ('operator:ana', 'replay', 'wi-1', '{"dead_letter": 1}')`); err != nil {
		t.Fatal(err)
	}

	applied, err := postgres.Migrate(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(applied, 10) || !slices.Contains(applied, 11) {
		t.Fatalf("Migrate applied %v, want 10 and 11 among them", applied)
	}
	s := postgres.NewStore(pool, []byte("0123456789abcdef0123456789abcdef"))
	if d, err := s.DeskByToken(ctx, token); err != nil || d.ID != "desk-old" {
		t.Errorf("the old desk's token after the migration: %+v, %v", d, err)
	}
	if err := s.Audit(ctx, events.By{Actor: "operator:rui"}, events.AuditOperatorSignedIn, "rui", nil); err != nil {
		t.Fatal(err)
	}
	chain(t, s)
	if st := verify(t, s); st.Linked != 2 {
		t.Errorf("after the migration: %+v, want the old entry and the new one linked", st)
	}
	var first string
	if err := pool.QueryRow(ctx, `SELECT l.actor FROM audit_chain c JOIN audit_log l ON l.id = c.log_id WHERE c.seq = 1`).Scan(&first); err != nil || first != "operator:ana" {
		t.Errorf("link 1 holds %q's entry (err %v), want the one written before the chain", first, err)
	}
}

// BenchmarkAudit_ProjectWithAndWithoutSubmissionAudit measures what
// recording each submission in the audit log costs the projector: the
// workload of BenchmarkProject (batches of 500 changes, each request
// submitted, routed, dispatched, accepted and completed), with the trigger
// that records submissions on and off, each on a schema of its own. Run
// it with -count to interleave the two; compare changes/s.
func BenchmarkAudit_ProjectWithAndWithoutSubmissionAudit(b *testing.B) {
	for _, audited := range []bool{true, false} {
		b.Run(map[bool]string{true: "audit on", false: "audit off"}[audited], func(b *testing.B) {
			s := postgres.NewStore(pgtest.Pool(b, pgtest.Schema(b)), []byte("0123456789abcdef0123456789abcdef"))
			ctx := b.Context()
			if !audited {
				if _, err := s.Pool().Exec(ctx, `ALTER TABLE requests DISABLE TRIGGER requests_audit_submissions`); err != nil {
					b.Fatal(err)
				}
			}
			const batch = 500
			start := time.Now().UTC().Add(-time.Hour)
			n := 0
			var changes []events.Change
			b.ResetTimer()
			for projected := 0; projected < b.N; projected += batch {
				for len(changes) < batch {
					at := start.Add(time.Duration(n) * 10 * time.Millisecond)
					r := newRequest(fmt.Sprintf("desk-%d", n%50), "change-of-address", at)
					changes = append(changes, submitted(r), routed(r, at.Add(time.Millisecond), "tax"),
						agencyEvent(r, "tax", events.StatusDispatched, at.Add(2*time.Millisecond)),
						agencyEvent(r, "tax", events.StatusAccepted, at.Add(3*time.Millisecond)),
						agencyEvent(r, "tax", events.StatusCompleted, at.Add(4*time.Millisecond)))
					n++
				}
				if err := errors.Join(s.Project(ctx, changes[:batch])...); err != nil {
					b.Fatal(err)
				}
				changes = changes[batch:]
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// BenchmarkAudit_Chain measures the chainer: submissions linked per
// second, from a backlog of 20,000.
func BenchmarkAudit_Chain(b *testing.B) {
	s := postgres.NewStore(pgtest.Pool(b, pgtest.Schema(b)), []byte("0123456789abcdef0123456789abcdef"))
	ctx := b.Context()
	linked := 0
	for b.Loop() {
		b.StopTimer()
		if _, err := s.Pool().Exec(ctx, `
			INSERT INTO audit_submissions (at, request_id, desk_id, municipality, mediator, service_code)
			SELECT now(), 'req-' || g, 'desk-' || (g % 50), 'lisboa', 'ana.sousa', 'change-of-address'
			FROM generate_series(1, 20000) g`); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n, err := s.ChainAudit(ctx)
		if err != nil {
			b.Fatal(err)
		}
		linked += n
	}
	b.ReportMetric(float64(linked)/b.Elapsed().Seconds(), "entries/s")
}
