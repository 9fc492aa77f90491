-- Desks and their credentials. A token is stored only as its SHA-256 hash.
CREATE TABLE desks (
    id           text PRIMARY KEY,
    municipality text NOT NULL,
    name         text NOT NULL,
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per (desk, Idempotency-Key): the request it minted and a keyed hash
-- of the body it was minted for. published_at is set once JetStream stored it.
CREATE TABLE intake_keys (
    desk_id         text NOT NULL REFERENCES desks (id),
    idempotency_key text NOT NULL,
    body_hash       bytea NOT NULL,
    request_id      text NOT NULL UNIQUE,
    service_code    text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    PRIMARY KEY (desk_id, idempotency_key)
);

-- Current state of every request. citizen_ref is a keyed hash of the national
-- ID: it links a citizen's requests without storing the ID itself.
CREATE TABLE requests (
    id           text PRIMARY KEY,
    desk_id      text NOT NULL,
    municipality text NOT NULL,
    service_code text NOT NULL,
    visit_id     text,
    mediator     text,
    citizen_ref  bytea NOT NULL,
    status       text NOT NULL,
    submitted_at timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL
);
CREATE INDEX requests_desk_submitted ON requests (desk_id, submitted_at DESC);

-- A request's share for one agency.
CREATE TABLE work_items (
    request_id text NOT NULL REFERENCES requests (id),
    agency     text NOT NULL,
    status     text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (request_id, agency)
);

-- Every status event applied, once: event_id is the deduplication record.
-- agency is '' for events of the request as a whole.
CREATE TABLE timeline (
    event_id    text PRIMARY KEY,
    request_id  text NOT NULL REFERENCES requests (id),
    agency      text NOT NULL DEFAULT '',
    status      text NOT NULL,
    at          timestamptz NOT NULL,
    actor       text NOT NULL DEFAULT '',
    note        text NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX timeline_request ON timeline (request_id, at);

-- Per-minute counts of status events by desk, municipality, service and
-- agency ('' for request-level events), for dashboards and BI tools.
CREATE TABLE throughput_minute (
    minute       timestamptz NOT NULL,
    desk_id      text NOT NULL,
    municipality text NOT NULL,
    service_code text NOT NULL,
    agency       text NOT NULL,
    status       text NOT NULL,
    events       bigint NOT NULL,
    PRIMARY KEY (minute, desk_id, municipality, service_code, agency, status)
);
