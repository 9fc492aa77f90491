package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// people is one kind of person who signs in with a password set with a
// setup code: mediators (013) and operators (017) keep the same columns in
// tables of their own.
type people struct {
	table, sessions string
	// prefix names one of them in the audit log: prefix + username.
	prefix                         string
	failed, signedOut, passwordSet events.AuditAction
}

var (
	mediatorPeople = people{"mediators", "mediator_sessions", "mediator:",
		events.AuditMediatorSignInFailed, events.AuditMediatorSignedOut, events.AuditMediatorPasswordSet}
	operatorPeople = people{"operators", "operator_sessions", "operator:",
		events.AuditOperatorSignInFailed, events.AuditOperatorSignedOut, events.AuditOperatorPasswordSet}
)

// signInFailed counts a failed sign-in of username and, at the
// lockAfter-th failure in a row, locks the account for lockFor, in the
// audit log too. It returns the failures in a row and whether the account
// is now locked.
func (s *Store) signInFailed(ctx context.Context, p people, username, address string, lockAfter int, lockFor time.Duration) (int, bool, error) {
	var failures int
	var locked bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			UPDATE `+p.table+` SET failed_attempts = failed_attempts + 1,
			       locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN now() + $3::interval ELSE locked_until END
			WHERE username = $1
			RETURNING failed_attempts, locked_until IS NOT NULL AND locked_until > now()`,
			username, lockAfter, lockFor.String()).Scan(&failures, &locked)
		if err != nil {
			return err
		}
		return auditBy(ctx, tx, events.By{Actor: p.prefix + username}, p.failed, p.prefix+username,
			map[string]any{"address": address, "failures": failures, "locked": locked})
	})
	if err != nil {
		return 0, false, fmt.Errorf("record a failed sign-in: %w", err)
	}
	return failures, locked, nil
}

// signInRefused records a sign-in refused before any password was checked:
// an unknown username (the actor is then the address), a locked or
// disabled account, or an address over its limit.
func (s *Store) signInRefused(ctx context.Context, p people, username, address, why string) error {
	actor := p.prefix + username
	if username == "" {
		actor = "address:" + address
	}
	return auditBy(ctx, s.pool, events.By{Actor: actor}, p.failed, actor, map[string]any{"address": address, "refused": why})
}

// setPassword sets the password (its hash) of whoever's setup code code
// is, if it has not expired, and uses the code up. It returns the
// username; events.ErrNotFound for a code unknown, used or expired.
func (s *Store) setPassword(ctx context.Context, p people, code, passwordHash string) (string, error) {
	var username string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			UPDATE `+p.table+` SET password_hash = $2, setup_hash = NULL, setup_expires_at = NULL,
			       failed_attempts = 0, locked_until = NULL
			WHERE setup_hash = $1 AND setup_expires_at > now() AND disabled_at IS NULL
			RETURNING username`, secretHash(code), passwordHash).Scan(&username)
		if errors.Is(err, pgx.ErrNoRows) {
			return events.ErrNotFound
		}
		if err != nil {
			return err
		}
		return auditBy(ctx, tx, events.By{Actor: p.prefix + username}, p.passwordSet, p.prefix+username, nil)
	})
	if err != nil {
		if errors.Is(err, events.ErrNotFound) {
			return "", err
		}
		return "", fmt.Errorf("set password: %w", err)
	}
	return username, nil
}

// setupCodeValid reports whether code is a setup code in force, and whose.
func (s *Store) setupCodeValid(ctx context.Context, p people, code string) (string, bool, error) {
	var username string
	err := s.pool.QueryRow(ctx, `
		SELECT username FROM `+p.table+` WHERE setup_hash = $1 AND setup_expires_at > now() AND disabled_at IS NULL`,
		secretHash(code)).Scan(&username)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("check setup code: %w", err)
	}
	return username, true, nil
}

// endSession ends the session whose token's SHA-256 is tokenHash (signing
// out), in the audit log too.
func (s *Store) endSession(ctx context.Context, p people, tokenHash []byte) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var username string
		err := tx.QueryRow(ctx, `
			UPDATE `+p.sessions+` SET ended_at = now() WHERE token_hash = $1 AND ended_at IS NULL
			RETURNING username`, tokenHash).Scan(&username)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("end session: %w", err)
		}
		return auditBy(ctx, tx, events.By{Actor: p.prefix + username}, p.signedOut, p.prefix+username, nil)
	})
}

// endSessions ends every session of username.
func endSessions(ctx context.Context, tx pgx.Tx, p people, username string) error {
	_, err := tx.Exec(ctx, `UPDATE `+p.sessions+` SET ended_at = now() WHERE username = $1 AND ended_at IS NULL`, username)
	return err
}

// markSeen marks the session whose token's SHA-256 is tokenHash seen now,
// when it was last seen more than a minute ago.
func (s *Store) markSeen(ctx context.Context, p people, tokenHash []byte, seen time.Time) error {
	if time.Since(seen) <= time.Minute {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE `+p.sessions+` SET seen_at = now() WHERE token_hash = $1`, tokenHash); err != nil {
		return fmt.Errorf("mark session seen: %w", err)
	}
	return nil
}
