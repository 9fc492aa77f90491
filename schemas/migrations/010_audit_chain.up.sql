-- The audit log becomes complete and tamper-evident.
--
-- Entries live in two append-only tables: audit_log, written by spotflow's
-- commands and APIs for every action by a person (credentials, replays,
-- views, look-ups, erasures, sign-ins), and audit_submissions, written by
-- the database itself, in bulk, as each request is projected: the request's
-- submission by its mediator at its desk. Neither table takes UPDATE, DELETE
-- or TRUNCATE, whoever asks (the owner too: triggers fire for it).
--
-- Writers never wait on one another: a new entry is only marked pending
-- (audit_pending, in the same transaction). A chainer, one at a time,
-- links pending entries into audit_chain in its own order: link n holds
-- hash_n = SHA-256(hash_{n-1} || canonical form of link n and its entry),
-- with 32 zero bytes before the first. `spotflow audit verify` recomputes
-- every link. The canonical form is defined in workers/postgres/audit.go.

-- Why a person did a sensitive action.
ALTER TABLE audit_log ADD COLUMN reason text NOT NULL DEFAULT '';

CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
-- 002 refuses UPDATE and DELETE row by row; TRUNCATE deletes no row.
CREATE TRIGGER audit_log_refuses_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- Submissions, one row per request. mediator is NULL when the desk named
-- none.
CREATE TABLE audit_submissions (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL,
    request_id   text NOT NULL,
    desk_id      text NOT NULL,
    municipality text NOT NULL,
    mediator     text,
    service_code text NOT NULL,
    visit_id     text
);
CREATE TRIGGER audit_submissions_is_append_only BEFORE UPDATE OR DELETE ON audit_submissions
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_submissions_refuses_truncate BEFORE TRUNCATE ON audit_submissions
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- One statement per projector batch: the requests it inserted (ON CONFLICT
-- DO NOTHING leaves those already there out of new_requests).
CREATE FUNCTION audit_submissions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_submissions (at, request_id, desk_id, municipality, mediator, service_code, visit_id)
    SELECT submitted_at, id, desk_id, municipality, mediator, service_code, visit_id
    FROM new_requests ORDER BY id;
    RETURN NULL;
END $$;
CREATE TRIGGER requests_audit_submissions AFTER INSERT ON requests
    REFERENCING NEW TABLE AS new_requests
    FOR EACH STATEMENT EXECUTE FUNCTION audit_submissions();

-- Entries the chainer has not linked yet, by table ('log' or
-- 'submission'). A row appears when its entry's transaction commits, so the
-- chainer never skips an entry that committed late.
CREATE TABLE audit_pending (
    kind     text NOT NULL CHECK (kind IN ('log', 'submission')),
    entry_id bigint NOT NULL,
    PRIMARY KEY (kind, entry_id)
);
CREATE FUNCTION audit_pending_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_pending (kind, entry_id) SELECT 'log', id FROM new_entries;
    RETURN NULL;
END $$;
CREATE FUNCTION audit_pending_submissions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_pending (kind, entry_id) SELECT 'submission', id FROM new_entries;
    RETURN NULL;
END $$;
CREATE TRIGGER audit_log_pending AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_pending_log();
CREATE TRIGGER audit_submissions_pending AFTER INSERT ON audit_submissions
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_pending_submissions();

-- The hash chain: link seq holds one entry, of audit_log or of
-- audit_submissions, with the hash of the link before and its own.
CREATE TABLE audit_chain (
    seq           bigint PRIMARY KEY CHECK (seq > 0),
    log_id        bigint UNIQUE REFERENCES audit_log (id),
    submission_id bigint UNIQUE REFERENCES audit_submissions (id),
    prev_hash     bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash          bytea NOT NULL CHECK (length(hash) = 32),
    chained_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(log_id, submission_id) = 1)
);
CREATE TRIGGER audit_chain_is_append_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_chain_refuses_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- The entries written before the chain existed are linked first, in order.
INSERT INTO audit_pending (kind, entry_id) SELECT 'log', id FROM audit_log;

-- Every entry as one list, for reading: actor, action, target and detail of
-- a submission in the same shape as the others'.
CREATE VIEW audit_entries AS
    SELECT 'log' AS kind, l.id, c.seq, l.at, l.actor, l.action, l.target, l.reason, l.detail
    FROM audit_log l LEFT JOIN audit_chain c ON c.log_id = l.id
    UNION ALL
    SELECT 'submission', s.id, c.seq, s.at, coalesce('mediator:' || s.mediator, 'desk:' || s.desk_id),
           'submission', s.request_id, '',
           jsonb_strip_nulls(jsonb_build_object('desk', s.desk_id, 'municipality', s.municipality,
                                                'service', s.service_code, 'visit', s.visit_id))
    FROM audit_submissions s LEFT JOIN audit_chain c ON c.submission_id = s.id;
