-- Rows that change after they are written (a request's status, a work
-- item's, a minute's count, an idempotency key's publication) are updated
-- in place when no indexed column changes and their page has room: a HOT
-- update, which writes no index entries. So no index covers a column that
-- changes, and those tables leave room on each page.

-- Unused: stalled requests are found from intake_keys, and their requests
-- by primary key. It made every change of a request's status write a new
-- entry in each of the table's indexes.
DROP INDEX IF EXISTS requests_stalled;

-- Stalled requests are found by when their key was claimed, which never
-- changes, instead of when they were published, which is set afterwards.
CREATE INDEX intake_keys_created ON intake_keys (created_at);
DROP INDEX IF EXISTS intake_keys_published;

-- Applies to pages written from now on.
ALTER TABLE requests SET (fillfactor = 80);
ALTER TABLE work_items SET (fillfactor = 80);
ALTER TABLE throughput_minute SET (fillfactor = 70);
ALTER TABLE intake_keys SET (fillfactor = 50);
