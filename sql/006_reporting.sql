-- lienthong warehouse, migration 006: period reports (§VI: semester I due 15/01, school year due 25/5).
-- Figures are read from core's history at a fixed instant (as_of), so a past period always gives the same numbers.
-- See docs/reports.md and docs/marts.md.

CREATE SCHEMA IF NOT EXISTS reporting;

-- ---------------------------------------------------------------- kind of a copy (SGK, STK, SNV, TN)
-- The documented mapping (docs/reports.md): the item type code (Koha 952$y) when it is one of the four kinds;
-- else the prefix of the accession number (ĐKCB "SGK.000123", "STK-12"); else words of the collection name
-- (952$8 "Kho sách giáo khoa"); else KHAC (other).
CREATE OR REPLACE FUNCTION reporting.item_kind(item_type text, accession_number text, collection text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN upper(btrim(item_type)) IN ('SGK', 'STK', 'SNV', 'TN') THEN upper(btrim(item_type))
        WHEN upper(substring(btrim(accession_number) FROM '^([A-Za-z]+)[.\-/ _]?[0-9]'))
             IN ('SGK', 'STK', 'SNV', 'TN')
            THEN upper(substring(btrim(accession_number) FROM '^([A-Za-z]+)[.\-/ _]?[0-9]'))
        WHEN lower(collection) LIKE '%giáo khoa%' OR collection LIKE '%GIÁO KHOA%' THEN 'SGK'
        WHEN lower(collection) LIKE '%tham khảo%' OR collection LIKE '%THAM KHẢO%' THEN 'STK'
        WHEN lower(collection) LIKE '%nghiệp vụ%' OR collection LIKE '%NGHIỆP VỤ%' THEN 'SNV'
        WHEN lower(collection) LIKE '%thiếu nhi%' OR collection LIKE '%THIẾU NHI%' THEN 'TN'
        ELSE 'KHAC'
    END
$$;

COMMENT ON FUNCTION reporting.item_kind(text, text, text) IS
  'Kind of a copy for the period reports: SGK textbook, STK reference, SNV professional, TN children''s, KHAC other.';

-- ---------------------------------------------------------------- figures of every library at an instant
CREATE OR REPLACE FUNCTION marts.library_figures_as_of(as_of timestamptz, since timestamptz DEFAULT NULL)
RETURNS TABLE (
    library_code text, titles bigint, copies bigint, complete_titles bigint, warning_titles bigint,
    titles_sgk bigint, titles_stk bigint, titles_snv bigint, titles_tn bigint, titles_other bigint,
    copies_sgk bigint, copies_stk bigint, copies_snv bigint, copies_tn bigint, copies_other bigint,
    titles_at_start bigint, new_titles bigint, new_copies bigint
) LANGUAGE sql STABLE AS $$
    WITH rec AS (
        SELECT r.record_id, r.library_code, r.local_id, r.is_complete, r.has_warnings, r.quantity
        FROM core.record r
        WHERE r.valid_from < as_of AND (r.valid_to IS NULL OR r.valid_to >= as_of)
    ), start_rec AS (
        SELECT r.record_id, r.library_code, r.local_id
        FROM core.record r
        WHERE since IS NOT NULL AND r.valid_from < since AND (r.valid_to IS NULL OR r.valid_to >= since)
    ), start_acc AS (
        SELECT DISTINCT i.library_code, i.accession_number
        FROM core.item i JOIN start_rec s ON s.record_id = i.record_id
        WHERE i.accession_number IS NOT NULL
    ), itm AS (
        SELECT i.record_id, i.library_code, i.item_seq, i.accession_number,
               reporting.item_kind(i.item_type, i.accession_number, i.collection) AS kind
        FROM core.item i JOIN rec ON rec.record_id = i.record_id
    ), rec_kind AS (
        SELECT DISTINCT ON (record_id) record_id, kind FROM itm ORDER BY record_id, item_seq
    ), rec_all AS (
        SELECT rec.*, coalesce(k.kind, 'KHAC') AS kind,
               NOT EXISTS (SELECT 1 FROM start_rec s
                           WHERE s.library_code = rec.library_code AND s.local_id = rec.local_id) AS is_new,
               (SELECT count(*) FROM itm WHERE itm.record_id = rec.record_id) AS n_items
        FROM rec LEFT JOIN rec_kind k ON k.record_id = rec.record_id
    ), by_record AS (
        SELECT library_code,
               count(*) AS titles,
               sum(CASE WHEN n_items = 0 THEN coalesce(quantity, 0) ELSE 0 END) AS unnumbered_copies,
               count(*) FILTER (WHERE is_complete) AS complete_titles,
               count(*) FILTER (WHERE has_warnings) AS warning_titles,
               count(*) FILTER (WHERE kind = 'SGK') AS titles_sgk,
               count(*) FILTER (WHERE kind = 'STK') AS titles_stk,
               count(*) FILTER (WHERE kind = 'SNV') AS titles_snv,
               count(*) FILTER (WHERE kind = 'TN') AS titles_tn,
               count(*) FILTER (WHERE kind = 'KHAC') AS titles_other,
               count(*) FILTER (WHERE is_new) AS new_titles
        FROM rec_all GROUP BY library_code
    ), by_item AS (
        SELECT itm.library_code,
               count(*) AS copies,
               count(*) FILTER (WHERE itm.kind = 'SGK') AS copies_sgk,
               count(*) FILTER (WHERE itm.kind = 'STK') AS copies_stk,
               count(*) FILTER (WHERE itm.kind = 'SNV') AS copies_snv,
               count(*) FILTER (WHERE itm.kind = 'TN') AS copies_tn,
               count(*) FILTER (WHERE itm.kind = 'KHAC') AS copies_other,
               count(*) FILTER (WHERE CASE WHEN itm.accession_number IS NULL THEN ra.is_new
                                           ELSE NOT EXISTS (SELECT 1 FROM start_acc sa
                                                            WHERE sa.library_code = itm.library_code
                                                              AND sa.accession_number = itm.accession_number)
                                      END) AS new_copies
        FROM itm JOIN rec_all ra ON ra.record_id = itm.record_id
        GROUP BY itm.library_code
    ), at_start AS (
        SELECT library_code, count(*) AS titles_at_start FROM start_rec GROUP BY library_code
    )
    SELECT l.library_code,
           coalesce(r.titles, 0), coalesce(i.copies, 0) + coalesce(r.unnumbered_copies, 0),
           coalesce(r.complete_titles, 0), coalesce(r.warning_titles, 0),
           coalesce(r.titles_sgk, 0), coalesce(r.titles_stk, 0), coalesce(r.titles_snv, 0),
           coalesce(r.titles_tn, 0), coalesce(r.titles_other, 0),
           coalesce(i.copies_sgk, 0), coalesce(i.copies_stk, 0), coalesce(i.copies_snv, 0),
           coalesce(i.copies_tn, 0), coalesce(i.copies_other, 0) + coalesce(r.unnumbered_copies, 0),
           coalesce(s.titles_at_start, 0), coalesce(r.new_titles, 0), coalesce(i.new_copies, 0)
    FROM core.library l
    LEFT JOIN by_record r ON r.library_code = l.library_code
    LEFT JOIN by_item i ON i.library_code = l.library_code
    LEFT JOIN at_start s ON s.library_code = l.library_code
$$;

COMMENT ON FUNCTION marts.library_figures_as_of(timestamptz, timestamptz) IS
  'Holdings of every registry library as they stood at as_of (record versions valid then): titles, copies, complete and warned titles, titles/copies by kind (reporting.item_kind), and what is new since `since` (titles by local id, copies by accession number).';

-- ---------------------------------------------------------------- who delivered for a period
-- An accepted export (a batch applied, or recorded unchanged) finished at or after `opens` delivers for the
-- period: before `due_at` on time, later late, none by `checked_at` missing.
CREATE OR REPLACE FUNCTION marts.period_submissions(opens timestamptz, due_at timestamptz,
                                                    checked_at timestamptz DEFAULT now())
RETURNS TABLE (
    library_code text, status text, accepted_at timestamptz, batch_id bigint,
    last_delivery_status text, last_delivery_at timestamptz, last_delivery_reason text
) LANGUAGE sql STABLE AS $$
    SELECT l.library_code,
           CASE WHEN a.batch_id IS NULL THEN 'missing' WHEN a.done_at < due_at THEN 'on_time' ELSE 'late' END,
           a.done_at, a.batch_id, lb.status, lb.started_at, lb.status_reason
    FROM core.library l
    LEFT JOIN LATERAL (
        SELECT b.batch_id, coalesce(b.finished_at, b.started_at) AS done_at
        FROM core.batch b
        WHERE b.library_code = l.library_code AND b.status IN ('applied', 'unchanged')
          AND coalesce(b.finished_at, b.started_at) >= opens AND coalesce(b.finished_at, b.started_at) < checked_at
        ORDER BY coalesce(b.finished_at, b.started_at), b.batch_id
        LIMIT 1
    ) a ON true
    LEFT JOIN LATERAL (
        SELECT b.status, b.started_at, b.status_reason
        FROM core.batch b
        WHERE b.library_code = l.library_code AND b.started_at >= opens AND b.started_at < checked_at
        ORDER BY b.started_at DESC, b.batch_id DESC
        LIMIT 1
    ) lb ON true
$$;

COMMENT ON FUNCTION marts.period_submissions(timestamptz, timestamptz, timestamptz) IS
  'One row per registry library: on_time, late or missing for a reporting window (opens, due_at) as seen at checked_at, with the first accepted batch and the newest delivery of the window (held or failed ones explain a missing library).';

-- ---------------------------------------------------------------- reminders sent and reports built
CREATE TABLE reporting.reminder (
    reminder_id    bigserial PRIMARY KEY,
    period         text NOT NULL,
    days_before    integer NOT NULL,
    role           text NOT NULL CHECK (role IN ('lead_library', 'education_office')),
    recipient      text NOT NULL,
    group_code     text NOT NULL DEFAULT '',
    library_codes  text[] NOT NULL,
    subject        text NOT NULL,
    sent_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (period, days_before, role, recipient, group_code)
);

CREATE TABLE reporting.report_run (
    run_id         bigserial PRIMARY KEY,
    period         text NOT NULL,
    as_of          timestamptz NOT NULL,
    provisional    boolean NOT NULL,
    generated_at   timestamptz NOT NULL DEFAULT now(),
    out_dir        text,
    figures_sha256 char(64) NOT NULL,
    totals         jsonb NOT NULL,
    -- figures with no history in the warehouse (union catalogue membership is rebuilt in place), kept from the
    -- first run after the period closed so later runs of the period report the same
    frozen         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX report_run_period_idx ON reporting.report_run (period, run_id DESC);

CREATE OR REPLACE VIEW marts.period_report_runs AS
SELECT run_id, period, as_of, provisional, generated_at, out_dir, figures_sha256,
       (totals ->> 'titles')::bigint AS titles, (totals ->> 'copies')::bigint AS copies
FROM reporting.report_run;

COMMENT ON VIEW marts.period_report_runs IS
  'Every period report built: its period, the instant its figures were read at, whether the period was still open (provisional), and a sha256 of its figures (equal for two runs of a closed period).';
COMMENT ON COLUMN marts.period_report_runs.figures_sha256 IS
  'sha256 of the report''s figures in canonical JSON; two runs of the same closed period give the same value.';

CREATE OR REPLACE VIEW marts.period_reminders AS
SELECT period, days_before, role, recipient, nullif(group_code, '') AS group_code, library_codes, sent_at
FROM reporting.reminder;

COMMENT ON VIEW marts.period_reminders IS
  'Reminders e-mailed before a report deadline: to each group''s lead library (its members with no accepted export yet) and to the education office (all of them).';
