-- An export that arrives again unchanged is a delivery too (it counts for a reporting period), so it gets a
-- batch row with status 'unchanged' that points at the batch whose data it repeats. Nothing else changes:
-- the views that show "the newest batch" of a library skip these receipts.

DO $$
DECLARE
    name text;
BEGIN
    SELECT conname INTO name FROM pg_constraint
    WHERE conrelid = 'core.batch'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%status%';
    IF name IS NOT NULL THEN
        EXECUTE format('ALTER TABLE core.batch DROP CONSTRAINT %I', name);
    END IF;
END $$;

ALTER TABLE core.batch
    ADD CONSTRAINT batch_status_check
        CHECK (status IN ('loading', 'applied', 'held', 'failed', 'unchanged')),
    ADD COLUMN IF NOT EXISTS same_as_batch bigint REFERENCES core.batch (batch_id);

COMMENT ON COLUMN core.batch.same_as_batch IS
  'For status unchanged: the batch whose export had the same sha256 (the data in core is that batch''s).';

CREATE OR REPLACE VIEW marts.library_last_batch AS
SELECT DISTINCT ON (b.library_code)
    b.library_code, b.batch_id, b.status, b.status_reason, b.file_name, b.sha256, b.started_at, b.finished_at,
    b.records_read, b.records_loaded, b.records_quarantined, b.records_unreadable, b.items_loaded
FROM core.batch b
WHERE b.status <> 'unchanged'
ORDER BY b.library_code, b.batch_id DESC;

COMMENT ON VIEW marts.library_last_batch IS
  'The newest ingest batch of each library that carried data (unchanged re-deliveries skipped), with its conservation counts (read = loaded + quarantined + unreadable).';

CREATE OR REPLACE VIEW marts.library_deliveries AS
SELECT b.library_code, b.batch_id, b.status, coalesce(b.finished_at, b.started_at) AS delivered_at, b.file_name,
       b.sha256, b.same_as_batch
FROM core.batch b
WHERE b.status IN ('applied', 'held', 'unchanged', 'failed');

COMMENT ON VIEW marts.library_deliveries IS
  'Every export a library delivered and what became of it: applied, held (too small against the last accepted one), unchanged (same sha256 as same_as_batch) or failed.';
