-- Roll-ups the dashboard reads, so that it never scans requests or the
-- timeline. The projector adds to them in the same transaction as the events
-- it applies, at three grains: each event counts once per minute, per hour and
-- per day bucket. A range is read at one grain (the last hour by the minute,
-- the last day by the hour, longer ones by the day), so that every query reads
-- a few thousand rows at most however many requests there were.

-- What happened in a bucket, for one row of a dashboard table.
--   scope: the municipality, or '' for all of them: every row is counted in
--          its municipality's scope and in '', so that a filter is a prefix
--          of the primary key.
--   dim:   'total' (key ''), 'municipality' (scope '' only; key the
--          municipality), 'desk' (key the desk's id), 'service' (key the
--          service code) or 'agency' (key the agency's code).
-- For a request, submitted counts its submission and completed, rejected and
-- failed its terminal status; for an agency, submitted counts the work items
-- dispatched to it and the others their terminal statuses. A completion of a
-- service with an expected completion time counts in within_sla or breached;
-- latency_s adds up the completions' seconds since submission. Counts are
-- integers (no bucket holds two billion events) so that sums stay in 64-bit
-- arithmetic rather than numeric.
CREATE TABLE dashboard_counts (
    grain      text NOT NULL CHECK (grain IN ('minute', 'hour', 'day')),
    at         timestamptz NOT NULL,
    scope      text NOT NULL,
    dim        text NOT NULL CHECK (dim IN ('total', 'municipality', 'desk', 'service', 'agency')),
    key        text NOT NULL,
    submitted  integer NOT NULL DEFAULT 0,
    completed  integer NOT NULL DEFAULT 0,
    rejected   integer NOT NULL DEFAULT 0,
    failed     integer NOT NULL DEFAULT 0,
    within_sla integer NOT NULL DEFAULT 0,
    breached   integer NOT NULL DEFAULT 0,
    latency_s  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (grain, scope, dim, at, key)
) WITH (fillfactor = 70); -- room on each page, so that adding to a row stays a HOT update
-- Pruning reads old buckets of one grain.
CREATE INDEX dashboard_counts_prune ON dashboard_counts (grain, at);

-- Histogram of the times from submission to completion of requests, by
-- service ('' for all services) and scope as above: counts[i + 1] is the
-- number of completions in bucket i. Bucket 0 holds times up to 10 ms,
-- bucket i > 0 those in (10 ms × 2^((i-1)/2), 10 ms × 2^(i/2)], up to
-- bucket 63 (events.LatencyBucket). One row per service and bucket of time
-- keeps a month's histograms of every service a few thousand rows.
CREATE TABLE dashboard_latency (
    grain   text NOT NULL CHECK (grain IN ('minute', 'hour', 'day')),
    at      timestamptz NOT NULL,
    scope   text NOT NULL,
    service text NOT NULL,
    counts  integer[] NOT NULL CHECK (cardinality(counts) = 64),
    PRIMARY KEY (grain, scope, at, service)
) WITH (fillfactor = 70);
CREATE INDEX dashboard_latency_prune ON dashboard_latency (grain, at);

-- Dead letters waiting for an operator, counted by agency without a scan.
CREATE INDEX dead_letters_pending ON dead_letters (agency) WHERE replayed_at IS NULL;
