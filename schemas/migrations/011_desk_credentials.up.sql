-- A desk may hold several credentials at once (to rotate: issue a new one,
-- switch, revoke the old), each with an optional expiry. A token is stored
-- only as its SHA-256; key, the first 16 hex digits of that hash, names the
-- credential in listings and commands. last_used_at is recorded at most
-- about once a minute per credential and intake process, off the
-- request's path; no index covers it, so recording it is a HOT update.
CREATE TABLE desk_credentials (
    key          text PRIMARY KEY,
    desk_id      text NOT NULL REFERENCES desks (id),
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
) WITH (fillfactor = 80);
CREATE INDEX desk_credentials_desk ON desk_credentials (desk_id);

-- The desks' tokens so far become their first credentials; desks keeps
-- no credential of its own any more.
INSERT INTO desk_credentials (key, desk_id, token_hash, created_at)
SELECT substr(encode(token_hash, 'hex'), 1, 16), id, token_hash, created_at FROM desks;
ALTER TABLE desks DROP COLUMN token_hash;

-- How many times revocations and expiries have changed. Intake trusts the
-- credentials it has checked until this changes, and reads it every second
-- or so: one row by primary key, whatever the number of desks.
CREATE TABLE desk_credential_changes (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation bigint NOT NULL
);
INSERT INTO desk_credential_changes (generation) VALUES (0);
CREATE FUNCTION desk_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE desk_credential_changes SET generation = generation + 1;
    RETURN NULL;
END $$;
-- Whoever changes them, spotflow's commands or SQL by hand. Recording
-- last_used_at changes neither column and counts nothing.
CREATE TRIGGER desk_credentials_changed AFTER UPDATE OF revoked_at, expires_at OR DELETE OR TRUNCATE
    ON desk_credentials FOR EACH STATEMENT EXECUTE FUNCTION desk_credentials_changed();
