package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// AddAgencyCredential records that the nkey publicKey is agency's, on
// behalf of actor, in the audit log too.
func (s *Store) AddAgencyCredential(ctx context.Context, agency, publicKey, actor string) error {
	if !events.ValidToken(agency) {
		return fmt.Errorf("add agency credential: %q is not an agency code", agency)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO agency_credentials (public_key, agency) VALUES ($1, $2)`, publicKey, agency); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "agency_credential_issued", agency, map[string]any{"public_key": publicKey})
	})
	if err != nil {
		return fmt.Errorf("add agency credential: %w", err)
	}
	return nil
}

// RevokeAgencyCredential revokes agency's credential publicKey, or every
// credential of agency when publicKey is empty, on behalf of actor, and
// returns how many it revoked; events.ErrNotFound when none was in force.
func (s *Store) RevokeAgencyCredential(ctx context.Context, agency, publicKey, actor string) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE agency_credentials SET revoked_at = now()
			WHERE agency = $1 AND ($2 = '' OR public_key = $2) AND revoked_at IS NULL`, agency, publicKey)
		if err != nil {
			return err
		}
		if n = int(tag.RowsAffected()); n == 0 {
			return events.ErrNotFound
		}
		return audit(ctx, tx, actor, "agency_credential_revoked", agency, map[string]any{"public_key": publicKey, "revoked": n})
	})
	if err != nil && !errors.Is(err, events.ErrNotFound) {
		err = fmt.Errorf("revoke agency credential: %w", err)
	}
	return n, err
}

// AgencyCredentials lists the credentials in force, of every agency when
// agency is empty, oldest first; with revoked, the revoked ones too.
func (s *Store) AgencyCredentials(ctx context.Context, agency string, revoked bool) ([]events.AgencyCredential, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT public_key, agency, created_at, revoked_at FROM agency_credentials
		WHERE ($1 = '' OR agency = $1) AND ($2 OR revoked_at IS NULL)
		ORDER BY created_at, public_key`, agency, revoked)
	if err != nil {
		return nil, fmt.Errorf("list agency credentials: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[events.AgencyCredential])
	if err != nil {
		return nil, fmt.Errorf("list agency credentials: %w", err)
	}
	return out, nil
}
