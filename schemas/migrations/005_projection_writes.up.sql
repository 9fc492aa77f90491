-- The projector is the only writer of work items and the timeline, and it
-- adds rows to them only for a request it holds locked in the same
-- transaction: the foreign keys on requests checked again, row by row, what
-- the projector already knows, and were the largest cost of writing a batch.
ALTER TABLE work_items DROP CONSTRAINT IF EXISTS work_items_request_id_fkey;
ALTER TABLE timeline DROP CONSTRAINT IF EXISTS timeline_request_id_fkey;
