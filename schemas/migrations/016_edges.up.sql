-- Desks' edges (docs/operations.md, "Desks that keep working offline"): a
-- desk-side process that runs a NATS leaf node and takes the desk's
-- submissions while its link to the hub is down. Each edge connects to the
-- hub with an nkey of its own, listed here by its public half; the hub lets
-- it store its desk's requests and nothing else, until it is revoked.
CREATE TABLE edge_credentials (
    public_key text PRIMARY KEY,
    desk_id    text NOT NULL REFERENCES desks (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX edge_credentials_desk ON edge_credentials (desk_id);
