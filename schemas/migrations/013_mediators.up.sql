-- The desk application (docs/desk-app.md): mediators sign in personally,
-- serve a citizen in a visit that records their consent, and submit one or
-- more services in it.

-- A mediator belongs to one desk and signs in with a username unique across
-- the installation, recorded on every request they submit. password_hash is
-- an argon2id hash in the PHC string format, NULL until the mediator sets a
-- password with the one-time setup code an operator gave them (kept as its
-- SHA-256, until setup_expires_at). Repeated failures lock the account until
-- locked_until; a disabled mediator cannot sign in.
CREATE TABLE mediators (
    username         text PRIMARY KEY,
    desk_id          text NOT NULL REFERENCES desks (id),
    name             text NOT NULL,
    language         text NOT NULL,
    password_hash    text,
    setup_hash       bytea UNIQUE,
    setup_expires_at timestamptz,
    failed_attempts  int NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    disabled_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    signed_in_at     timestamptz
);
CREATE INDEX mediators_desk ON mediators (desk_id);

-- A signed-in mediator's session: the cookie holds a random token, kept
-- here as its SHA-256, with the token forms must carry (csrf). A session
-- ends at sign-out, after idling past the configured time (seen_at is
-- written at most once a minute) or at expires_at, whichever comes first.
CREATE TABLE mediator_sessions (
    token_hash bytea PRIMARY KEY,
    username   text NOT NULL REFERENCES mediators (username),
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz
);
CREATE INDEX mediator_sessions_user ON mediator_sessions (username) WHERE ended_at IS NULL;

-- A visit: one citizen served by one mediator. The citizen's national ID
-- and name are kept sealed while the visit lasts (citizen_ref, the keyed
-- hash of the national ID, finds it for erasure) and deleted when it ends;
-- the consent they gave (version of the catalogue's text, language, time)
-- goes with each request submitted in it.
CREATE TABLE visits (
    id              text PRIMARY KEY,
    desk_id         text NOT NULL REFERENCES desks (id),
    username        text NOT NULL REFERENCES mediators (username),
    citizen         bytea,
    citizen_ref     bytea,
    language        text NOT NULL,
    consent_version text,
    consent_at      timestamptz,
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz
);
CREATE INDEX visits_open ON visits (username) WHERE ended_at IS NULL;
CREATE INDEX visits_citizen ON visits (citizen_ref) WHERE citizen_ref IS NOT NULL;

-- The services of a visit, in the order added. answers (the form, sealed)
-- are kept until the service is submitted with its idempotency key, fixed
-- when the form was first opened, so a resubmission is the same request.
CREATE TABLE visit_services (
    visit_id        text NOT NULL REFERENCES visits (id),
    n               int NOT NULL,
    service_code    text NOT NULL,
    answers         bytea,
    documents       text[] NOT NULL DEFAULT '{}',
    idempotency_key text NOT NULL UNIQUE,
    request_id      text,
    added_at        timestamptz NOT NULL DEFAULT now(),
    submitted_at    timestamptz,
    PRIMARY KEY (visit_id, n)
);

-- The consent a request was submitted under, as its submission carried it:
-- {"version": …, "language": …, "at": …}; NULL when it carried none.
ALTER TABLE requests ADD COLUMN consent jsonb;
