package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
		return audit(ctx, tx, actor, events.AuditAgencyCredentialIssued, agency, map[string]any{"public_key": publicKey})
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
		return audit(ctx, tx, actor, events.AuditAgencyCredentialRevoked, agency, map[string]any{"public_key": publicKey, "revoked": n})
	})
	if err != nil && !errors.Is(err, events.ErrNotFound) {
		err = fmt.Errorf("revoke agency credential: %w", err)
	}
	return n, err
}

// AddAgencyToken makes a new token with which agency reports statuses over
// HTTPS, records its SHA-256 on behalf of actor, in the audit log too, and
// returns the token, shown this once, and the key it is listed under.
func (s *Store) AddAgencyToken(ctx context.Context, agency, actor string) (token, key string, err error) {
	if !events.ValidToken(agency) {
		return "", "", fmt.Errorf("add agency token: %q is not an agency code", agency)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	token = "sfa_" + base64.RawURLEncoding.EncodeToString(raw[:])
	key = tokenKey(token)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO agency_credentials (public_key, agency, kind) VALUES ($1, $2, 'token')`, key, agency); err != nil {
			return err
		}
		return audit(ctx, tx, actor, events.AuditAgencyCredentialIssued, agency, map[string]any{"public_key": key, "kind": events.CredentialToken})
	})
	if err != nil {
		return "", "", fmt.Errorf("add agency token: %w", err)
	}
	return token, key, nil
}

// AgencyByToken is the agency whose token in force token is, or
// events.ErrUnauthenticated.
func (s *Store) AgencyByToken(ctx context.Context, token string) (string, error) {
	var agency string
	err := s.pool.QueryRow(ctx, `
		SELECT agency FROM agency_credentials
		WHERE public_key = $1 AND kind = 'token' AND revoked_at IS NULL`, tokenKey(token)).Scan(&agency)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", events.ErrUnauthenticated
	}
	if err != nil {
		return "", fmt.Errorf("find agency by token: %w", err)
	}
	return agency, nil
}

func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// AgencyCredentials lists the credentials in force, of every agency when
// agency is empty and of every kind when kind is empty, oldest first; with
// revoked, the revoked ones too.
func (s *Store) AgencyCredentials(ctx context.Context, agency, kind string, revoked bool) ([]events.AgencyCredential, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT public_key, kind, agency, created_at, revoked_at FROM agency_credentials
		WHERE ($1 = '' OR agency = $1) AND ($2 = '' OR kind = $2) AND ($3 OR revoked_at IS NULL)
		ORDER BY created_at, public_key`, agency, kind, revoked)
	if err != nil {
		return nil, fmt.Errorf("list agency credentials: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[events.AgencyCredential])
	if err != nil {
		return nil, fmt.Errorf("list agency credentials: %w", err)
	}
	return out, nil
}

// WorkItemState is the round and status the projection holds of agency's
// work item of request requestID. It is events.ErrNotFound when the
// projection holds the request's work items and none is agency's, and
// events.ErrUnknownRequest when it holds none of them (yet: the projection
// may lag the work queue by a moment) or the request was made in training
// mode, which no agency was given.
func (s *Store) WorkItemState(ctx context.Context, requestID, agency string) (events.WorkItemState, error) {
	var st events.WorkItemState
	var items int
	err := s.pool.QueryRow(ctx, `
		SELECT count(*), coalesce(max(round) FILTER (WHERE agency = $2), 0),
		       coalesce(max(status) FILTER (WHERE agency = $2), '')
		FROM work_items WHERE request_id = $1
		  AND NOT EXISTS (SELECT 1 FROM requests WHERE id = $1 AND training)`, requestID, agency).Scan(&items, &st.Round, &st.Status)
	switch {
	case err != nil:
		return events.WorkItemState{}, classify(fmt.Errorf("look up work item: %w", err))
	case items == 0:
		return events.WorkItemState{}, events.ErrUnknownRequest
	case st.Status == "":
		return events.WorkItemState{}, events.ErrNotFound
	}
	return st, nil
}
