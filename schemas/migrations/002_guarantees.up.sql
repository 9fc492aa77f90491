-- Messages that could not be handled and left their queue: what they were,
-- why, and how often they were tried. payload is the message sealed with
-- AES-GCM under a key derived from the citizen key: it holds personal data.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    stream       text NOT NULL,
    stream_seq   bigint NOT NULL,
    subject      text NOT NULL,
    request_id   text,
    work_item_id text,
    agency       text NOT NULL DEFAULT '',
    reason       text NOT NULL,
    last_error   text NOT NULL,
    attempts     integer NOT NULL,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    replays      integer NOT NULL DEFAULT 0,
    replayed_at  timestamptz,
    UNIQUE (stream, stream_seq)
);
CREATE INDEX dead_letters_agency ON dead_letters (agency, created_at DESC);

-- Every action by a person (submit, replay), append-only.
CREATE TABLE audit_log (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

-- A replay starts a new round of a request or work item: events of a newer
-- round supersede whatever an older round reached.
ALTER TABLE requests ADD COLUMN round integer NOT NULL DEFAULT 0;
ALTER TABLE work_items ADD COLUMN round integer NOT NULL DEFAULT 0;

-- The request as published, sealed, so that a request whose progress stalls
-- can be published again with its original ids.
ALTER TABLE intake_keys ADD COLUMN sealed_request bytea;
ALTER TABLE intake_keys ADD COLUMN redriven_at timestamptz;
ALTER TABLE intake_keys ADD COLUMN redrives integer NOT NULL DEFAULT 0;
CREATE INDEX intake_keys_published ON intake_keys (published_at);
CREATE INDEX requests_stalled ON requests (updated_at) WHERE status IN ('submitted', 'routed', 'dispatched');
