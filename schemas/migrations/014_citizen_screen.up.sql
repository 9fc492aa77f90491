-- The citizen's screen (docs/desk-app.md): a second browser window paired
-- with one visit, which follows the mediator's steps.
--
-- pair_hash is the SHA-256 of the short code the mediator shows, until
-- pair_expires_at; screen_hash the SHA-256 of the token the paired
-- screen's cookie holds. screen_step is the page the mediator is on
-- ("consent", "services", "form:2", "check:2", "done:2", "visit", "receipt"),
-- screen_seq counts its changes; each change is announced to the processes
-- that serve screens with NOTIFY spotflow_screen, the visit's ID as payload.
-- Nothing personal is added: the screen shows what the visit keeps sealed.
ALTER TABLE visits
    ADD COLUMN pair_hash bytea UNIQUE,
    ADD COLUMN pair_expires_at timestamptz,
    ADD COLUMN screen_hash bytea UNIQUE,
    ADD COLUMN screen_step text NOT NULL DEFAULT 'visit',
    ADD COLUMN screen_seq bigint NOT NULL DEFAULT 0;
