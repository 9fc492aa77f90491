package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// SetupCodeLife is how long a mediator's setup code can be used.
const SetupCodeLife = 72 * time.Hour

// mediatorColumns are the columns scanMediator reads, in its order.
const mediatorColumns = `m.username, m.desk_id, m.name, m.language, m.password_hash IS NOT NULL,
	m.trainer, m.locked_until, m.disabled_at, m.created_at, m.signed_in_at`

func scanMediator(row pgx.Row, extra ...any) (events.Mediator, error) {
	var m events.Mediator
	var locked, disabled, signedIn *time.Time
	err := row.Scan(append([]any{&m.Username, &m.DeskID, &m.Name, &m.Language, &m.PasswordSet, &m.Trainer,
		&locked, &disabled, &m.CreatedAt, &signedIn}, extra...)...)
	m.LockedUntil, m.DisabledAt, m.SignedInAt = deref(locked), deref(disabled), deref(signedIn)
	return m, err
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// newSetupCode returns a one-time code and its SHA-256, as kept.
func newSetupCode() (code string, hash []byte) {
	code = rand.Text()
	return code, secretHash(code)
}

// CreateMediator creates the account of a mediator of deskID, who speaks
// language, on behalf of by (in the audit log too), and returns the
// one-time code with which they set their password. A username taken
// already, or malformed, is refused; events.ErrNotFound when there is no
// such desk.
func (s *Store) CreateMediator(ctx context.Context, m events.Mediator, by events.By) (events.MediatorSetup, error) {
	switch {
	case !events.ValidUsername(m.Username):
		return events.MediatorSetup{}, fmt.Errorf("create mediator: username %q must be 2 to 64 lowercase letters, digits, '.', '-' or '_', starting with a letter", m.Username)
	case events.TextFault(m.Name, false) != "" || len(m.Name) > 200 || m.Name == "":
		return events.MediatorSetup{}, errors.New("create mediator: a name of at most 200 bytes of clean text is required")
	case m.Language == "":
		return events.MediatorSetup{}, errors.New("create mediator: a language is required")
	}
	code, hash := newSetupCode()
	setup := events.MediatorSetup{Username: m.Username, Code: code, ExpiresAt: time.Now().Add(SetupCodeLife).UTC().Truncate(time.Second)}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockDesk(ctx, tx, m.DeskID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO mediators (username, desk_id, name, language, setup_hash, setup_expires_at, trainer)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (username) DO NOTHING`,
			m.Username, m.DeskID, m.Name, m.Language, hash, setup.ExpiresAt, m.Trainer)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("username %q is taken", m.Username)
		}
		return auditBy(ctx, tx, by, events.AuditMediatorCreated, "mediator:"+m.Username, map[string]any{
			"desk_id": m.DeskID, "name": m.Name, "language": m.Language, "trainer": m.Trainer,
		})
	})
	if err != nil {
		return events.MediatorSetup{}, fmt.Errorf("create mediator: %w", err)
	}
	return setup, nil
}

// changeMediator runs change on username's row, locked, with the audit
// entry of action, or returns events.ErrNotFound.
func (s *Store) changeMediator(ctx context.Context, username string, by events.By, action events.AuditAction, change func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var found string
		err := tx.QueryRow(ctx, `SELECT username FROM mediators WHERE username = $1 FOR UPDATE`, username).Scan(&found)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("mediator %q: %w", username, events.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := change(tx); err != nil {
			return err
		}
		return auditBy(ctx, tx, by, action, "mediator:"+username, nil)
	})
}

// ResetMediator gives username a new setup code, on behalf of by: their
// password is forgotten, their sessions end, their account is unlocked.
func (s *Store) ResetMediator(ctx context.Context, username string, by events.By) (events.MediatorSetup, error) {
	code, hash := newSetupCode()
	setup := events.MediatorSetup{Username: username, Code: code, ExpiresAt: time.Now().Add(SetupCodeLife).UTC().Truncate(time.Second)}
	err := s.changeMediator(ctx, username, by, events.AuditMediatorReset, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			UPDATE mediators SET password_hash = NULL, setup_hash = $2, setup_expires_at = $3,
			       failed_attempts = 0, locked_until = NULL
			WHERE username = $1`, username, hash, setup.ExpiresAt); err != nil {
			return err
		}
		return endSessions(ctx, tx, mediatorPeople, username)
	})
	if err != nil {
		return events.MediatorSetup{}, fmt.Errorf("reset mediator: %w", err)
	}
	return setup, nil
}

// DisableMediator disables username's account, ending their sessions at
// once, or, with enable, enables it again; on behalf of by.
func (s *Store) DisableMediator(ctx context.Context, username string, enable bool, by events.By) error {
	action, set := events.AuditMediatorDisabled, "now()"
	if enable {
		action, set = events.AuditMediatorEnabled, "NULL"
	}
	err := s.changeMediator(ctx, username, by, action, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE mediators SET disabled_at = `+set+` WHERE username = $1`, username); err != nil {
			return err
		}
		return endSessions(ctx, tx, mediatorPeople, username)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	return nil
}

// Mediators lists the mediators of deskID, or of every desk when it is
// empty, by username.
func (s *Store) Mediators(ctx context.Context, deskID string) ([]events.Mediator, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+mediatorColumns+` FROM mediators m
		WHERE $1 = '' OR m.desk_id = $1 ORDER BY m.username`, deskID)
	if err != nil {
		return nil, fmt.Errorf("list mediators: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.Mediator, error) { return scanMediator(r) })
	if err != nil {
		return nil, fmt.Errorf("list mediators: %w", err)
	}
	return list, nil
}

// MediatorForSignIn reads what a sign-in checks: events.ErrNotFound when
// no mediator has that username.
func (s *Store) MediatorForSignIn(ctx context.Context, username string) (events.MediatorSignIn, error) {
	var in events.MediatorSignIn
	var hash *string
	m, err := scanMediator(s.pool.QueryRow(ctx, `
		SELECT `+mediatorColumns+`, m.password_hash, m.failed_attempts FROM mediators m WHERE m.username = $1`, username),
		&hash, &in.FailedAttempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return in, events.ErrNotFound
	}
	if err != nil {
		return in, fmt.Errorf("read mediator: %w", err)
	}
	in.Mediator = m
	if hash != nil {
		in.PasswordHash = *hash
	}
	return in, nil
}

// SignInFailed counts a failed sign-in of username (by a wrong password)
// and, at the lockAfter-th failure in a row, locks the account for
// lockFor. It records the failure in the audit log, and returns the
// failures in a row and whether the account is now locked.
func (s *Store) SignInFailed(ctx context.Context, username, address string, lockAfter int, lockFor time.Duration) (int, bool, error) {
	return s.signInFailed(ctx, mediatorPeople, username, address, lockAfter, lockFor)
}

// SignInRefused records in the audit log a sign-in refused before any
// password was checked: an unknown username (actor is then the address),
// a locked or disabled account, or an address over its limit.
func (s *Store) SignInRefused(ctx context.Context, username, address, why string) error {
	return s.signInRefused(ctx, mediatorPeople, username, address, why)
}

// SignedIn records that username signed in (their failures in a row are
// forgotten), starts the session, and audits it.
func (s *Store) SignedIn(ctx context.Context, username string, start events.SessionStart) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			UPDATE mediators SET failed_attempts = 0, locked_until = NULL, signed_in_at = now()
			WHERE username = $1`, username); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO mediator_sessions (token_hash, username, csrf, expires_at) VALUES ($1, $2, $3, $4)`,
			start.TokenHash, username, start.CSRF, start.ExpiresAt); err != nil {
			return err
		}
		return auditBy(ctx, tx, events.By{Actor: "mediator:" + username}, events.AuditMediatorSignedIn, "mediator:"+username,
			map[string]any{"address": start.Address})
	})
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	return nil
}

// SetMediatorPassword sets the password (its hash) of the mediator whose
// setup code code is, if it has not expired, and uses the code up. It
// returns the username; events.ErrNotFound for a code unknown, used or
// expired.
func (s *Store) SetMediatorPassword(ctx context.Context, code, passwordHash string) (string, error) {
	return s.setPassword(ctx, mediatorPeople, code, passwordHash)
}

// SetupCodeValid reports whether code is a mediator's setup code in force,
// and whose.
func (s *Store) SetupCodeValid(ctx context.Context, code string) (string, bool, error) {
	return s.setupCodeValid(ctx, mediatorPeople, code)
}

// Session reads the session whose token's SHA-256 is tokenHash, if it is
// in force: not ended, not past its end or idle for longer than idle, its
// mediator not disabled. events.ErrUnauthenticated otherwise. A session
// seen more than a minute ago is marked seen now.
func (s *Store) Session(ctx context.Context, tokenHash []byte, idle time.Duration) (events.Session, error) {
	var ses events.Session
	m, err := scanMediator(s.pool.QueryRow(ctx, `
		SELECT `+mediatorColumns+`, d.id, d.municipality, d.name, x.csrf, x.training, x.created_at, x.seen_at, x.expires_at
		FROM mediator_sessions x
		JOIN mediators m ON m.username = x.username
		JOIN desks d ON d.id = m.desk_id
		WHERE x.token_hash = $1 AND x.ended_at IS NULL AND x.expires_at > now()
		  AND x.seen_at > now() - $2::interval AND m.disabled_at IS NULL`, tokenHash, idle.String()),
		&ses.Desk.ID, &ses.Desk.Municipality, &ses.Desk.Name, &ses.CSRF, &ses.Training, &ses.CreatedAt, &ses.SeenAt, &ses.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ses, events.ErrUnauthenticated
	}
	if err != nil {
		return ses, fmt.Errorf("read session: %w", err)
	}
	ses.Mediator = m
	return ses, s.markSeen(ctx, mediatorPeople, tokenHash, ses.SeenAt)
}

// EndSession ends the mediator's session whose token's SHA-256 is
// tokenHash (signing out), in the audit log too.
func (s *Store) EndSession(ctx context.Context, tokenHash []byte) error {
	return s.endSession(ctx, mediatorPeople, tokenHash)
}

// SetMediatorLanguage sets the language the desk application speaks to
// username in.
func (s *Store) SetMediatorLanguage(ctx context.Context, username, language string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE mediators SET language = $2 WHERE username = $1`, username, language); err != nil {
		return fmt.Errorf("set language: %w", err)
	}
	return nil
}
