-- Personal data over time (docs/personal-data.md): a citizen can be erased,
-- and a pruner deletes sealed copies once nothing can use them and requests
-- past their retention. Nothing here adds work to the projector's writes: no
-- index on requests, work_items, timeline or intake_keys.

-- An erased request keeps its place in statistics (desk, municipality,
-- service, status, round, times) but no longer names its citizen:
-- citizen_ref (the keyed hash of the national ID) and visit_id become NULL,
-- and erased_at says when. NULL matches no national ID's hash, so erasing
-- again finds nothing.
ALTER TABLE requests ALTER COLUMN citizen_ref DROP NOT NULL;
ALTER TABLE requests ADD COLUMN erased_at timestamptz;

-- A dead letter whose sealed message was deleted (its citizen was erased,
-- or its request ended) keeps its record, payload NULL: it can no longer be
-- replayed.
ALTER TABLE dead_letters ALTER COLUMN payload DROP NOT NULL;
-- The dead letters of a request, for erasing and pruning it.
CREATE INDEX dead_letters_request ON dead_letters (request_id);
-- The dead letters still holding a sealed message, for the pruner.
CREATE INDEX dead_letters_sealed ON dead_letters (id) WHERE payload IS NOT NULL;

-- How far the pruner has got through a table it walks in order, by name:
-- 'intake_keys.sealed_request', the creation time below which every
-- request's sealed copy is deleted.
CREATE TABLE pruner_marks (
    name text PRIMARY KEY,
    upto timestamptz NOT NULL
);

-- A fingerprint of the citizen key the pipeline uses, HMAC-SHA256 of a
-- fixed text under it (it reveals nothing of the key), noted by the pruner:
-- an erasure run with another key, which would find none of the citizen's
-- hashes, is refused rather than reported as finding nothing.
CREATE TABLE citizen_key (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    fingerprint bytea NOT NULL
);
