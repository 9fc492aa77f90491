-- The operator's console (docs/console.md): operators sign in personally,
-- with a role, and scripts use named machine credentials instead of one
-- shared token.

-- An operator signs in with a username unique among operators; role is
-- 'operator' (everything) or 'viewer' (read only, never a dead letter's
-- message). password_hash, setup_hash, failed_attempts, locked_until and
-- disabled_at work as a mediator's (013). totp_secret is the sealed secret
-- of their second factor (RFC 6238), NULL when they have none;
-- totp_pending the sealed secret they are enrolling; totp_step the last
-- time step a one-time password was accepted for, so none is accepted
-- twice.
CREATE TABLE operators (
    username         text PRIMARY KEY,
    name             text NOT NULL,
    role             text NOT NULL CHECK (role IN ('operator', 'viewer')),
    language         text NOT NULL,
    password_hash    text,
    setup_hash       bytea UNIQUE,
    setup_expires_at timestamptz,
    totp_secret      bytea,
    totp_pending     bytea,
    totp_step        bigint NOT NULL DEFAULT 0,
    failed_attempts  int NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    disabled_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    signed_in_at     timestamptz
);

-- A signed-in operator's session, as a mediator's (013).
-- second_factor_due: the password was right and the one-time password is
-- still to come; such a session opens nothing else.
CREATE TABLE operator_sessions (
    token_hash        bytea PRIMARY KEY,
    username          text NOT NULL REFERENCES operators (username),
    csrf              text NOT NULL,
    second_factor_due boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    seen_at           timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    ended_at          timestamptz
);
CREATE INDEX operator_sessions_user ON operator_sessions (username) WHERE ended_at IS NULL;

-- Named machine credentials of the operator API (a script, Prometheus):
-- the token's SHA-256, its role, until revoked. used_at is written at most
-- once a minute.
CREATE TABLE operator_tokens (
    name       text PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    role       text NOT NULL CHECK (role IN ('operator', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    used_at    timestamptz
);
