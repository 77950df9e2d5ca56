-- lienthong warehouse, migration 001: the schemas of the stages and the first vertical slice.
-- Applied by Alembic (include/lienthong/migrations); every statement is idempotent-safe within a fresh schema.

CREATE SCHEMA IF NOT EXISTS landing;
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS core;
CREATE SCHEMA IF NOT EXISTS quality;
CREATE SCHEMA IF NOT EXISTS catalog;
CREATE SCHEMA IF NOT EXISTS marts;

-- ---------------------------------------------------------------- registry dimensions
CREATE TABLE core.administrative_unit (
    unit_code    text PRIMARY KEY,
    name         text NOT NULL,
    level        text NOT NULL,
    parent_code  text,
    valid_from   date NOT NULL,
    valid_to     date
);

CREATE TABLE core.library (
    library_code   text PRIMARY KEY,
    name           text NOT NULL,
    library_type   text NOT NULL,
    admin_unit     text,
    commune        text,
    valid_from     date NOT NULL,
    valid_to       date,
    is_sample      boolean NOT NULL DEFAULT false,
    export_source  jsonb NOT NULL DEFAULT '{}'::jsonb,
    lending_policy jsonb NOT NULL DEFAULT '{}'::jsonb,
    call_number_scheme text,
    registry_loaded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE core.library_group (
    group_code    text PRIMARY KEY,
    name          text NOT NULL,
    linking_mode  text NOT NULL,
    lead_library  text NOT NULL REFERENCES core.library (library_code),
    valid_from    date NOT NULL,
    valid_to      date,
    rules         jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE core.group_membership (
    group_code    text NOT NULL REFERENCES core.library_group (group_code) ON DELETE CASCADE,
    library_code  text NOT NULL REFERENCES core.library (library_code),
    valid_from    date NOT NULL,
    valid_to      date,
    PRIMARY KEY (group_code, library_code, valid_from)
);

-- ---------------------------------------------------------------- landing: every byte kept
CREATE TABLE landing.delivery (
    delivery_id    bigserial PRIMARY KEY,
    library_code   text NOT NULL,
    source         text NOT NULL,
    original_name  text NOT NULL,
    sha256         char(64) NOT NULL,
    size_bytes     bigint NOT NULL,
    stored_path    text NOT NULL,
    fetched_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (library_code, sha256)
);

-- ---------------------------------------------------------------- batches: one run of one export
CREATE TABLE core.batch (
    batch_id           bigserial PRIMARY KEY,
    library_code       text NOT NULL,
    delivery_id        bigint REFERENCES landing.delivery (delivery_id),
    sha256             char(64),
    file_name          text,
    file_format        text,
    status             text NOT NULL DEFAULT 'loading'
                       CHECK (status IN ('loading', 'applied', 'held', 'failed')),
    status_reason      text,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    records_read       integer NOT NULL DEFAULT 0,
    records_loaded     integer NOT NULL DEFAULT 0,
    records_quarantined integer NOT NULL DEFAULT 0,
    records_unreadable integer NOT NULL DEFAULT 0,
    items_loaded       integer NOT NULL DEFAULT 0,
    records_inserted   integer NOT NULL DEFAULT 0,
    records_closed     integer NOT NULL DEFAULT 0,
    validation         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX batch_library_idx ON core.batch (library_code, batch_id DESC);

-- ---------------------------------------------------------------- staging: a batch before it is applied
CREATE UNLOGGED TABLE staging.record (
    batch_id      bigint NOT NULL,
    local_id      text NOT NULL,
    record_index  integer NOT NULL,
    byte_offset   bigint,
    title         text,
    author        text,
    pub_place     text,
    publisher     text,
    pub_year      text,
    isbns         jsonb NOT NULL,
    language      text,
    keywords      jsonb NOT NULL,
    subjects      jsonb NOT NULL,
    call_number   text,
    quantity      integer,
    encoding      text NOT NULL,
    repairs       jsonb NOT NULL,
    record_hash   char(64) NOT NULL,
    has_warnings  boolean NOT NULL,
    is_complete   boolean NOT NULL
);
CREATE INDEX staging_record_batch_idx ON staging.record (batch_id, local_id);

CREATE UNLOGGED TABLE staging.item (
    batch_id          bigint NOT NULL,
    local_id          text NOT NULL,
    item_seq          integer NOT NULL,
    accession_number  text,
    call_number       text,
    barcode           text,
    collection        text,
    item_type         text,
    location          text,
    status            text
);
CREATE INDEX staging_item_batch_idx ON staging.item (batch_id, local_id);

-- ---------------------------------------------------------------- core: records and items with history
-- A record version is valid from valid_from until valid_to (NULL = current). Items belong to a version,
-- so the holdings of any library on any past date are a join away.
CREATE TABLE core.record (
    record_id     bigserial PRIMARY KEY,
    library_code  text NOT NULL REFERENCES core.library (library_code),
    local_id      text NOT NULL,
    record_hash   char(64) NOT NULL,
    title         text,
    author        text,
    pub_place     text,
    publisher     text,
    pub_year      text,
    isbns         text[] NOT NULL DEFAULT '{}',
    language      text,
    keywords      text[] NOT NULL DEFAULT '{}',
    subjects      text[] NOT NULL DEFAULT '{}',
    call_number   text,
    quantity      integer,
    encoding      text NOT NULL,
    repairs       text[] NOT NULL DEFAULT '{}',
    has_warnings  boolean NOT NULL DEFAULT false,
    is_complete   boolean NOT NULL DEFAULT false,  -- all seven mandatory elements of §III.4b present
    valid_from    timestamptz NOT NULL,
    valid_to      timestamptz,
    loaded_by_batch bigint NOT NULL REFERENCES core.batch (batch_id),
    closed_by_batch bigint REFERENCES core.batch (batch_id)
);
CREATE UNIQUE INDEX record_current_uidx ON core.record (library_code, local_id) WHERE valid_to IS NULL;
CREATE INDEX record_history_idx ON core.record (library_code, valid_from, valid_to);

CREATE TABLE core.item (
    item_id           bigserial PRIMARY KEY,
    record_id         bigint NOT NULL REFERENCES core.record (record_id) ON DELETE CASCADE,
    library_code      text NOT NULL,
    item_seq          integer NOT NULL,
    accession_number  text,
    call_number       text,
    barcode           text,
    collection        text,
    item_type         text,
    location          text,
    status            text
);
CREATE INDEX item_record_idx ON core.item (record_id);
CREATE INDEX item_library_accession_idx ON core.item (library_code, accession_number);

-- ---------------------------------------------------------------- quality: what failed and why
CREATE TABLE quality.check_failure (
    failure_id    bigserial PRIMARY KEY,
    batch_id      bigint NOT NULL REFERENCES core.batch (batch_id) ON DELETE CASCADE,
    library_code  text NOT NULL,
    local_id      text NOT NULL,
    record_index  integer NOT NULL,
    rule          text NOT NULL,
    field         text NOT NULL,
    value         text,
    severity      text NOT NULL CHECK (severity IN ('error', 'warning')),
    message_vi    text NOT NULL,
    fix_vi        text NOT NULL
);
CREATE INDEX check_failure_batch_idx ON quality.check_failure (batch_id);
CREATE INDEX check_failure_library_idx ON quality.check_failure (library_code, rule);

CREATE TABLE quality.quarantine (
    batch_id      bigint NOT NULL REFERENCES core.batch (batch_id) ON DELETE CASCADE,
    library_code  text NOT NULL,
    local_id      text NOT NULL,
    record_index  integer NOT NULL,
    record_hash   char(64) NOT NULL,
    title         text,
    reasons       text[] NOT NULL,
    record        jsonb NOT NULL,
    PRIMARY KEY (batch_id, record_index)
);

CREATE TABLE quality.unreadable (
    batch_id      bigint NOT NULL REFERENCES core.batch (batch_id) ON DELETE CASCADE,
    library_code  text NOT NULL,
    record_index  integer NOT NULL,
    byte_offset   bigint,
    reason        text NOT NULL,
    PRIMARY KEY (batch_id, record_index)
);
