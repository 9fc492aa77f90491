package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spotflow/spotflow/events"
)

// ClaimKey binds a desk's idempotency key to a request. The first claim of a
// key records newID against a keyed hash of body and returns newID; a later
// claim with the same body returns the request first bound to the key and
// whether it was already published (if not, the caller publishes it again
// under the same ID, which JetStream deduplicates); a claim with a different
// body fails with events.ErrIdempotencyConflict.
func (s *Store) ClaimKey(ctx context.Context, c events.KeyClaim) (id string, published bool, err error) {
	hash := s.keyedHash([]byte(c.DeskID), []byte(c.Key), c.Body)
	var stored []byte
	err = s.pool.QueryRow(ctx, `
		INSERT INTO intake_keys (desk_id, idempotency_key, body_hash, request_id, service_code)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (desk_id, idempotency_key) DO NOTHING
		RETURNING request_id, body_hash, false`, c.DeskID, c.Key, hash, c.NewID, c.ServiceCode).Scan(&id, &stored, &published)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.pool.QueryRow(ctx, `
			SELECT request_id, body_hash, published_at IS NOT NULL FROM intake_keys
			WHERE desk_id = $1 AND idempotency_key = $2`, c.DeskID, c.Key).Scan(&id, &stored, &published)
	}
	if err != nil {
		return "", false, fmt.Errorf("claim idempotency key: %w", err)
	}
	if !bytes.Equal(stored, hash) {
		return "", false, events.ErrIdempotencyConflict
	}
	return id, published, nil
}

// MarkPublished records that JetStream stored the request bound to a key,
// and keeps the message as published, sealed, so that the request can be
// published again if its progress stalls (see StalledRequests).
func (s *Store) MarkPublished(ctx context.Context, requestID string, message []byte) error {
	sealed, err := s.seal(message)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `
		UPDATE intake_keys SET published_at = now(), sealed_request = $2
		WHERE request_id = $1 AND published_at IS NULL`, requestID, sealed)
	if err != nil {
		return fmt.Errorf("mark request published: %w", err)
	}
	return nil
}

// StalledRequests finds up to limit requests that JetStream accepted before
// cutoff (and no earlier than a day before it) whose progress stalled where
// spotflow, not an agency, owns it: never projected, or still submitted,
// routed or dispatched with no change since cutoff. A request re-driven
// since cutoff is left alone until cutoff passes it again.
func (s *Store) StalledRequests(ctx context.Context, cutoff time.Time, limit int) ([]events.StalledRequest, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT k.request_id, k.sealed_request FROM intake_keys k
		LEFT JOIN requests r ON r.id = k.request_id
		WHERE k.published_at < $1 AND k.published_at > $1 - interval '1 day'
		  AND k.sealed_request IS NOT NULL
		  AND coalesce(k.redriven_at, k.published_at) < $1
		  AND (r.id IS NULL OR (r.status IN ('submitted', 'routed', 'dispatched') AND r.updated_at < $1))
		ORDER BY k.published_at
		LIMIT $2`, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("find stalled requests: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.StalledRequest, error) {
		var sr events.StalledRequest
		var sealed []byte
		if err := r.Scan(&sr.ID, &sealed); err != nil {
			return sr, err
		}
		sr.Message, err = s.unseal(sealed)
		return sr, err
	})
	if err != nil {
		return nil, fmt.Errorf("find stalled requests: %w", err)
	}
	return out, nil
}

// Accepted reports whether intake accepted a request with this ID: then
// it is on its way, however late.
func (s *Store) Accepted(ctx context.Context, requestID string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM intake_keys WHERE request_id = $1)`, requestID).Scan(&ok)
	if err != nil {
		return false, classify(fmt.Errorf("look up request: %w", err))
	}
	return ok, nil
}

// MarkRedriven records that requests were published again.
func (s *Store) MarkRedriven(ctx context.Context, ids []string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE intake_keys SET redriven_at = now(), redrives = redrives + 1
		WHERE request_id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("mark requests re-driven: %w", err)
	}
	return nil
}
