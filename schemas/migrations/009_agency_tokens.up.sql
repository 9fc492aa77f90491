-- Agencies report statuses over HTTPS with a bearer token as well as to NATS
-- with an nkey. Both are credentials of the agency: for a token, public_key
-- holds the SHA-256 of the token in hex (the token is shown once, to the
-- agency, and never stored).
ALTER TABLE agency_credentials
    ADD COLUMN kind text NOT NULL DEFAULT 'nkey' CHECK (kind IN ('nkey', 'token'));
