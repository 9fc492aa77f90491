package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// AddEdgeCredential records that the nkey publicKey is the credential of
// deskID's edge, on behalf of by, in the audit log too, and returns the
// desk and the SHA-256 of its tokens in force, which the edge checks the
// desk's submissions against. events.ErrNotFound when there is no such
// desk.
func (s *Store) AddEdgeCredential(ctx context.Context, deskID, publicKey string, by events.By) (events.Desk, [][]byte, error) {
	var desk events.Desk
	var hashes [][]byte
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT id, municipality, name FROM desks WHERE id = $1`, deskID).Scan(&desk.ID, &desk.Municipality, &desk.Name)
		if errors.Is(err, pgx.ErrNoRows) {
			return events.ErrNotFound
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT token_hash FROM desk_credentials
			WHERE desk_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`, deskID)
		if err != nil {
			return err
		}
		if hashes, err = pgx.CollectRows(rows, pgx.RowTo[[]byte]); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO edge_credentials (public_key, desk_id) VALUES ($1, $2)`, publicKey, deskID); err != nil {
			return err
		}
		return auditBy(ctx, tx, by, events.AuditEdgeCredentialIssued, "desk:"+deskID, map[string]any{"public_key": publicKey})
	})
	if err != nil && !errors.Is(err, events.ErrNotFound) {
		err = fmt.Errorf("add edge credential: %w", err)
	}
	return desk, hashes, err
}

// RevokeEdgeCredentials revokes every credential of deskID's edge, on
// behalf of by, and returns how many; events.ErrNotFound when none was in
// force.
func (s *Store) RevokeEdgeCredentials(ctx context.Context, deskID string, by events.By) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE edge_credentials SET revoked_at = now() WHERE desk_id = $1 AND revoked_at IS NULL`, deskID)
		if err != nil {
			return err
		}
		if n = int(tag.RowsAffected()); n == 0 {
			return events.ErrNotFound
		}
		return auditBy(ctx, tx, by, events.AuditEdgeCredentialRevoked, "desk:"+deskID, map[string]any{"revoked": n})
	})
	if err != nil && !errors.Is(err, events.ErrNotFound) {
		err = fmt.Errorf("revoke edge credentials: %w", err)
	}
	return n, err
}

// EdgeCredentials lists the edges' credentials in force, with their desks'
// municipalities, oldest first; with revoked, the revoked ones too.
func (s *Store) EdgeCredentials(ctx context.Context, revoked bool) ([]events.EdgeCredential, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT e.public_key, e.desk_id, d.municipality, e.created_at, e.revoked_at
		FROM edge_credentials e JOIN desks d ON d.id = e.desk_id
		WHERE $1 OR e.revoked_at IS NULL
		ORDER BY e.created_at, e.public_key`, revoked)
	if err != nil {
		return nil, fmt.Errorf("list edge credentials: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[events.EdgeCredential])
	if err != nil {
		return nil, fmt.Errorf("list edge credentials: %w", err)
	}
	return out, nil
}
