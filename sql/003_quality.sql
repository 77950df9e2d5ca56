-- lienthong warehouse, migration 003: record quality (issue 4). Schema quality, plus documented marts views.
-- Row-level failures stay in quality.check_failure (created in 001); this adds what the steward workflow,
-- the batch-level checks and the scorecards need. See docs/quality.md.

-- ---------------------------------------------------------------- row-level failures: audit of exceptions
ALTER TABLE quality.check_failure
    ADD COLUMN record_hash      char(64),
    ADD COLUMN default_severity text CHECK (default_severity IN ('error', 'warning')),
    ADD COLUMN accepted         boolean NOT NULL DEFAULT false,
    ADD COLUMN exception_id     bigint;
CREATE INDEX check_failure_record_idx ON quality.check_failure (library_code, local_id, rule);

COMMENT ON COLUMN quality.check_failure.severity IS
  'Effective severity: the province default of the rule, raised to error by a group rule in the registry.';
COMMENT ON COLUMN quality.check_failure.accepted IS
  'True when an accepted exception (quality.exception) covers this failure: it neither quarantines nor flags.';

-- ---------------------------------------------------------------- accepted exceptions (steward decisions)
CREATE TABLE quality.exception (
    exception_id      bigserial PRIMARY KEY,
    library_code      text NOT NULL REFERENCES core.library (library_code),
    local_id          text NOT NULL,
    rule              text NOT NULL,
    record_hash       char(64) NOT NULL,   -- the record version the steward looked at
    reason            text NOT NULL CHECK (length(btrim(reason)) > 0),
    accepted_by       text NOT NULL,
    accepted_at       timestamptz NOT NULL DEFAULT now(),
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'reopened')),
    reopened_at       timestamptz,
    reopened_by_batch bigint REFERENCES core.batch (batch_id) ON DELETE SET NULL,
    reopen_reason     text
);
CREATE UNIQUE INDEX exception_active_uidx ON quality.exception (library_code, local_id, rule)
    WHERE status = 'active';

-- ---------------------------------------------------------------- batch-level checks
CREATE TABLE quality.batch_check (
    batch_id      bigint NOT NULL REFERENCES core.batch (batch_id) ON DELETE CASCADE,
    library_code  text NOT NULL,
    rule          text NOT NULL,
    field         text NOT NULL,
    observed      double precision,
    expected_min  double precision,
    success       boolean NOT NULL,
    severity      text NOT NULL CHECK (severity IN ('error', 'warning')),
    message_vi    text NOT NULL,
    PRIMARY KEY (batch_id, rule, field)
);

-- GX validation results of a batch (unexpected row lists trimmed): the input of the Data Docs.
CREATE TABLE quality.gx_result (
    batch_id      bigint NOT NULL REFERENCES core.batch (batch_id) ON DELETE CASCADE,
    library_code  text NOT NULL,
    suite         text NOT NULL,
    chunk         integer NOT NULL,
    success       boolean NOT NULL,
    result        jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, suite, chunk)
);

-- ---------------------------------------------------------------- scorecards: one per batch (the trend)
CREATE TABLE quality.scorecard (
    batch_id          bigint PRIMARY KEY REFERENCES core.batch (batch_id) ON DELETE CASCADE,
    library_code      text NOT NULL,
    computed_at       timestamptz NOT NULL DEFAULT now(),
    records           integer NOT NULL,   -- readable records of the export
    complete_records  integer NOT NULL,   -- all seven mandatory elements present
    valid_records     integer NOT NULL,   -- no validity failure (ISBN, year, language, call number, ĐKCB)
    error_records     integer NOT NULL,   -- quarantined
    warning_records   integer NOT NULL,   -- loaded with a flag
    accepted_failures integer NOT NULL,
    completeness_min  numeric(7, 6) NOT NULL,
    validity          numeric(7, 6) NOT NULL,
    tier              text NOT NULL CHECK (tier IN ('A', 'B', 'C', 'D'))
);
CREATE INDEX scorecard_library_idx ON quality.scorecard (library_code, batch_id DESC);

CREATE TABLE quality.scorecard_element (
    batch_id   bigint NOT NULL REFERENCES quality.scorecard (batch_id) ON DELETE CASCADE,
    element    text NOT NULL,
    present    integer NOT NULL,
    evaluated  integer NOT NULL,
    PRIMARY KEY (batch_id, element)
);

-- Group and province roll-ups, one set per refresh (review_record_quality DAG): the trend across runs.
CREATE TABLE quality.scorecard_rollup (
    refresh_id        bigint NOT NULL,
    refreshed_at      timestamptz NOT NULL DEFAULT now(),
    level             text NOT NULL CHECK (level IN ('library', 'group', 'province')),
    code              text NOT NULL,
    libraries         integer NOT NULL,
    records           integer NOT NULL,
    completeness      jsonb NOT NULL,
    completeness_min  numeric(7, 6) NOT NULL,
    validity          numeric(7, 6) NOT NULL,
    tier              text NOT NULL,
    PRIMARY KEY (refresh_id, level, code)
);
CREATE SEQUENCE quality.scorecard_refresh_seq;

-- ---------------------------------------------------------------- marts
CREATE OR REPLACE VIEW marts.record_quality AS
SELECT f.library_code, l.name AS library_name, f.batch_id, f.local_id, f.record_index,
       coalesce(r.title, q.title) AS title,
       CASE WHEN q.local_id IS NOT NULL THEN 'quarantined' ELSE 'loaded' END AS record_status,
       f.rule, f.field, f.value, f.severity, f.default_severity, f.accepted, f.exception_id,
       f.message_vi, f.fix_vi
FROM quality.check_failure f
JOIN (SELECT DISTINCT ON (library_code) batch_id FROM core.batch
      WHERE status IN ('applied', 'held') ORDER BY library_code, batch_id DESC) lb ON lb.batch_id = f.batch_id
JOIN core.library l ON l.library_code = f.library_code
LEFT JOIN quality.quarantine q ON q.batch_id = f.batch_id AND q.record_index = f.record_index
LEFT JOIN core.record r ON r.library_code = f.library_code AND r.local_id = f.local_id AND r.valid_to IS NULL;

COMMENT ON VIEW marts.record_quality IS
  'One row per failing check (record, rule) in each library''s newest checked batch (applied or held; a failed run is skipped), with the record''s title, whether it was quarantined or loaded, the effective severity and whether a steward accepted it.';
COMMENT ON COLUMN marts.record_quality.severity IS 'error quarantines the record, warning loads it with a flag (after group rules).';
COMMENT ON COLUMN marts.record_quality.accepted IS 'an accepted exception covers this failure (lienthong quality accept).';

CREATE OR REPLACE VIEW marts.library_scorecard AS
SELECT DISTINCT ON (s.library_code)
       s.library_code, l.name AS library_name, s.batch_id, s.computed_at, s.records, s.complete_records,
       s.valid_records, s.error_records, s.warning_records, s.accepted_failures,
       max(e.present::numeric / nullif(e.evaluated, 0)) FILTER (WHERE e.element = 'title')            AS title,
       max(e.present::numeric / nullif(e.evaluated, 0)) FILTER (WHERE e.element = 'author')           AS author,
       max(e.present::numeric / nullif(e.evaluated, 0)) FILTER (WHERE e.element = 'publication')      AS publication,
       max(e.present::numeric / nullif(e.evaluated, 0)) FILTER (WHERE e.element = 'keywords')         AS keywords,
       max(e.present::numeric / nullif(e.evaluated, 0)) FILTER (WHERE e.element = 'subject')          AS subject,
       max(e.present::numeric / nullif(e.evaluated, 0)) FILTER (WHERE e.element = 'accession_number') AS accession_number,
       max(e.present::numeric / nullif(e.evaluated, 0)) FILTER (WHERE e.element = 'call_number')      AS call_number,
       s.completeness_min, s.validity, s.tier
FROM quality.scorecard s
JOIN core.library l ON l.library_code = s.library_code
LEFT JOIN quality.scorecard_element e ON e.batch_id = s.batch_id
GROUP BY s.batch_id, l.name
ORDER BY s.library_code, s.batch_id DESC;

COMMENT ON VIEW marts.library_scorecard IS
  'One row per library: the scorecard of its newest scored batch: completeness per mandatory element of §III.4b (share of records carrying it; ĐKCB not counted for SGK register lines), validity (share of records with no validity failure) and the tier (A, B, C, D; thresholds in docs/quality.md).';

CREATE OR REPLACE VIEW marts.scorecard_trend AS
SELECT s.library_code, s.batch_id, b.started_at, b.status AS batch_status, s.records, s.complete_records,
       s.completeness_min, s.validity, s.tier
FROM quality.scorecard s JOIN core.batch b USING (batch_id);

COMMENT ON VIEW marts.scorecard_trend IS
  'Every scored batch of every library, oldest to newest by batch_id: how a library''s record quality moves across runs.';

CREATE OR REPLACE VIEW marts.quality_rollup AS
SELECT r.*
FROM quality.scorecard_rollup r
WHERE r.refresh_id = (SELECT max(refresh_id) FROM quality.scorecard_rollup);

COMMENT ON VIEW marts.quality_rollup IS
  'The newest scorecard refresh: one row per library, per group (members'' latest scorecards pooled) and for the province; quality.scorecard_rollup keeps every refresh for the trend.';
