-- The credentials agencies connect to NATS with: the public half of each
-- nkey (the seed is shown once, to the agency, and never stored). A revoked
-- credential stays, for the record; the NATS server lets in the others.
CREATE TABLE agency_credentials (
    public_key text PRIMARY KEY,
    agency     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX agency_credentials_agency ON agency_credentials (agency) WHERE revoked_at IS NULL;
