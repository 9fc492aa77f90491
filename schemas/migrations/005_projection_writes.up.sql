-- The projector is the only writer of work items and the timeline, and it
-- adds rows to them only for a request it holds locked in the same
-- transaction: the foreign keys on requests checked again, row by row, what
-- the projector already knows, and were the largest cost of writing a batch.
ALTER TABLE work_items DROP CONSTRAINT IF EXISTS work_items_request_id_fkey;
ALTER TABLE timeline DROP CONSTRAINT IF EXISTS timeline_request_id_fkey;
-- Intake claims a key only for the desk its credential names, and desks are
-- never deleted. The check locked the desk's row for every claim, so that
-- the concurrent claims of a busy desk queued on one row.
ALTER TABLE intake_keys DROP CONSTRAINT IF EXISTS intake_keys_desk_id_fkey;
