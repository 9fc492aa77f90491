package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"

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

// MarkPublished records that JetStream stored the request bound to a key.
func (s *Store) MarkPublished(ctx context.Context, requestID string) error {
	_, err := s.pool.Exec(ctx,
		`UPDATE intake_keys SET published_at = now() WHERE request_id = $1 AND published_at IS NULL`, requestID)
	if err != nil {
		return fmt.Errorf("mark request published: %w", err)
	}
	return nil
}
