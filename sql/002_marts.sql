-- lienthong warehouse, migration 002: documented views for analysts (schema marts).
-- Each view reads only current state unless its name says otherwise. See docs/marts.md.

CREATE OR REPLACE VIEW marts.library_holdings AS
SELECT
    l.library_code,
    l.name                                       AS library_name,
    l.library_type,
    l.admin_unit,
    count(DISTINCT r.record_id)                  AS records,
    count(i.item_id)                             AS items,
    count(DISTINCT r.record_id) FILTER (WHERE r.is_complete) AS complete_records,
    max(r.valid_from)                            AS last_change_at
FROM core.library l
LEFT JOIN core.record r ON r.library_code = l.library_code AND r.valid_to IS NULL
LEFT JOIN core.item i   ON i.record_id = r.record_id
GROUP BY l.library_code, l.name, l.library_type, l.admin_unit;

COMMENT ON VIEW marts.library_holdings IS
  'One row per registry library: current bibliographic records, items (copies), records with no quality warning.';

CREATE OR REPLACE VIEW marts.library_last_batch AS
SELECT DISTINCT ON (b.library_code)
    b.library_code, b.batch_id, b.status, b.status_reason, b.file_name, b.sha256, b.started_at, b.finished_at,
    b.records_read, b.records_loaded, b.records_quarantined, b.records_unreadable, b.items_loaded
FROM core.batch b
ORDER BY b.library_code, b.batch_id DESC;

COMMENT ON VIEW marts.library_last_batch IS
  'The newest ingest batch of each library with its conservation counts (read = loaded + quarantined + unreadable).';

CREATE OR REPLACE VIEW marts.province_summary AS
SELECT
    (SELECT count(*) FROM core.library)                                         AS libraries,
    (SELECT count(DISTINCT library_code) FROM core.record WHERE valid_to IS NULL) AS libraries_with_records,
    (SELECT count(*) FROM core.record WHERE valid_to IS NULL)                    AS records,
    (SELECT count(*) FROM core.item i JOIN core.record r USING (record_id) WHERE r.valid_to IS NULL) AS items,
    (SELECT count(*) FROM core.record WHERE valid_to IS NULL AND is_complete) AS complete_records,
    (SELECT count(*) FROM quality.quarantine q
       JOIN marts.library_last_batch lb ON lb.batch_id = q.batch_id)             AS quarantined_records;

COMMENT ON VIEW marts.province_summary IS
  'One row: libraries, current records and items, records complete in the seven mandatory elements, records quarantined in each library''s newest batch.';

CREATE OR REPLACE VIEW marts.quality_failures AS
SELECT f.library_code, l.name AS library_name, f.batch_id, f.local_id, f.rule, f.field, f.severity,
       f.value, f.message_vi, f.fix_vi
FROM quality.check_failure f
JOIN marts.library_last_batch lb ON lb.batch_id = f.batch_id
JOIN core.library l ON l.library_code = f.library_code;

COMMENT ON VIEW marts.quality_failures IS
  'Every failing check of each library''s newest batch, with the Vietnamese message and fix for stewards.';
