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

// EdgeMediators lists the mediators of deskID who may sign in at its edge:
// those in force with a password set, with its hash.
func (s *Store) EdgeMediators(ctx context.Context, deskID string) ([]events.EdgeMediator, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT username, name, language, password_hash, trainer FROM mediators
		WHERE desk_id = $1 AND disabled_at IS NULL AND password_hash IS NOT NULL
		ORDER BY username`, deskID)
	if err != nil {
		return nil, fmt.Errorf("list the edge's mediators: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[events.EdgeMediator])
	if err != nil {
		return nil, fmt.Errorf("list the edge's mediators: %w", err)
	}
	return out, nil
}

// ImportEdgeDesk makes the edge's own database know its desk and the
// desk's mediators as the hub gave them (the edge's bundle): new ones are
// added, known ones take the bundle's name, language and password; the
// others are disabled.
func (s *Store) ImportEdgeDesk(ctx context.Context, desk events.Desk, mediators []events.EdgeMediator) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO desks (id, municipality, name) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name`, desk.ID, desk.Municipality, desk.Name); err != nil {
			return err
		}
		names := make([]string, len(mediators))
		for i, m := range mediators {
			names[i] = m.Username
			if _, err := tx.Exec(ctx, `
				INSERT INTO mediators (username, desk_id, name, language, password_hash, trainer)
				VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (username) DO UPDATE
				SET name = excluded.name, language = excluded.language, password_hash = excluded.password_hash,
				    trainer = excluded.trainer, disabled_at = NULL`,
				m.Username, desk.ID, m.Name, m.Language, m.PasswordHash, m.Trainer); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `UPDATE mediators SET disabled_at = now() WHERE NOT (username = ANY($1)) AND disabled_at IS NULL`, names)
		return err
	})
	if err != nil {
		return fmt.Errorf("import the edge's desk: %w", err)
	}
	return nil
}
