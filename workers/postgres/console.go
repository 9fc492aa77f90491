package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// StuckWork lists the work items q selects that failed or are overdue,
// oldest request first. Practice requests are no one's work. It reads the
// work items not done with a scan: an operator's page, not a hot path.
func (s *Store) StuckWork(ctx context.Context, q events.StuckQuery) ([]events.StuckWorkItem, error) {
	if q.Limit <= 0 || q.Limit > 10000 {
		q.Limit = 500
	}
	codes, seconds := make([]string, 0, len(q.SLAs)), make([]float64, 0, len(q.SLAs))
	for code, sla := range q.SLAs {
		codes, seconds = append(codes, code), append(seconds, sla.Seconds())
	}
	rows, err := s.pool.Query(ctx, `
		WITH sla AS (SELECT * FROM unnest($3::text[], $4::float8[]) AS u(service_code, seconds))
		SELECT w.request_id, w.agency, r.service_code, r.desk_id, r.municipality, w.status, w.round,
		       coalesce((SELECT t.note FROM timeline t WHERE t.request_id = w.request_id AND t.agency = w.agency
		                 ORDER BY t.at DESC LIMIT 1), ''),
		       r.submitted_at, w.updated_at, w.status <> 'failed'
		FROM work_items w
		JOIN requests r ON r.id = w.request_id
		LEFT JOIN sla ON sla.service_code = r.service_code
		WHERE w.status NOT IN ('completed', 'rejected') AND NOT r.training
		  AND ($1 = '' OR w.agency = $1) AND ($2 = '' OR r.municipality = $2)
		  AND (w.status = 'failed' OR r.submitted_at < now() - make_interval(secs => sla.seconds))
		ORDER BY r.submitted_at, w.request_id, w.agency LIMIT $5`,
		q.Agency, q.Municipality, codes, seconds, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("list stuck work: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[events.StuckWorkItem])
	if err != nil {
		return nil, fmt.Errorf("list stuck work: %w", err)
	}
	return out, nil
}

// ReplayProgress says where each dead letter replayed at or after since stands:
// its work item's status and round in the projection, or its request's for
// a dead letter of a request.
func (s *Store) ReplayProgress(ctx context.Context, since time.Time) ([]events.ReplayState, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT d.id, coalesce(d.request_id, ''), d.agency, d.replays,
		       coalesce(w.status, r.status, ''), coalesce(w.round, r.round, 0), coalesce(w.updated_at, r.updated_at)
		FROM dead_letters d
		LEFT JOIN requests r ON r.id = d.request_id
		LEFT JOIN work_items w ON w.request_id = d.request_id AND w.agency = d.agency AND d.agency <> ''
		WHERE d.replayed_at >= $1 ORDER BY d.id LIMIT 10000`, since)
	if err != nil {
		return nil, fmt.Errorf("read replay progress: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.ReplayState, error) {
		var st events.ReplayState
		var updated *time.Time
		err := r.Scan(&st.DeadLetterID, &st.RequestID, &st.Agency, &st.Replays, &st.Status, &st.Round, &updated)
		st.UpdatedAt = deref(updated)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("read replay progress: %w", err)
	}
	return out, nil
}

// AuditLink is one link of the audit log's hash chain with the entry it
// covers, as an export carries it: enough to recompute the link's hash
// from the hash before it (see linkHash), with no access to spotflow.
type AuditLink struct {
	Seq      int64     `json:"seq"`
	PrevHash string    `json:"prev_hash"`
	Hash     string    `json:"hash"`
	Kind     string    `json:"kind"`
	ID       int64     `json:"id"`
	At       time.Time `json:"at"`
	Fields   []*string `json:"fields"`
}

// AuditLinks reads the stretch of the chain from the first link whose
// entry is from from or later to the last whose entry is before to, every
// link between them included (the chainer links entries a few seconds
// apart in its own order, so a few at either end may be just outside the
// range), in chain order, with their entries as hashed; at most limit.
func (s *Store) AuditLinks(ctx context.Context, from, to time.Time, limit int) ([]AuditLink, error) {
	rows, err := s.pool.Query(ctx, `
		WITH links AS (
			SELECT c.seq, c.prev_hash, c.hash,
			       CASE WHEN c.log_id IS NOT NULL THEN 'log' ELSE 'submission' END AS kind,
			       coalesce(c.log_id, c.submission_id) AS id, coalesce(l.at, s.at) AS at, `+entryFields+` AS fields
			FROM audit_chain c
			LEFT JOIN audit_log l ON l.id = c.log_id
			LEFT JOIN audit_submissions s ON s.id = c.submission_id
		), bounds AS (SELECT min(seq) AS lo, max(seq) AS hi FROM links WHERE at >= $1 AND at < $2)
		SELECT seq, prev_hash, hash, kind, id, at, fields FROM links, bounds
		WHERE seq BETWEEN bounds.lo AND bounds.hi ORDER BY seq LIMIT $3`, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit links: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditLink, error) {
		var l AuditLink
		var prev, hash []byte
		err := r.Scan(&l.Seq, &prev, &hash, &l.Kind, &l.ID, &l.At, &l.Fields)
		l.PrevHash, l.Hash = hex.EncodeToString(prev), hex.EncodeToString(hash)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit links: %w", err)
	}
	return out, nil
}

// VerifyAuditLinks checks links read from an export offline: they are a
// stretch of the chain without a gap, each link's hash is SHA-256 of the
// one before and its entry, and each holds the hash of the link before. It
// returns the first link that does not check as a *BrokenChainError.
func VerifyAuditLinks(links []AuditLink) error {
	for i, l := range links {
		prev, err := hex.DecodeString(l.PrevHash)
		if err != nil || len(prev) != 32 {
			return &BrokenChainError{Seq: l.Seq, Kind: l.Kind, EntryID: l.ID, Problem: "its prev_hash is not 32 bytes in hex"}
		}
		if i > 0 && links[i-1].Seq+1 != l.Seq {
			return &BrokenChainError{Seq: l.Seq, Kind: l.Kind, EntryID: l.ID, Problem: fmt.Sprintf("it follows link %d: links are missing or out of order", links[i-1].Seq)}
		}
		if i > 0 && links[i-1].Hash != l.PrevHash {
			return &BrokenChainError{Seq: l.Seq, Kind: l.Kind, EntryID: l.ID, Problem: "it does not hold the hash of the link before"}
		}
		got := linkHash(prev, l.Seq, chainEntry{kind: l.Kind, id: l.ID, at: l.At, fields: l.Fields})
		if hex.EncodeToString(got) != l.Hash {
			return &BrokenChainError{Seq: l.Seq, Kind: l.Kind, EntryID: l.ID, Problem: "its entry or its hash was altered"}
		}
	}
	return nil
}

// OldestWaiting is, per agency, when the oldest of its work items that it
// has not accepted yet (routed or dispatched; practice aside) was last
// moved. It scans the work items not done: an operator's page.
func (s *Store) OldestWaiting(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT w.agency, min(w.updated_at) FROM work_items w JOIN requests r ON r.id = w.request_id
		WHERE w.status IN ('routed', 'dispatched') AND NOT r.training GROUP BY w.agency`)
	if err != nil {
		return nil, fmt.Errorf("read oldest waiting work: %w", err)
	}
	out := map[string]time.Time{}
	var agency string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&agency, &at}, func() error {
		out[agency] = at
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read oldest waiting work: %w", err)
	}
	return out, nil
}
