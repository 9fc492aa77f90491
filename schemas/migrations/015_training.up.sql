-- Training mode (docs/desk-app.md): a mediator practises real services on
-- simulated agencies. A session switched to training starts training
-- visits, whose requests are marked training: they go to the practice
-- queue only, count in no roll-up (dashboards, service levels, open data)
-- and are deleted, with their visits, after the training retention.

-- A trainer prepares practice scenarios and follows trainees' visits.
ALTER TABLE mediators ADD COLUMN trainer boolean NOT NULL DEFAULT false;

ALTER TABLE mediator_sessions ADD COLUMN training boolean NOT NULL DEFAULT false;

ALTER TABLE visits ADD COLUMN training boolean NOT NULL DEFAULT false;
CREATE INDEX visits_training ON visits (started_at) WHERE training;

ALTER TABLE requests ADD COLUMN training boolean NOT NULL DEFAULT false;
CREATE INDEX requests_training ON requests (submitted_at) WHERE training;

-- What the simulated agencies do with a trainee's practice requests, as a
-- trainer last chose: outcome 'complete', 'reject' (with reason), 'slow'
-- (taking delay_seconds) or 'fail' (until an operator replays it). A
-- trainee without a row gets 'complete'.
CREATE TABLE training_scenarios (
    username      text PRIMARY KEY REFERENCES mediators (username),
    outcome       text NOT NULL CHECK (outcome IN ('complete', 'reject', 'slow', 'fail')),
    reason        text NOT NULL DEFAULT '',
    delay_seconds int NOT NULL DEFAULT 0 CHECK (delay_seconds BETWEEN 0 AND 3600),
    set_by        text NOT NULL,
    set_at        timestamptz NOT NULL DEFAULT now()
);
