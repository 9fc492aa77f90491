-- Events the projector recorded, waiting to be added to the dashboard's
-- roll-ups: each batch adds one row, in the transaction that records its
-- events, with one array element per event. Every few seconds a projector moves
-- the waiting rows into dashboard_counts and dashboard_latency and deletes
-- them, in one transaction, so every event counts exactly once; meanwhile
-- batches never wait on each other for the roll-ups' rows, and those seconds'
-- events are added to each roll-up row at once rather than batch by batch.
CREATE TABLE dashboard_inbox (
    id                 bigserial PRIMARY KEY,
    minute             timestamptz[] NOT NULL,
    desk_id            text[] NOT NULL,
    municipality       text[] NOT NULL,
    service_code       text[] NOT NULL,
    agency             text[] NOT NULL,
    status             text[] NOT NULL,
    -- from the request's submission to the event
    since_submitted_us bigint[] NOT NULL
);
