package postgres

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
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
//
// Claims made at the same time share one statement and one commit.
func (s *Store) ClaimKey(ctx context.Context, c events.KeyClaim) (id string, published bool, err error) {
	hash := s.keyedHash([]byte(c.DeskID), []byte(c.Key), c.Body)
	res, err := s.claims.do(ctx, keyClaim{KeyClaim: c, hash: hash})
	if err != nil {
		return "", false, classify(fmt.Errorf("claim idempotency key: %w", err))
	}
	if !bytes.Equal(res.hash, hash) {
		return "", false, events.ErrIdempotencyConflict
	}
	return res.id, res.published, nil
}

// keyClaim is a claim with its body's keyed hash; claimed is what the key
// is bound to.
type keyClaim struct {
	events.KeyClaim
	hash []byte
}

type claimed struct {
	id        string
	hash      []byte
	published bool
}

// claimKeys claims a batch of keys in one statement: it inserts the keys
// nobody holds (the first claim of a key repeated in the batch wins) and
// reads what every key is bound to.
func (s *Store) claimKeys(ctx context.Context, claims []keyClaim) ([]claimed, error) {
	n := len(claims)
	desk, key, id, svc := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	hash := make([][]byte, n)
	for i, c := range claims {
		desk[i], key[i], hash[i], id[i], svc[i] = c.DeskID, c.Key, c.hash, c.NewID, c.ServiceCode
	}
	rows, err := s.pool.Query(ctx, `
		WITH input AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[])
			       WITH ORDINALITY AS t(desk_id, key, hash, id, svc, n)
		), inserted AS (
			INSERT INTO intake_keys (desk_id, idempotency_key, body_hash, request_id, service_code)
			SELECT DISTINCT ON (desk_id, key) desk_id, key, hash, id, svc FROM input ORDER BY desk_id, key, n
			ON CONFLICT (desk_id, idempotency_key) DO NOTHING
			RETURNING desk_id, idempotency_key, request_id, body_hash
		)
		SELECT i.n, coalesce(ins.request_id, k.request_id, ''), coalesce(ins.body_hash, k.body_hash),
		       coalesce(k.published_at IS NOT NULL, false)
		FROM input i
		LEFT JOIN inserted ins ON ins.desk_id = i.desk_id AND ins.idempotency_key = i.key
		LEFT JOIN intake_keys k ON k.desk_id = i.desk_id AND k.idempotency_key = i.key`,
		desk, key, hash, id, svc)
	if err != nil {
		return nil, err
	}
	out := make([]claimed, n)
	var late []int // keys another process bound while the statement ran
	for rows.Next() {
		var i int
		var c claimed
		if err := rows.Scan(&i, &c.id, &c.hash, &c.published); err != nil {
			rows.Close()
			return nil, err
		}
		out[i-1] = c
		if c.id == "" {
			late = append(late, i-1)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, i := range late {
		c := &out[i]
		err := s.pool.QueryRow(ctx, `
			SELECT request_id, body_hash, published_at IS NOT NULL FROM intake_keys
			WHERE desk_id = $1 AND idempotency_key = $2`, desk[i], key[i]).Scan(&c.id, &c.hash, &c.published)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// MarkPublished records that JetStream stored the request bound to a key,
// and keeps the message as published, sealed, so that the request can be
// published again if its progress stalls (see StalledRequests). Marks made
// at the same time share one statement and one commit.
func (s *Store) MarkPublished(ctx context.Context, requestID string, message []byte) error {
	sealed, err := s.seal(message)
	if err != nil {
		return err
	}
	if _, err := s.marks.do(ctx, publishedRequest{id: requestID, sealed: sealed}); err != nil {
		return classify(fmt.Errorf("mark request published: %w", err))
	}
	return nil
}

type publishedRequest struct {
	id     string
	sealed []byte
}

// markPublished marks a batch of requests published in one statement,
// taking their rows in ID order.
func (s *Store) markPublished(ctx context.Context, reqs []publishedRequest) ([]struct{}, error) {
	slices.SortFunc(reqs, func(a, b publishedRequest) int { return cmp.Compare(a.id, b.id) })
	ids, sealed := make([]string, len(reqs)), make([][]byte, len(reqs))
	for i, r := range reqs {
		ids[i], sealed[i] = r.id, r.sealed
	}
	_, err := s.pool.Exec(ctx, `
		UPDATE intake_keys k SET published_at = now(), sealed_request = u.sealed
		FROM unnest($1::text[], $2::bytea[]) AS u(id, sealed)
		WHERE k.request_id = u.id AND k.published_at IS NULL`, ids, sealed)
	if err != nil {
		return nil, err
	}
	return make([]struct{}, len(reqs)), nil
}

// StalledRequests finds up to limit requests claimed no earlier than a day
// before cutoff that JetStream accepted before cutoff, whose progress
// stalled where spotflow, not an agency, owns it: never projected, or still
// submitted, routed or dispatched with no change since cutoff. A request re-driven
// since cutoff is left alone until cutoff passes it again.
func (s *Store) StalledRequests(ctx context.Context, cutoff time.Time, limit int) ([]events.StalledRequest, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT k.request_id, k.sealed_request FROM intake_keys k
		LEFT JOIN requests r ON r.id = k.request_id
		WHERE k.created_at < $1 AND k.created_at > $1 - interval '1 day'
		  AND k.published_at < $1 AND k.sealed_request IS NOT NULL
		  AND coalesce(k.redriven_at, k.published_at) < $1
		  AND (r.id IS NULL OR (r.status IN ('submitted', 'routed', 'dispatched') AND r.updated_at < $1))
		ORDER BY k.created_at
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
		sr.Message, sr.Unreadable = s.unseal(sealed)
		return sr, nil
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

// MarkRedriven records that requests were published again, or that the
// reconciler tried to and could not read them.
func (s *Store) MarkRedriven(ctx context.Context, ids []string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE intake_keys SET redriven_at = now(), redrives = redrives + 1
		WHERE request_id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("mark requests re-driven: %w", err)
	}
	return nil
}
