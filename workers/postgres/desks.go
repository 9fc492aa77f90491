package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spotflow/spotflow/events"
)

// A desk holds one or more credentials (desk_credentials), each a bearer
// token shown once, when issued, and kept only as its SHA-256; its key, the
// first 16 hex digits of that hash, names it in listings and commands.
// Every change to a desk's credentials is in the audit log. Intake caches
// the credentials it checked (workers.Intake) until the count of changes to
// revocations and expiries (DeskCredentialGeneration) moves.

// newDeskToken makes a new desk token, its SHA-256 and its key.
func newDeskToken() (token string, hash []byte, key string) {
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails on supported platforms
	token = "sfd_" + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	return token, sum[:], hex.EncodeToString(sum[:8])
}

// CreateDesk registers a desk of municipality with a credential that never
// expires, and returns it with the credential's token, shown this once. It
// is for the desks spotflow registers itself (the demo desk, the load
// generator's, tests'): no person acts, and nothing goes in the audit log.
// Operators register desks with RegisterDesk, under their own name.
func (s *Store) CreateDesk(ctx context.Context, municipality, name string) (events.Desk, string, error) {
	desk, cred, err := s.registerDesk(ctx, municipality, name, time.Time{}, nil)
	return desk, cred.Token, err
}

// RegisterDesk registers a desk of municipality and issues its first
// credential, ending at expires (zero: never), on behalf of by, in the
// audit log too. The credential's token is shown this once.
func (s *Store) RegisterDesk(ctx context.Context, municipality, name string, expires time.Time, by events.By) (events.Desk, events.IssuedDeskCredential, error) {
	return s.registerDesk(ctx, municipality, name, expires, &by)
}

// registerDesk is RegisterDesk, audited only when by is not nil.
func (s *Store) registerDesk(ctx context.Context, municipality, name string, expires time.Time, by *events.By) (events.Desk, events.IssuedDeskCredential, error) {
	if !events.ValidToken(municipality) {
		return events.Desk{}, events.IssuedDeskCredential{}, fmt.Errorf("create desk: municipality %q must be lowercase letters, digits, '-' or '_'", municipality)
	}
	if name == "" {
		return events.Desk{}, events.IssuedDeskCredential{}, errors.New("create desk: a name is required")
	}
	desk := events.Desk{
		ID:           "desk-" + events.NewID(time.Now())[24:],
		Municipality: municipality,
		Name:         name,
	}
	var cred events.IssuedDeskCredential
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO desks (id, municipality, name) VALUES ($1, $2, $3)`,
			desk.ID, desk.Municipality, desk.Name); err != nil {
			return err
		}
		var err error
		if cred, err = issueDeskCredential(ctx, tx, desk.ID, expires); err != nil || by == nil {
			return err
		}
		return auditBy(ctx, tx, *by, events.AuditDeskCreated, desk.ID, map[string]any{
			"municipality": municipality, "name": name, "key": cred.Key, "expires_at": cred.ExpiresAt,
		})
	})
	if err != nil {
		return events.Desk{}, events.IssuedDeskCredential{}, fmt.Errorf("create desk: %w", err)
	}
	return desk, cred, nil
}

// issueDeskCredential records a new credential of deskID, ending at
// expires (zero: never), and returns it with its token.
func issueDeskCredential(ctx context.Context, db DBTX, deskID string, expires time.Time) (events.IssuedDeskCredential, error) {
	if !expires.IsZero() && !expires.After(time.Now()) {
		return events.IssuedDeskCredential{}, fmt.Errorf("a credential cannot end at %s, which has passed", expires.Format(time.RFC3339))
	}
	token, hash, key := newDeskToken()
	c := events.IssuedDeskCredential{Token: token}
	err := db.QueryRow(ctx, `
		INSERT INTO desk_credentials (key, desk_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)
		RETURNING key, desk_id, created_at, expires_at`, key, deskID, hash, nullTime(expires)).
		Scan(&c.Key, &c.DeskID, &c.CreatedAt, &c.ExpiresAt)
	if err != nil {
		return events.IssuedDeskCredential{}, fmt.Errorf("issue a credential of desk %s: %w", deskID, err)
	}
	return c, nil
}

// lockDesk locks deskID's row for the rest of tx, so that changes to its
// credentials happen one after the other, or returns events.ErrNotFound.
func lockDesk(ctx context.Context, tx pgx.Tx, deskID string) error {
	var id string
	err := tx.QueryRow(ctx, `SELECT id FROM desks WHERE id = $1 FOR UPDATE`, deskID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("desk %q: %w", deskID, events.ErrNotFound)
	}
	return err
}

// IssueDeskCredential issues desk deskID another credential, ending at
// expires (zero: never), on behalf of by, in the audit log too. The desk's
// other credentials stay in force. events.ErrNotFound when there is no
// such desk.
func (s *Store) IssueDeskCredential(ctx context.Context, deskID string, expires time.Time, by events.By) (events.IssuedDeskCredential, error) {
	var cred events.IssuedDeskCredential
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockDesk(ctx, tx, deskID); err != nil {
			return err
		}
		var err error
		if cred, err = issueDeskCredential(ctx, tx, deskID, expires); err != nil {
			return err
		}
		return auditBy(ctx, tx, by, events.AuditDeskCredentialIssued, deskID, map[string]any{"key": cred.Key, "expires_at": cred.ExpiresAt})
	})
	if err != nil {
		return events.IssuedDeskCredential{}, fmt.Errorf("issue desk credential: %w", err)
	}
	return cred, nil
}

// RotateDeskCredentials issues desk deskID a new credential, ending at
// expires (zero: never), and sets every other credential of the desk in
// force to end at endOthers (at once if that has passed) unless it ends
// sooner, on behalf of by, in the audit log too. It returns the new
// credential and the keys of those set to end.
func (s *Store) RotateDeskCredentials(ctx context.Context, deskID string, expires, endOthers time.Time, by events.By) (events.IssuedDeskCredential, []string, error) {
	var cred events.IssuedDeskCredential
	var ending []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockDesk(ctx, tx, deskID); err != nil {
			return err
		}
		end := endOthers
		if now := time.Now(); end.Before(now) {
			end = now
		}
		rows, err := tx.Query(ctx, `
			UPDATE desk_credentials SET expires_at = $2
			WHERE desk_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
			RETURNING key`, deskID, end)
		if err != nil {
			return err
		}
		if ending, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		slices.Sort(ending)
		if cred, err = issueDeskCredential(ctx, tx, deskID, expires); err != nil {
			return err
		}
		return auditBy(ctx, tx, by, events.AuditDeskCredentialRotated, deskID, map[string]any{
			"key": cred.Key, "expires_at": cred.ExpiresAt, "ending": ending, "ending_at": end,
		})
	})
	if err != nil {
		return events.IssuedDeskCredential{}, nil, fmt.Errorf("rotate desk credentials: %w", err)
	}
	return cred, ending, nil
}

// RevokeDeskCredentials revokes desk deskID's credential key, or every
// credential of the desk in force when key is empty, on behalf of by, who
// must say why, in the audit log too. It returns the keys it revoked;
// events.ErrNotFound when none was in force. Every intake process refuses
// them within a few seconds.
func (s *Store) RevokeDeskCredentials(ctx context.Context, deskID, key string, by events.By) ([]string, error) {
	var revoked []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockDesk(ctx, tx, deskID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			UPDATE desk_credentials SET revoked_at = now()
			WHERE desk_id = $1 AND ($2 = '' OR key = $2) AND revoked_at IS NULL
			  AND (expires_at IS NULL OR expires_at > now())
			RETURNING key`, deskID, key)
		if err != nil {
			return err
		}
		if revoked, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		if len(revoked) == 0 && key != "" {
			return fmt.Errorf("no credential %s of desk %s in force: %w", key, deskID, events.ErrNotFound)
		}
		if len(revoked) == 0 {
			return fmt.Errorf("no credential of desk %s in force: %w", deskID, events.ErrNotFound)
		}
		slices.Sort(revoked)
		return auditBy(ctx, tx, by, events.AuditDeskCredentialRevoked, deskID, map[string]any{"keys": revoked})
	})
	if err != nil {
		return nil, fmt.Errorf("revoke desk credentials: %w", err)
	}
	return revoked, nil
}

// ExpireDeskCredentials sets desk deskID's credential key, or every
// credential of the desk in force when key is empty, to end at at (which
// may be sooner or later than it would have, but not past), on behalf of
// by, in the audit log too. It returns the keys it changed;
// events.ErrNotFound when none was in force.
func (s *Store) ExpireDeskCredentials(ctx context.Context, deskID, key string, at time.Time, by events.By) ([]string, error) {
	if !at.After(time.Now()) {
		return nil, fmt.Errorf("expire desk credentials: %s has passed; revoke to end a credential now", at.Format(time.RFC3339))
	}
	var changed []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockDesk(ctx, tx, deskID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			UPDATE desk_credentials SET expires_at = $3
			WHERE desk_id = $1 AND ($2 = '' OR key = $2) AND revoked_at IS NULL
			  AND (expires_at IS NULL OR expires_at > now())
			RETURNING key`, deskID, key, at)
		if err != nil {
			return err
		}
		if changed, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		if len(changed) == 0 {
			return fmt.Errorf("no credential of desk %s in force: %w", deskID, events.ErrNotFound)
		}
		slices.Sort(changed)
		return auditBy(ctx, tx, by, events.AuditDeskCredentialExpiry, deskID, map[string]any{"keys": changed, "expires_at": at})
	})
	if err != nil {
		return nil, fmt.Errorf("expire desk credentials: %w", err)
	}
	return changed, nil
}

// Desks lists the desks, of municipality when it is not empty, by
// municipality and name, each with its credentials, oldest first.
func (s *Store) Desks(ctx context.Context, municipality string) ([]events.DeskListing, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT d.id, d.municipality, d.name, d.created_at,
		       c.key, c.created_at, c.expires_at, c.revoked_at, c.last_used_at
		FROM desks d LEFT JOIN desk_credentials c ON c.desk_id = d.id
		WHERE $1 = '' OR d.municipality = $1
		ORDER BY d.municipality, d.name, d.id, c.created_at, c.key`, municipality)
	if err != nil {
		return nil, fmt.Errorf("list desks: %w", err)
	}
	var out []events.DeskListing
	var d events.DeskListing
	var key *string
	var c events.DeskCredential
	var created *time.Time
	_, err = pgx.ForEachRow(rows, []any{&d.ID, &d.Municipality, &d.Name, &d.CreatedAt,
		&key, &created, &c.ExpiresAt, &c.RevokedAt, &c.LastUsedAt}, func() error {
		if len(out) == 0 || out[len(out)-1].ID != d.ID {
			out = append(out, events.DeskListing{ID: d.ID, Municipality: d.Municipality, Name: d.Name, CreatedAt: d.CreatedAt, Credentials: []events.DeskCredential{}})
		}
		if key != nil {
			c.Key, c.DeskID, c.CreatedAt = *key, d.ID, *created
			last := &out[len(out)-1]
			last.Credentials = append(last.Credentials, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list desks: %w", err)
	}
	return out, nil
}

// AuthenticateDesk finds the credential in force that token is, with its
// desk, or events.ErrUnauthenticated. The generation it returns was read in
// the same snapshot as the credential.
func (s *Store) AuthenticateDesk(ctx context.Context, token string) (events.DeskAuthentication, error) {
	hash := secretHash(token)
	var a events.DeskAuthentication
	var expires, used *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT d.id, d.municipality, d.name, c.key, c.expires_at, c.last_used_at, g.generation
		FROM desk_credentials c JOIN desks d ON d.id = c.desk_id CROSS JOIN desk_credential_changes g
		WHERE c.token_hash = $1 AND c.revoked_at IS NULL AND (c.expires_at IS NULL OR c.expires_at > now())`, hash).
		Scan(&a.Desk.ID, &a.Desk.Municipality, &a.Desk.Name, &a.Key, &expires, &used, &a.Generation)
	if errors.Is(err, pgx.ErrNoRows) {
		return events.DeskAuthentication{}, events.ErrUnauthenticated
	}
	if err != nil {
		return events.DeskAuthentication{}, classify(fmt.Errorf("find desk: %w", err))
	}
	if expires != nil {
		a.ExpiresAt = *expires
	}
	if used != nil {
		a.LastUsedAt = *used
	}
	return a, nil
}

// DeskByToken finds the desk whose credential in force token is, or
// events.ErrUnauthenticated.
func (s *Store) DeskByToken(ctx context.Context, token string) (events.Desk, error) {
	a, err := s.AuthenticateDesk(ctx, token)
	return a.Desk, err
}

// DeskCredentialGeneration counts the changes to desk credentials'
// revocations and expiries so far: while it stays the same, no credential
// checked before has been revoked or shortened. One row read by primary
// key.
func (s *Store) DeskCredentialGeneration(ctx context.Context) (int64, error) {
	var g int64
	if err := s.pool.QueryRow(ctx, `SELECT generation FROM desk_credential_changes`).Scan(&g); err != nil {
		return 0, classify(fmt.Errorf("read desk credential changes: %w", err))
	}
	return g, nil
}

// NoteDeskCredentialsUsed records when each credential, by key, was last
// used, in one statement; a time earlier than the one recorded is ignored.
func (s *Store) NoteDeskCredentialsUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	keys := make([]string, 0, len(used))
	for k := range used {
		keys = append(keys, k)
	}
	slices.Sort(keys) // rows taken in one order by every intake
	at := make([]time.Time, len(keys))
	for i, k := range keys {
		at[i] = used[k]
	}
	_, err := s.pool.Exec(ctx, `
		UPDATE desk_credentials c SET last_used_at = u.at
		FROM unnest($1::text[], $2::timestamptz[]) AS u(key, at)
		WHERE c.key = u.key AND (c.last_used_at IS NULL OR c.last_used_at < u.at)`, keys, at)
	if err != nil {
		return classify(fmt.Errorf("record desk credentials' last use: %w", err))
	}
	return nil
}

// HasMunicipality reports whether any desk belongs to municipality.
func (s *Store) HasMunicipality(ctx context.Context, municipality string) (bool, error) {
	var found bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM desks WHERE municipality = $1)`, municipality).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("find municipality: %w", err)
	}
	return found, nil
}
