package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spotflow/spotflow/events"
)

// reconcileLookback is how long after its acceptance the reconciler still
// looks at a request: StalledRequests takes keys claimed within a day
// before its cutoff (now minus the reconciler's After). Change both
// together.
const reconcileLookback = 24 * time.Hour

// pruneBatch caps the rows one statement of the pruner reads or deletes, so
// that no pass holds a long transaction or many locks.
const pruneBatch = 1000

// sealedRequestsMark names, in pruner_marks, the creation time of
// idempotency keys below which every request's sealed copy is deleted.
const sealedRequestsMark = "intake_keys.sealed_request"

// SealedCopyKept is how long after its acceptance a request's sealed copy
// may be kept, with the reconciler re-driving requests that made no
// progress for reconcileAfter: past it, nothing reads the copy.
func SealedCopyKept(reconcileAfter time.Duration) time.Duration {
	return reconcileAfter + reconcileLookback
}

// ClearSealedCopies deletes, as of now, the sealed copies that nothing can
// use any more, and returns how many.
//
// A request's sealed copy (intake_keys.sealed_request) serves the
// reconciler alone, which re-drives a request accepted within
// SealedCopyKept(reconcileAfter) that is not projected yet or still
// submitted, routed or dispatched (StalledRequests). The copy goes once its
// request got further (accepted, in progress, or ended: its agencies have
// it, and statuses never go back within a round; a replay's new round is
// published from the dead letter's message, and this copy, of round 0,
// could no longer move it) or was erased, and in any case once
// SealedCopyKept has passed. Keys are walked in the order they were
// claimed, from where every copy before was deleted (kept in
// pruner_marks): each pass reads the keys of the last SealedCopyKept, a few
// thousand per statement, and none older.
//
// A dead letter's sealed message serves replays alone. It goes once the
// request is completed or rejected, whose outcome a replay can no longer
// change, or erased (then with its last error, which may quote the
// citizen's case). Dead letters of failed requests keep their message,
// since a replay is how a failure is mended, until the request's retention
// ends (PruneRequests); so do those of no known request.
//
// It also notes the fingerprint of the store's citizen key, unless one is
// noted already, for erasures to check theirs against.
func (s *Store) ClearSealedCopies(ctx context.Context, now time.Time, reconcileAfter time.Duration) (events.Pruned, error) {
	var p events.Pruned
	if err := s.noteCitizenKey(ctx); err != nil {
		return p, classify(fmt.Errorf("note the citizen key: %w", err))
	}
	var err error
	if p.SealedRequests, err = s.clearSealedRequests(ctx, now, now.Add(-SealedCopyKept(reconcileAfter))); err != nil {
		return p, classify(fmt.Errorf("clear sealed requests: %w", err))
	}
	if p.DeadLetterMessages, err = s.clearDeadLetterMessages(ctx); err != nil {
		return p, classify(fmt.Errorf("clear dead letters' messages: %w", err))
	}
	return p, nil
}

// clearSealedRequests walks the idempotency keys claimed from the mark up
// to now and deletes the sealed copies of those claimed before pastWindow or
// whose request got past dispatched or was erased; then it moves the mark
// to pastWindow.
func (s *Store) clearSealedRequests(ctx context.Context, now, pastWindow time.Time) (int64, error) {
	var at time.Time // the first pass walks every key
	err := s.pool.QueryRow(ctx, `SELECT upto FROM pruner_marks WHERE name = $1`, sealedRequestsMark).Scan(&at)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	id := ""
	var cleared int64
	for {
		var n, c int64
		var lastAt *time.Time
		var lastID *string
		err := s.pool.QueryRow(ctx, `
			WITH page AS (
				SELECT desk_id, idempotency_key, request_id, created_at, sealed_request IS NOT NULL AS sealed
				FROM intake_keys
				WHERE created_at >= $1 AND (created_at, request_id) > ($1, $2) AND created_at < $3
				ORDER BY created_at, request_id LIMIT $4),
			done AS (
				SELECT p.desk_id, p.idempotency_key FROM page p LEFT JOIN requests r ON r.id = p.request_id
				WHERE p.sealed AND (p.created_at < $5 OR r.status NOT IN ('submitted', 'routed', 'dispatched') OR r.erased_at IS NOT NULL)),
			cleared AS (
				UPDATE intake_keys k SET sealed_request = NULL FROM done d
				WHERE k.desk_id = d.desk_id AND k.idempotency_key = d.idempotency_key
				RETURNING 1),
			last AS (SELECT created_at, request_id FROM page ORDER BY created_at DESC, request_id DESC LIMIT 1)
			SELECT (SELECT count(*) FROM page), (SELECT count(*) FROM cleared),
			       (SELECT created_at FROM last), (SELECT request_id FROM last)`,
			at, id, now, pruneBatch, pastWindow).Scan(&n, &c, &lastAt, &lastID)
		if err != nil {
			return cleared, err
		}
		cleared += c
		if n < pruneBatch {
			break
		}
		at, id = *lastAt, *lastID
		// A long first walk keeps what it did.
		if at.Before(pastWindow) {
			if err := s.mark(ctx, sealedRequestsMark, at); err != nil {
				return cleared, err
			}
		}
	}
	return cleared, s.mark(ctx, sealedRequestsMark, pastWindow)
}

// mark records that the pruner has done with name below upto; a mark
// never moves back.
func (s *Store) mark(ctx context.Context, name string, upto time.Time) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO pruner_marks (name, upto) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET upto = greatest(pruner_marks.upto, excluded.upto)`, name, upto)
	return err
}

// clearDeadLetterMessages deletes the sealed messages of the dead letters
// of requests completed, rejected or erased.
func (s *Store) clearDeadLetterMessages(ctx context.Context) (int64, error) {
	return s.execInBatches(ctx, `
			WITH done AS (
				SELECT d.id, r.erased_at IS NOT NULL AS erased
				FROM dead_letters d JOIN requests r ON r.id = d.request_id
				WHERE d.payload IS NOT NULL AND (r.status IN ('completed', 'rejected') OR r.erased_at IS NOT NULL)
				ORDER BY d.id LIMIT $1
				FOR UPDATE OF d SKIP LOCKED)
			UPDATE dead_letters d
			SET payload = NULL, last_error = CASE WHEN done.erased THEN '' ELSE d.last_error END
			FROM done WHERE d.id = done.id`)
}

// execInBatches runs statement, which touches at most $1 rows (pruneBatch)
// after the arguments args, again and again until a run touches fewer, and
// returns how many rows the runs touched in all.
func (s *Store) execInBatches(ctx context.Context, statement string, args ...any) (int64, error) {
	var n int64
	for {
		tag, err := s.pool.Exec(ctx, statement, append([]any{pruneBatch}, args...)...)
		if err != nil {
			return n, err
		}
		n += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return n, nil
		}
	}
}

// PruneRequests removes the requests that ended (completed, rejected or
// failed) before before, with their work items, timelines, idempotency keys
// and dead letters, and then the idempotency keys and dead letters of no
// request that are older than before; it returns how many rows it removed.
// Requests still under way are kept however old. The roll-ups, the audit
// log and the open data keep counting them.
//
// Requests are found by walking the primary key up to the first ID minted
// at before: request IDs are time-ordered (events.NewID), and a request
// ends after it is submitted. Each batch of up to a thousand requests is
// removed in a transaction of its own, skipping any the projector holds.
// Remove a request only once the events stream no longer holds its
// messages (keep the retention longer than the stream's max age), or a
// projector reading the stream again would record it anew.
func (s *Store) PruneRequests(ctx context.Context, before time.Time) (events.Pruned, error) {
	var p events.Pruned
	bound := idBound(before)
	for {
		n, err := s.pruneRequestBatch(ctx, `
			SELECT id FROM requests
			WHERE id < $1 AND status IN ('completed', 'rejected', 'failed') AND updated_at < $2
			ORDER BY id LIMIT $3
			FOR UPDATE SKIP LOCKED`, []any{bound, before, pruneBatch}, &p)
		if err != nil {
			return p, classify(fmt.Errorf("prune requests: %w", err))
		}
		if n < pruneBatch {
			break
		}
	}
	n, err := s.execInBatches(ctx, `
		DELETE FROM dead_letters WHERE id IN (
			SELECT d.id FROM dead_letters d
			WHERE d.created_at < $2
			  AND (d.request_id IS NULL OR NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = d.request_id))
			ORDER BY d.id LIMIT $1)`, before)
	p.DeadLetters += n
	if err != nil {
		return p, classify(fmt.Errorf("prune dead letters: %w", err))
	}
	n, err = s.execInBatches(ctx, `
		DELETE FROM intake_keys WHERE request_id IN (
			SELECT k.request_id FROM intake_keys k
			WHERE k.created_at < $2 AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = k.request_id)
			ORDER BY k.created_at LIMIT $1)`, before)
	p.IntakeKeys += n
	if err != nil {
		return p, classify(fmt.Errorf("prune idempotency keys: %w", err))
	}
	return p, nil
}

// pruneRequestBatch removes the requests that which (a query of their IDs,
// at most pruneBatch, locked and skipping locked ones) finds with args, and
// what belongs to them, in one transaction. It returns how many requests it
// removed.
func (s *Store) pruneRequestBatch(ctx context.Context, which string, args []any, p *events.Pruned) (int, error) {
	var ids []string
	var batch events.Pruned
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM requests WHERE id IN (`+which+`) RETURNING id`, args...)
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(ids) == 0 {
			return err
		}
		var q pgx.Batch
		for _, del := range []struct {
			sql string
			n   *int64
		}{
			{`DELETE FROM work_items WHERE request_id = ANY($1)`, &batch.WorkItems},
			{`DELETE FROM timeline WHERE request_id = ANY($1)`, &batch.Timeline},
			{`DELETE FROM intake_keys WHERE request_id = ANY($1)`, &batch.IntakeKeys},
			{`DELETE FROM dead_letters WHERE request_id = ANY($1)`, &batch.DeadLetters},
		} {
			q.Queue(del.sql, ids).Exec(func(tag pgconn.CommandTag) error {
				*del.n += tag.RowsAffected()
				return nil
			})
		}
		return tx.SendBatch(ctx, &q).Close()
	})
	if err != nil {
		return 0, err
	}
	batch.Requests = int64(len(ids))
	*p = p.Add(batch)
	return len(ids), nil
}

// idBound is the smallest request ID minted at t or later (events.NewID):
// its first 48 bits, the milliseconds since the epoch, in hex.
func idBound(t time.Time) string {
	ms := uint64(t.UnixMilli())
	return fmt.Sprintf("%08x-%04x", ms>>16, ms&0xffff)
}

// PruneTraining removes what training mode left: the requests made in
// training mode submitted before before, whatever their status, with their
// work items, timelines, idempotency keys and dead letters, and the
// training visits started before it, with their services. It returns how
// many rows it removed and how many visits.
func (s *Store) PruneTraining(ctx context.Context, before time.Time) (events.Pruned, int64, error) {
	var p events.Pruned
	for {
		n, err := s.pruneRequestBatch(ctx, `
			SELECT id FROM requests WHERE training AND submitted_at < $1
			ORDER BY submitted_at LIMIT $2
			FOR UPDATE SKIP LOCKED`, []any{before, pruneBatch}, &p)
		if err != nil {
			return p, 0, classify(fmt.Errorf("prune training requests: %w", err))
		}
		if n < pruneBatch {
			break
		}
	}
	visits, err := s.execInBatches(ctx, `
		WITH gone AS (
			SELECT id FROM visits WHERE training AND started_at < $2
			ORDER BY started_at LIMIT $1 FOR UPDATE SKIP LOCKED
		), services AS (
			DELETE FROM visit_services WHERE visit_id IN (SELECT id FROM gone)
		)
		DELETE FROM visits WHERE id IN (SELECT id FROM gone)`, before)
	if err != nil {
		return p, visits, classify(fmt.Errorf("prune training visits: %w", err))
	}
	return p, visits, nil
}
