package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/spotflow/spotflow/events"
)

// RecordDeadLetter stores d, its payload sealed, unless a dead letter of the
// same stream message is stored already. It reports whether d was new.
func (s *Store) RecordDeadLetter(ctx context.Context, d events.DeadLetter) (bool, error) {
	sealed, err := s.seal(d.Payload)
	if err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO dead_letters (stream, stream_seq, subject, request_id, work_item_id, agency,
		                          reason, last_error, attempts, payload)
		VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6, $7, $8, $9, $10)
		ON CONFLICT (stream, stream_seq) DO NOTHING`,
		// What a dead letter holds may be why its message failed (an ID
		// with NUL, say): stored as it is, it would be refused in turn.
		storable(d.Stream), int64(d.StreamSeq), storable(d.Subject), storable(d.RequestID), storable(d.WorkItemID),
		storable(d.Agency), storable(d.Reason), truncate(storable(d.LastError), 2000), d.Attempts, sealed)
	if err != nil {
		return false, fmt.Errorf("record dead letter: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// truncate cuts s to at most n bytes, on a character's boundary: cut
// within one, it would not be UTF-8, and Postgres would refuse it.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

const deadLetterColumns = `d.id, d.stream, d.stream_seq, d.subject, coalesce(d.request_id, ''), coalesce(d.work_item_id, ''),
	d.agency, d.reason, d.last_error, d.attempts, d.created_at, d.replays, d.replayed_at,
	coalesce(r.service_code, ''), coalesce(r.desk_id, ''), coalesce(r.municipality, ''), d.payload`

// deadLetters is the table deadLetterColumns reads.
const deadLetters = `dead_letters d LEFT JOIN requests r ON r.id = d.request_id`

func scanDeadLetter(row pgx.Row) (events.DeadLetter, error) {
	var d events.DeadLetter
	var seq int64
	err := row.Scan(&d.ID, &d.Stream, &seq, &d.Subject, &d.RequestID, &d.WorkItemID,
		&d.Agency, &d.Reason, &d.LastError, &d.Attempts, &d.CreatedAt, &d.Replays, &d.ReplayedAt,
		&d.ServiceCode, &d.DeskID, &d.Municipality, &d.Payload)
	d.StreamSeq = uint64(seq)
	return d, err
}

// ListDeadLetters returns the dead letters q selects, newest first, without
// their payloads (see events.DeadLetterQuery).
func (s *Store) ListDeadLetters(ctx context.Context, q events.DeadLetterQuery) ([]events.DeadLetter, error) {
	limit := q.Limit
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+deadLetterColumns+` FROM `+deadLetters+`
		WHERE ($1 = '' OR d.agency = $1) AND (NOT $2 OR (d.replays = 0 AND d.payload IS NOT NULL))
		  AND ($4 = '' OR r.municipality = $4) AND ($5 = 0 OR d.id = $5)
		ORDER BY d.id DESC LIMIT $3`, q.Agency, q.Pending, limit, q.Municipality, q.ID)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.DeadLetter, error) {
		d, err := scanDeadLetter(r)
		d.Payload = nil
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// DeadLetter returns one dead letter with its payload unsealed.
func (s *Store) DeadLetter(ctx context.Context, id int64) (events.DeadLetter, error) {
	d, err := scanDeadLetter(s.pool.QueryRow(ctx, `SELECT `+deadLetterColumns+` FROM `+deadLetters+` WHERE d.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, events.ErrNotFound
	}
	if err != nil {
		return d, fmt.Errorf("read dead letter: %w", err)
	}
	d.Payload, err = s.unseal(d.Payload)
	return d, err
}

// MarkReplayed counts a replay of a dead letter and records who asked for it,
// and why, in the audit log, in one transaction. It returns the replay's
// number, which starts a new round of the request or work item.
func (s *Store) MarkReplayed(ctx context.Context, id int64, by events.By) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var target string
		err := tx.QueryRow(ctx, `
			UPDATE dead_letters SET replays = replays + 1, replayed_at = $2 WHERE id = $1
			RETURNING replays, coalesce(work_item_id, request_id, subject)`, id, time.Now()).Scan(&n, &target)
		if errors.Is(err, pgx.ErrNoRows) {
			return events.ErrNotFound
		}
		if err != nil {
			return err
		}
		return auditBy(ctx, tx, by, events.AuditReplay, target, map[string]any{"dead_letter": id, "replay": n})
	})
	if err != nil && !errors.Is(err, events.ErrNotFound) {
		err = fmt.Errorf("mark dead letter replayed: %w", err)
	}
	return n, err
}
