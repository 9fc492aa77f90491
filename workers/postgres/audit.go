package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spotflow/spotflow/events"
)

// The audit log (schemas/migrations/010_audit_chain.up.sql) holds its
// entries in two append-only tables: audit_log, which the functions here
// write, and audit_submissions, which the database writes as requests are
// projected. Writers never wait on one another: each new entry is only
// marked pending, and ChainAudit, one caller at a time, links the pending
// entries into audit_chain, each link holding the SHA-256 of the link before
// and of its own canonical form (linkHash). VerifyAudit recomputes the chain.

// ErrReasonRequired: a sensitive action (events.AuditAction.NeedsReason)
// was asked for without saying why.
var ErrReasonRequired = errors.New("a reason is required for this action")

// audit appends an action by a person to the audit log; it is recorded
// only if the transaction of db commits.
func audit(ctx context.Context, db DBTX, actor string, action events.AuditAction, target string, detail map[string]any) error {
	return auditBy(ctx, db, events.By{Actor: actor}, action, target, detail)
}

// auditBy is audit with the reason for a sensitive action. It refuses an
// action not in events.AuditActions, an entry without an actor, and a
// sensitive action without a reason.
func auditBy(ctx context.Context, db DBTX, by events.By, action events.AuditAction, target string, detail map[string]any) error {
	switch {
	case !action.Known():
		return fmt.Errorf("audit: %q is not an action the audit log knows", action)
	case action == events.AuditSubmission:
		return errors.New("audit: submissions are recorded by the database as requests are projected")
	case strings.TrimSpace(by.Actor) == "":
		return fmt.Errorf("audit %s: who is acting is required", action)
	case action.NeedsReason() && strings.TrimSpace(by.Reason) == "":
		return fmt.Errorf("audit %s: %w", action, ErrReasonRequired)
	}
	if detail == nil {
		detail = map[string]any{}
	}
	_, err := db.Exec(ctx, `INSERT INTO audit_log (actor, action, target, reason, detail) VALUES ($1, $2, $3, $4, $5)`,
		by.Actor, string(action), target, by.Reason, detail)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// Audit records an action by a person that has no method of its own on
// the store (a sign-in, a look-up, an erasure): who, what, on what, and,
// for a sensitive action, why. detail may be nil; it must never hold a
// secret or a citizen's personal data.
func (s *Store) Audit(ctx context.Context, by events.By, action events.AuditAction, target string, detail map[string]any) error {
	return auditBy(ctx, s.pool, by, action, target, detail)
}

// ViewDeadLetter is DeadLetter on behalf of a person, who must say why:
// the view is in the audit log before the dead letter is returned.
func (s *Store) ViewDeadLetter(ctx context.Context, id int64, by events.By) (events.DeadLetter, error) {
	var d events.DeadLetter
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		d, err = scanDeadLetter(tx.QueryRow(ctx, `SELECT `+deadLetterColumns+` FROM `+deadLetters+` WHERE d.id = $1`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return events.ErrNotFound
		}
		if err != nil {
			return err
		}
		return auditBy(ctx, tx, by, events.AuditDeadLetterViewed, fmt.Sprint(id),
			map[string]any{"agency": d.Agency, "work_item": d.WorkItemID, "request": d.RequestID})
	})
	if errors.Is(err, events.ErrNotFound) || errors.Is(err, ErrReasonRequired) {
		return events.DeadLetter{}, err
	}
	if err != nil {
		return events.DeadLetter{}, fmt.Errorf("view dead letter: %w", err)
	}
	d.Payload, err = s.unseal(d.Payload)
	return d, err
}

// AuditEntries lists entries of the audit log that q selects, newest
// first. It reads every entry's table: an operator's tool, not a hot path.
func (s *Store) AuditEntries(ctx context.Context, q events.AuditQuery) ([]events.AuditEntry, error) {
	if q.Limit <= 0 || q.Limit > 10000 {
		q.Limit = 100
	}
	rows, err := s.pool.Query(ctx, `
		SELECT kind, id, coalesce(seq, 0), at, actor, action, target, reason, detail FROM audit_entries
		WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR action = $2) AND ($3 = '' OR target = $3)
		  AND ($4::timestamptz IS NULL OR at >= $4)
		ORDER BY at DESC, id DESC LIMIT $5`,
		q.Actor, string(q.Action), q.Target, nullTime(q.Since), q.Limit)
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.AuditEntry, error) {
		var e events.AuditEntry
		err := r.Scan(&e.Kind, &e.ID, &e.Seq, &e.At, &e.Actor, &e.Action, &e.Target, &e.Reason, &e.Detail)
		if len(e.Detail) == 0 {
			e.Detail = nil
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	return out, nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// chainBatch caps the entries one transaction of ChainAudit links.
const chainBatch = 5000

// errChainBusy: another chainer holds the chain.
var errChainBusy = errors.New("another chainer is linking the audit log")

// ChainAudit links every entry pending when it starts into the hash chain,
// a few thousand per transaction, and returns how many it linked. Only one
// chainer links at a time: if another is at work, ChainAudit returns 0 at
// once, and the other links what is pending. Safe to call from any number
// of processes; a periodic caller keeps the unlinked tail a few seconds
// long.
func (s *Store) ChainAudit(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.chainPass(ctx)
		total += n
		if errors.Is(err, errChainBusy) {
			return total, nil
		}
		if err != nil {
			return total, classify(fmt.Errorf("chain the audit log: %w", err))
		}
		if n < chainBatch {
			return total, nil
		}
	}
}

// chainPass links up to chainBatch pending entries in one transaction.
func (s *Store) chainPass(ctx context.Context) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// EXCLUSIVE lets readers (verify) in and keeps other chainers out.
		if _, err := tx.Exec(ctx, `LOCK TABLE audit_chain IN EXCLUSIVE MODE NOWAIT`); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
				return errChainBusy
			}
			return err
		}
		seq, prev := int64(0), make([]byte, sha256.Size)
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT p.kind, p.entry_id, coalesce(l.at, s.at), `+entryFields+`
			FROM audit_pending p
			LEFT JOIN audit_log l ON p.kind = 'log' AND l.id = p.entry_id
			LEFT JOIN audit_submissions s ON p.kind = 'submission' AND s.id = p.entry_id
			ORDER BY p.kind, p.entry_id LIMIT $1`, chainBatch)
		if err != nil {
			return err
		}
		entries, err := pgx.CollectRows(rows, scanChainEntry)
		if err != nil {
			return err
		}
		if n = len(entries); n == 0 {
			return nil
		}
		seqs, prevs, hashes := make([]int64, n), make([][]byte, n), make([][]byte, n)
		logIDs, subIDs := make([]*int64, n), make([]*int64, n)
		kinds, ids := make([]string, n), make([]int64, n)
		for i, e := range entries {
			if e.at.IsZero() {
				return fmt.Errorf("pending %s entry %d is missing from its table", e.kind, e.id)
			}
			seq++
			seqs[i], prevs[i] = seq, prev
			prev = linkHash(prev, seq, e)
			hashes[i] = prev
			kinds[i], ids[i] = e.kind, e.id
			if e.kind == "log" {
				logIDs[i] = &entries[i].id
			} else {
				subIDs[i] = &entries[i].id
			}
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO audit_chain (seq, log_id, submission_id, prev_hash, hash)
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[])`,
			seqs, logIDs, subIDs, prevs, hashes); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			DELETE FROM audit_pending p USING unnest($1::text[], $2::bigint[]) AS u(kind, id)
			WHERE p.kind = u.kind AND p.entry_id = u.id`, kinds, ids)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// entryFields are the stored columns of an entry that its link's hash
// covers, as text, in a fixed order per table; l and s are the entry's
// rows of audit_log and audit_submissions, one of them NULL.
const entryFields = `CASE WHEN l.id IS NOT NULL THEN ARRAY[l.actor, l.action, l.target, l.reason, l.detail::text]
	ELSE ARRAY[s.request_id, s.desk_id, s.municipality, s.mediator, s.service_code, s.visit_id] END`

// chainEntry is an entry as its link's hash covers it.
type chainEntry struct {
	kind   string
	id     int64
	at     time.Time
	fields []*string
}

func scanChainEntry(r pgx.CollectableRow) (chainEntry, error) {
	var e chainEntry
	var at *time.Time
	err := r.Scan(&e.kind, &e.id, &at, &e.fields)
	if at != nil {
		e.at = *at
	}
	return e, err
}

// linkHash is the hash of link seq holding e after a link whose hash is
// prev: SHA-256(prev || canonical), where canonical is the JSON array
// [seq, kind, id, at, fields...], at in UTC with microseconds
// ("2006-01-02T15:04:05.000000Z") and a NULL field as null. Changing it
// breaks every chain written before: don't.
func linkHash(prev []byte, seq int64, e chainEntry) []byte {
	canonical := make([]any, 0, 4+len(e.fields))
	canonical = append(canonical, seq, e.kind, e.id, e.at.UTC().Format("2006-01-02T15:04:05.000000Z"))
	for _, f := range e.fields {
		canonical = append(canonical, f)
	}
	b, err := json.Marshal(canonical)
	if err != nil {
		panic(fmt.Sprintf("audit: encode link %d: %v", seq, err)) // strings and numbers always encode
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(b)
	return h.Sum(nil)
}

// BrokenChainError says where the audit log's hash chain is broken: the
// first link (or entry) that does not check, and why. Everything before it
// checked.
type BrokenChainError struct {
	// Seq is the link's place in the chain; 0 for an entry in no link.
	Seq int64
	// Kind and EntryID name the entry: its table ("log" or "submission")
	// and its id there.
	Kind    string
	EntryID int64
	Problem string
}

// Is makes a BrokenChainError match events.ErrAuditChainBroken.
func (e *BrokenChainError) Is(target error) bool { return target == events.ErrAuditChainBroken }

func (e *BrokenChainError) Error() string {
	if e.Seq == 0 {
		return fmt.Sprintf("audit chain broken: %s entry %d: %s", e.Kind, e.EntryID, e.Problem)
	}
	return fmt.Sprintf("audit chain broken at link %d (%s entry %d): %s", e.Seq, e.Kind, e.EntryID, e.Problem)
}

// AuditAnchor is a link an operator noted down from an earlier
// verification (its place and hash in hex): the chain must still pass
// through it.
type AuditAnchor struct {
	Seq  int64
	Hash string
}

// VerifyAudit recomputes the audit log's whole hash chain in one snapshot
// and checks that every entry is linked or waiting for the chainer, and
// that the chain passes through each anchor. It returns what it found
// intact, or a *BrokenChainError naming the first link or entry that does
// not check. It only reads.
func (s *Store) VerifyAudit(ctx context.Context, anchors ...AuditAnchor) (events.AuditChainState, error) {
	var st events.AuditChainState
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT c.seq, c.prev_hash, c.hash,
			       CASE WHEN c.log_id IS NOT NULL THEN 'log' ELSE 'submission' END,
			       coalesce(c.log_id, c.submission_id), coalesce(l.at, s.at), `+entryFields+`
			FROM audit_chain c
			LEFT JOIN audit_log l ON l.id = c.log_id
			LEFT JOIN audit_submissions s ON s.id = c.submission_id
			ORDER BY c.seq`)
		if err != nil {
			return err
		}
		defer rows.Close()
		want := map[int64]string{}
		for _, a := range anchors {
			want[a.Seq] = strings.ToLower(a.Hash)
		}
		prev := make([]byte, sha256.Size)
		var seq int64
		var stored, storedPrev []byte
		for rows.Next() {
			var e chainEntry
			var at *time.Time
			if err := rows.Scan(&seq, &storedPrev, &stored, &e.kind, &e.id, &at, &e.fields); err != nil {
				return err
			}
			broken := func(problem string) error {
				return &BrokenChainError{Seq: seq, Kind: e.kind, EntryID: e.id, Problem: problem}
			}
			switch {
			case seq != st.Linked+1:
				return broken(fmt.Sprintf("link %d is missing", st.Linked+1))
			case at == nil:
				return broken("its entry is missing")
			case !bytes.Equal(storedPrev, prev):
				return broken("it does not hold the hash of the link before")
			}
			e.at = *at
			if !bytes.Equal(linkHash(prev, seq, e), stored) {
				return broken("its entry or its hash was altered")
			}
			if h, ok := want[seq]; ok && h != hex.EncodeToString(stored) {
				return broken("its hash is not the one noted down earlier")
			}
			delete(want, seq)
			prev = stored
			st.Linked = seq
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for seq := range want {
			return &BrokenChainError{Seq: seq, Problem: fmt.Sprintf("the chain ends at link %d: link %d, noted down earlier, is gone", st.Linked, seq)}
		}
		st.HeadSeq, st.HeadHash = st.Linked, hex.EncodeToString(prev)
		var kind string
		var id int64
		err = tx.QueryRow(ctx, `
			SELECT kind, id FROM (
				SELECT 'log' AS kind, l.id FROM audit_log l
				WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.log_id = l.id)
				  AND NOT EXISTS (SELECT 1 FROM audit_pending p WHERE p.kind = 'log' AND p.entry_id = l.id)
				UNION ALL
				SELECT 'submission', s.id FROM audit_submissions s
				WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.submission_id = s.id)
				  AND NOT EXISTS (SELECT 1 FROM audit_pending p WHERE p.kind = 'submission' AND p.entry_id = s.id)
			) AS unlinked ORDER BY kind, id LIMIT 1`).Scan(&kind, &id)
		switch {
		case err == nil:
			return &BrokenChainError{Kind: kind, EntryID: id, Problem: "it is neither linked nor waiting for the chainer"}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM audit_pending`).Scan(&st.Pending)
	})
	var broken *BrokenChainError
	if errors.As(err, &broken) {
		return st, err
	}
	if err != nil {
		return st, fmt.Errorf("verify the audit log: %w", err)
	}
	return st, nil
}
