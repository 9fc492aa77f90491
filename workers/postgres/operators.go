package postgres

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
)

// The operator's console's accounts (schemas/migrations/017_operators.up.sql):
// operators, their sessions and second factors, and the named machine
// credentials of the operator API.

const operatorColumns = `o.username, o.name, o.role, o.language, o.password_hash IS NOT NULL, o.totp_secret IS NOT NULL,
	o.locked_until, o.disabled_at, o.created_at, o.signed_in_at`

func scanOperator(row pgx.Row, extra ...any) (events.Operator, error) {
	var o events.Operator
	var locked, disabled, signedIn *time.Time
	err := row.Scan(append([]any{&o.Username, &o.Name, &o.Role, &o.Language, &o.PasswordSet, &o.SecondFactor,
		&locked, &disabled, &o.CreatedAt, &signedIn}, extra...)...)
	o.LockedUntil, o.DisabledAt, o.SignedInAt = deref(locked), deref(disabled), deref(signedIn)
	return o, err
}

// CreateOperator creates an operator's account on behalf of by (in the
// audit log too) and returns the one-time code with which they set their
// password. A username taken already or malformed, a name missing or a role
// unknown is refused.
func (s *Store) CreateOperator(ctx context.Context, o events.Operator, by events.By) (events.MediatorSetup, error) {
	switch {
	case !events.ValidUsername(o.Username):
		return events.MediatorSetup{}, fmt.Errorf("create operator: username %q must be 2 to 64 lowercase letters, digits, '.', '-' or '_', starting with a letter", o.Username)
	case events.TextFault(o.Name, false) != "" || len(o.Name) > 200 || o.Name == "":
		return events.MediatorSetup{}, errors.New("create operator: a name of at most 200 bytes of clean text is required")
	case !o.Role.Valid():
		return events.MediatorSetup{}, fmt.Errorf("create operator: role %q is neither %s nor %s", o.Role, events.RoleOperator, events.RoleViewer)
	case o.Language == "":
		return events.MediatorSetup{}, errors.New("create operator: a language is required")
	}
	code, hash := newSetupCode()
	setup := events.MediatorSetup{Username: o.Username, Code: code, ExpiresAt: time.Now().Add(SetupCodeLife).UTC().Truncate(time.Second)}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO operators (username, name, role, language, setup_hash, setup_expires_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING`,
			o.Username, o.Name, o.Role, o.Language, hash, setup.ExpiresAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("username %q is taken", o.Username)
		}
		return auditBy(ctx, tx, by, events.AuditOperatorCreated, "operator:"+o.Username, map[string]any{
			"name": o.Name, "role": o.Role, "language": o.Language,
		})
	})
	if err != nil {
		return events.MediatorSetup{}, fmt.Errorf("create operator: %w", err)
	}
	return setup, nil
}

// changeOperator runs change on username's row, locked, with the audit
// entry of action, and ends their sessions; events.ErrNotFound when there
// is no such operator.
func (s *Store) changeOperator(ctx context.Context, username string, by events.By, action events.AuditAction, change string, args ...any) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var found string
		err := tx.QueryRow(ctx, `SELECT username FROM operators WHERE username = $1 FOR UPDATE`, username).Scan(&found)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("operator %q: %w", username, events.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE operators SET `+change+` WHERE username = $1`, append([]any{username}, args...)...); err != nil {
			return err
		}
		if err := endSessions(ctx, tx, operatorPeople, username); err != nil {
			return err
		}
		return auditBy(ctx, tx, by, action, "operator:"+username, nil)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	return nil
}

// ResetOperator gives username a new setup code, on behalf of by: their
// password and second factor are forgotten, their sessions end, their
// account is unlocked.
func (s *Store) ResetOperator(ctx context.Context, username string, by events.By) (events.MediatorSetup, error) {
	code, hash := newSetupCode()
	setup := events.MediatorSetup{Username: username, Code: code, ExpiresAt: time.Now().Add(SetupCodeLife).UTC().Truncate(time.Second)}
	err := s.changeOperator(ctx, username, by, events.AuditOperatorReset, `password_hash = NULL, setup_hash = $2,
		setup_expires_at = $3, totp_secret = NULL, totp_pending = NULL, failed_attempts = 0, locked_until = NULL`, hash, setup.ExpiresAt)
	if err != nil {
		return events.MediatorSetup{}, err
	}
	return setup, nil
}

// DisableOperator disables username's account, ending their sessions at
// once, or, with enable, enables it again; on behalf of by.
func (s *Store) DisableOperator(ctx context.Context, username string, enable bool, by events.By) error {
	if enable {
		return s.changeOperator(ctx, username, by, events.AuditOperatorEnabled, `disabled_at = NULL`)
	}
	return s.changeOperator(ctx, username, by, events.AuditOperatorDisabled, `disabled_at = now()`)
}

// Operators lists the operators by username.
func (s *Store) Operators(ctx context.Context) ([]events.Operator, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+operatorColumns+` FROM operators o ORDER BY o.username`)
	if err != nil {
		return nil, fmt.Errorf("list operators: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.Operator, error) { return scanOperator(r) })
	if err != nil {
		return nil, fmt.Errorf("list operators: %w", err)
	}
	return list, nil
}

// OperatorForSignIn reads what an operator's sign-in checks:
// events.ErrNotFound when no operator has that username.
func (s *Store) OperatorForSignIn(ctx context.Context, username string) (events.OperatorSignIn, error) {
	var in events.OperatorSignIn
	var hash *string
	o, err := scanOperator(s.pool.QueryRow(ctx, `SELECT `+operatorColumns+`, o.password_hash FROM operators o WHERE o.username = $1`, username), &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return in, events.ErrNotFound
	}
	if err != nil {
		return in, fmt.Errorf("read operator: %w", err)
	}
	in.Operator = o
	if hash != nil {
		in.PasswordHash = *hash
	}
	return in, nil
}

// OperatorSignInFailed is SignInFailed for an operator: a wrong password
// or one-time password.
func (s *Store) OperatorSignInFailed(ctx context.Context, username, address string, lockAfter int, lockFor time.Duration) (int, bool, error) {
	return s.signInFailed(ctx, operatorPeople, username, address, lockAfter, lockFor)
}

// OperatorSignInRefused is SignInRefused for an operator.
func (s *Store) OperatorSignInRefused(ctx context.Context, username, address, why string) error {
	return s.signInRefused(ctx, operatorPeople, username, address, why)
}

// OperatorSignedIn starts username's session after their password was
// right. With secondFactorDue the session waits for their one-time
// password (SecondFactorPassed); otherwise they are signed in: their
// failures in a row are forgotten and the sign-in is audited.
func (s *Store) OperatorSignedIn(ctx context.Context, username string, start events.SessionStart, secondFactorDue bool) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO operator_sessions (token_hash, username, csrf, expires_at, second_factor_due) VALUES ($1, $2, $3, $4, $5)`,
			start.TokenHash, username, start.CSRF, start.ExpiresAt, secondFactorDue); err != nil {
			return err
		}
		if secondFactorDue {
			return nil
		}
		return operatorSignedIn(ctx, tx, username, start.Address, false)
	})
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	return nil
}

func operatorSignedIn(ctx context.Context, tx pgx.Tx, username, address string, secondFactor bool) error {
	if _, err := tx.Exec(ctx, `
		UPDATE operators SET failed_attempts = 0, locked_until = NULL, signed_in_at = now() WHERE username = $1`, username); err != nil {
		return err
	}
	return auditBy(ctx, tx, events.By{Actor: "operator:" + username}, events.AuditOperatorSignedIn, "operator:"+username,
		map[string]any{"address": address, "second_factor": secondFactor})
}

// OperatorSession reads the operator's session whose token's SHA-256 is
// tokenHash, if it is in force (as Session), its operator not disabled;
// events.ErrUnauthenticated otherwise.
func (s *Store) OperatorSession(ctx context.Context, tokenHash []byte, idle time.Duration) (events.OperatorSession, error) {
	var ses events.OperatorSession
	var seen time.Time
	o, err := scanOperator(s.pool.QueryRow(ctx, `
		SELECT `+operatorColumns+`, x.csrf, x.second_factor_due, x.expires_at, x.seen_at
		FROM operator_sessions x JOIN operators o ON o.username = x.username
		WHERE x.token_hash = $1 AND x.ended_at IS NULL AND x.expires_at > now()
		  AND x.seen_at > now() - $2::interval AND o.disabled_at IS NULL`, tokenHash, idle.String()),
		&ses.CSRF, &ses.SecondFactorDue, &ses.ExpiresAt, &seen)
	if errors.Is(err, pgx.ErrNoRows) {
		return ses, events.ErrUnauthenticated
	}
	if err != nil {
		return ses, fmt.Errorf("read session: %w", err)
	}
	ses.Operator = o
	return ses, s.markSeen(ctx, operatorPeople, tokenHash, seen)
}

// EndOperatorSession ends an operator's session (signing out), in the
// audit log too.
func (s *Store) EndOperatorSession(ctx context.Context, tokenHash []byte) error {
	return s.endSession(ctx, operatorPeople, tokenHash)
}

// SetOperatorPassword is SetMediatorPassword for an operator's setup code.
func (s *Store) SetOperatorPassword(ctx context.Context, code, passwordHash string) (string, error) {
	return s.setPassword(ctx, operatorPeople, code, passwordHash)
}

// OperatorSetupCodeValid is SetupCodeValid for an operator's setup code.
func (s *Store) OperatorSetupCodeValid(ctx context.Context, code string) (string, bool, error) {
	return s.setupCodeValid(ctx, operatorPeople, code)
}

// SetOperatorLanguage sets the language the console speaks to username in.
func (s *Store) SetOperatorLanguage(ctx context.Context, username, language string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE operators SET language = $2 WHERE username = $1`, username, language); err != nil {
		return fmt.Errorf("set language: %w", err)
	}
	return nil
}

// SecondFactorSecret is username's second factor's secret (or, with
// pending, the one they are enrolling) and the last time step a one-time
// password was accepted for; "" when there is none.
func (s *Store) SecondFactorSecret(ctx context.Context, username string, pending bool) (string, int64, error) {
	column := "totp_secret"
	if pending {
		column = "totp_pending"
	}
	var sealed []byte
	var step int64
	err := s.pool.QueryRow(ctx, `SELECT `+column+`, totp_step FROM operators WHERE username = $1`, username).Scan(&sealed, &step)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, events.ErrNotFound
	}
	if err != nil || sealed == nil {
		return "", step, err
	}
	secret, err := s.unseal(sealed)
	return string(secret), step, err
}

// errStepUsed: a one-time password's time step was used already.
var errStepUsed = errors.New("this one-time password was used already")

// useStep records that a one-time password of time step step was accepted
// for username, refusing a step not after the last one accepted.
func useStep(ctx context.Context, tx pgx.Tx, username string, step int64) error {
	tag, err := tx.Exec(ctx, `UPDATE operators SET totp_step = $2 WHERE username = $1 AND totp_step < $2`, username, step)
	if err == nil && tag.RowsAffected() == 0 {
		err = errStepUsed
	}
	return err
}

// SecondFactorPassed opens the session waiting for its one-time password,
// which was right for time step step, and audits the sign-in. It returns
// events.ErrUnauthenticated when the session is not waiting, its operator's
// account is locked (by wrong one-time passwords too), or the step was used
// already (a one-time password is good once).
func (s *Store) SecondFactorPassed(ctx context.Context, tokenHash []byte, step int64, address string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var username string
		err := tx.QueryRow(ctx, `
			UPDATE operator_sessions x SET second_factor_due = false
			WHERE x.token_hash = $1 AND x.second_factor_due AND x.ended_at IS NULL AND x.expires_at > now()
			  AND NOT EXISTS (SELECT 1 FROM operators o WHERE o.username = x.username AND o.locked_until > now())
			RETURNING x.username`, tokenHash).Scan(&username)
		if errors.Is(err, pgx.ErrNoRows) {
			return events.ErrUnauthenticated
		}
		if err != nil {
			return err
		}
		if err := useStep(ctx, tx, username, step); err != nil {
			return err
		}
		return operatorSignedIn(ctx, tx, username, address, true)
	})
	if errors.Is(err, events.ErrUnauthenticated) || errors.Is(err, errStepUsed) {
		return events.ErrUnauthenticated
	}
	if err != nil {
		return fmt.Errorf("second factor: %w", err)
	}
	return nil
}

// EnrolSecondFactor keeps secret, sealed, as the second factor username is
// setting up, until ConfirmSecondFactor.
func (s *Store) EnrolSecondFactor(ctx context.Context, username, secret string) error {
	sealed, err := s.seal([]byte(secret))
	if err != nil {
		return fmt.Errorf("enrol second factor: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE operators SET totp_pending = $2 WHERE username = $1`, username, sealed); err != nil {
		return fmt.Errorf("enrol second factor: %w", err)
	}
	return nil
}

// ConfirmSecondFactor makes the secret being enrolled username's second
// factor, once a one-time password of time step step was right for it;
// with remove, it removes their second factor instead. Both are audited.
// It returns events.ErrUnauthenticated when the step was used already, or
// there is no secret being enrolled (or, with remove, no second factor).
func (s *Store) ConfirmSecondFactor(ctx context.Context, username string, step int64, remove bool) error {
	change, detail := `totp_secret = totp_pending, totp_pending = NULL WHERE username = $1 AND totp_pending IS NOT NULL`, "on"
	if remove {
		change, detail = `totp_secret = NULL, totp_pending = NULL WHERE username = $1 AND totp_secret IS NOT NULL`, "off"
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := useStep(ctx, tx, username, step); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE operators SET `+change, username)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return events.ErrUnauthenticated // nothing to confirm
		}
		return auditBy(ctx, tx, events.By{Actor: "operator:" + username}, events.AuditOperatorSecondFactor, "operator:"+username,
			map[string]any{"second_factor": detail})
	})
	if errors.Is(err, events.ErrUnauthenticated) || errors.Is(err, errStepUsed) {
		return events.ErrUnauthenticated
	}
	if err != nil {
		return fmt.Errorf("second factor: %w", err)
	}
	return nil
}

// IssueOperatorToken makes the named machine credential name, of role, on
// behalf of by, and returns its token, shown this once ("sfo_" and 32
// random bytes in base64url). A name in force is refused; a revoked one's
// name may be given to a new token.
func (s *Store) IssueOperatorToken(ctx context.Context, name string, role events.OperatorRole, by events.By) (string, error) {
	switch {
	case !events.ValidUsername(name):
		return "", fmt.Errorf("issue operator token: name %q must be 2 to 64 lowercase letters, digits, '.', '-' or '_', starting with a letter", name)
	case !role.Valid():
		return "", fmt.Errorf("issue operator token: role %q is neither %s nor %s", role, events.RoleOperator, events.RoleViewer)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	token := "sfo_" + base64.RawURLEncoding.EncodeToString(raw[:])
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO operator_tokens (name, token_hash, role) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, role = excluded.role,
			       created_at = now(), revoked_at = NULL, used_at = NULL
			WHERE operator_tokens.revoked_at IS NOT NULL`,
			name, secretHash(token), role)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("a token is named %q already", name)
		}
		return auditBy(ctx, tx, by, events.AuditOperatorTokenIssued, "token:"+name, map[string]any{"role": role})
	})
	if err != nil {
		return "", fmt.Errorf("issue operator token: %w", err)
	}
	return token, nil
}

// RegisterOperatorToken keeps token, a secret chosen elsewhere (spotflow's
// --operator-token), as the machine credential name of the operator role,
// so that it is looked up, listed and revoked as any other. Registering
// the same token again changes nothing, a revoked one included: it stays
// revoked until the configuration names another token, which then
// replaces it.
func (s *Store) RegisterOperatorToken(ctx context.Context, name, token string) error {
	if !events.ValidUsername(name) || token == "" {
		return fmt.Errorf("register operator token: a name and a token are required")
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO operator_tokens (name, token_hash, role) VALUES ($1, $2, 'operator')
			ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, role = excluded.role,
			       created_at = now(), revoked_at = NULL, used_at = NULL
			WHERE operator_tokens.token_hash <> excluded.token_hash`, name, secretHash(token))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return auditBy(ctx, tx, events.By{Actor: "system:spotflow"}, events.AuditOperatorTokenIssued, "token:"+name,
			map[string]any{"role": events.RoleOperator, "configured": true})
	})
	if err != nil {
		return fmt.Errorf("register operator token: %w", err)
	}
	return nil
}

// RevokeOperatorToken revokes the machine credential name on behalf of by;
// the next request that presents it is refused. events.ErrNotFound when
// no token in force has that name.
func (s *Store) RevokeOperatorToken(ctx context.Context, name string, by events.By) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE operator_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("operator token %q: %w", name, events.ErrNotFound)
		}
		return auditBy(ctx, tx, by, events.AuditOperatorTokenRevoked, "token:"+name, nil)
	})
	if err != nil && !errors.Is(err, events.ErrNotFound) {
		err = fmt.Errorf("revoke operator token: %w", err)
	}
	return err
}

// OperatorTokens lists the machine credentials, revoked ones too, by name.
func (s *Store) OperatorTokens(ctx context.Context) ([]events.OperatorToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, role, created_at, revoked_at, used_at FROM operator_tokens ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list operator tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.OperatorToken, error) {
		var t events.OperatorToken
		var revoked, used *time.Time
		err := r.Scan(&t.Name, &t.Role, &t.CreatedAt, &revoked, &used)
		t.RevokedAt, t.UsedAt = deref(revoked), deref(used)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list operator tokens: %w", err)
	}
	return out, nil
}

// OperatorByToken is the machine credential in force whose token token
// is, or events.ErrUnauthenticated. It notes the use, at most once a
// minute.
func (s *Store) OperatorByToken(ctx context.Context, token string) (events.OperatorToken, error) {
	var t events.OperatorToken
	var used *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT name, role, created_at, used_at FROM operator_tokens WHERE token_hash = $1 AND revoked_at IS NULL`,
		secretHash(token)).Scan(&t.Name, &t.Role, &t.CreatedAt, &used)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, events.ErrUnauthenticated
	}
	if err != nil {
		return t, fmt.Errorf("find operator token: %w", err)
	}
	if t.UsedAt = deref(used); time.Since(t.UsedAt) > time.Minute {
		if _, err := s.pool.Exec(ctx, `UPDATE operator_tokens SET used_at = now() WHERE name = $1`, t.Name); err != nil {
			return t, fmt.Errorf("note operator token used: %w", err)
		}
	}
	return t, nil
}
