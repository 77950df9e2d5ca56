-- lienthong warehouse, migration 004: the union catalogue (mục lục liên hợp, §III.4 of the guidance).
-- Records of every library are matched into clusters, one per manifestation; every link keeps its evidence,
-- stewards' decisions survive rebuilds, and cluster ids stay stable while their members stay.
-- Written by lienthong.catalog (`lienthong catalog build`); see docs/catalog.md.

CREATE SCHEMA IF NOT EXISTS catalog;

-- Match keys of each current record version (core.record valid_to IS NULL), computed once per version.
CREATE TABLE catalog.record_key (
    record_id      bigint PRIMARY KEY REFERENCES core.record (record_id) ON DELETE CASCADE,
    library_code   text NOT NULL,
    local_id       text NOT NULL,
    keys_version   integer NOT NULL,
    title_key      text NOT NULL,   -- tone marks kept, one tone placement, no ISBD punctuation, no volume
    volume         text NOT NULL,   -- '' when the record names no volume; "tập 1", "T.1", "Tập I" → '1'
    author_key     text NOT NULL,   -- direct and inverted forms unified
    publisher_key  text NOT NULL,
    year           text NOT NULL,
    isbn13s        text[] NOT NULL,
    title_numbers  text[] NOT NULL,
    search_folded  text NOT NULL,   -- diacritic-free words for search only, never for matching
    search_exact   text NOT NULL,   -- the same words with their diacritics, for exact ranking
    title_words    text[] NOT NULL, -- diacritic-free words of the title, to rank the closest titles first
    signature      text NOT NULL,   -- hash of all match keys: records with identical keys are compared once
    is_rep         boolean NOT NULL DEFAULT false,  -- the oldest record of its signature, the one compared
    pending        boolean NOT NULL DEFAULT true,  -- not yet compared with the other records
    computed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX record_key_local_idx ON catalog.record_key (library_code, local_id);
CREATE INDEX record_key_pending_idx ON catalog.record_key (record_id) WHERE pending;
CREATE INDEX record_key_signature_idx ON catalog.record_key (signature, record_id);

-- Blocking keys: only records sharing a block are ever compared.
CREATE TABLE catalog.record_block (
    block      text NOT NULL,
    record_id  bigint NOT NULL REFERENCES catalog.record_key (record_id) ON DELETE CASCADE,
    PRIMARY KEY (block, record_id)
);
CREATE INDEX record_block_record_idx ON catalog.record_block (record_id);

-- Every pair the matcher accepted, with its evidence; status says what clustering made of it.
CREATE TABLE catalog.link (
    record_a       bigint NOT NULL REFERENCES catalog.record_key (record_id) ON DELETE CASCADE,
    record_b       bigint NOT NULL REFERENCES catalog.record_key (record_id) ON DELETE CASCADE,
    rule           text NOT NULL,        -- same_keys, isbn, title_author, title_publisher_year
    score          numeric(5, 1) NOT NULL,
    scores         jsonb NOT NULL,       -- title, author, publisher, year (0-100, rapidfuzz), isbn
    status         text NOT NULL DEFAULT 'new'
                   CHECK (status IN ('new', 'joined', 'redundant', 'conflict', 'ambiguous')),
    status_reason  text,
    PRIMARY KEY (record_a, record_b),
    CHECK (record_a < record_b)
);
CREATE INDEX link_record_b_idx ON catalog.link (record_b);

-- Stewards' decisions, by library and control number (001) so they outlive record versions and rebuilds.
CREATE TABLE catalog.decision (
    decision_id   bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('merge', 'split')),
    library_a     text NOT NULL,
    local_id_a    text NOT NULL,
    library_b     text NOT NULL,
    local_id_b    text NOT NULL,
    reason        text NOT NULL CHECK (btrim(reason) <> ''),
    decided_by    text NOT NULL DEFAULT current_user,
    decided_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- Access levels of §III.2b from the registry (library, collection 952$8 or item ĐKCB), refreshed each build.
CREATE TABLE catalog.access_rule (
    library_code  text NOT NULL,
    scope         text NOT NULL CHECK (scope IN ('library', 'collection', 'item')),
    value         text NOT NULL,   -- '' for the library; the collection name; the accession number
    access_level  text NOT NULL
                  CHECK (access_level IN ('metadata_only', 'read_on_site', 'defined_use', 'paid_service')),
    PRIMARY KEY (library_code, scope, value)
);

CREATE SEQUENCE catalog.cluster_id_seq;

CREATE TABLE catalog.cluster (
    cluster_id           bigint PRIMARY KEY,
    preferred_record_id  bigint NOT NULL,
    access_level         text NOT NULL,
    members              integer NOT NULL,
    libraries            integer NOT NULL,
    title                text,
    author               text,
    publisher            text,
    pub_year             text,
    volume               text NOT NULL DEFAULT '',
    isbn13s              text[] NOT NULL DEFAULT '{}',
    search_folded        text NOT NULL,
    search_exact         text NOT NULL,
    title_words          text[] NOT NULL DEFAULT '{}',
    search_tsv           tsvector NOT NULL,
    exact_tsv            tsvector NOT NULL,
    built_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cluster_search_idx ON catalog.cluster USING gin (search_tsv);
CREATE INDEX cluster_exact_idx ON catalog.cluster USING gin (exact_tsv);

CREATE TABLE catalog.cluster_member (
    record_id     bigint PRIMARY KEY,
    library_code  text NOT NULL,
    local_id      text NOT NULL,
    cluster_id    bigint NOT NULL REFERENCES catalog.cluster (cluster_id) ON DELETE CASCADE,
    rule          text NOT NULL,   -- how it joined: isbn, title_author, ..., steward_merge, or 'alone'
    evidence      jsonb NOT NULL
);
CREATE INDEX cluster_member_cluster_idx ON catalog.cluster_member (cluster_id);
CREATE UNIQUE INDEX cluster_member_local_uidx ON catalog.cluster_member (library_code, local_id);

CREATE TABLE catalog.build_run (
    run_id       bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    stats        jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- ---------------------------------------------------------------- marts for analysts
CREATE OR REPLACE VIEW marts.union_catalog AS
SELECT c.cluster_id, c.title, c.author, c.publisher, c.pub_year, c.volume, c.isbn13s, c.access_level,
       c.members AS records, c.libraries,
       (SELECT count(*) FROM catalog.cluster_member m JOIN core.item i ON i.record_id = m.record_id
        WHERE m.cluster_id = c.cluster_id) AS items,
       p.library_code AS preferred_library, p.local_id AS preferred_local_id, c.built_at
FROM catalog.cluster c
JOIN catalog.cluster_member p ON p.record_id = c.preferred_record_id;

COMMENT ON VIEW marts.union_catalog IS
  'The union catalogue: one row per cluster (manifestation) with the preferred record''s description, its access level (§III.2b), how many records, libraries and copies it gathers.';
COMMENT ON COLUMN marts.union_catalog.cluster_id IS 'Stable while the cluster keeps its members; cite it in `lienthong catalog explain/export`.';
COMMENT ON COLUMN marts.union_catalog.access_level IS 'metadata_only, read_on_site, defined_use (download or defined use) or paid_service.';
COMMENT ON COLUMN marts.union_catalog.volume IS 'Volume designation ("1" for tập 1 / T.1 / Tập I); empty when none.';

CREATE OR REPLACE VIEW marts.holdings AS
SELECT m.cluster_id, m.library_code, l.name AS library_name, m.local_id, i.item_id, i.accession_number,
       COALESCE(i.call_number, r.call_number) AS call_number, i.collection, i.location, i.item_type, i.status,
       CASE WHEN i.status IS NOT NULL THEN 'unavailable' END AS availability,
       COALESCE(ai.access_level, ac.access_level, al.access_level, 'read_on_site') AS access_level
FROM catalog.cluster_member m
JOIN core.record r ON r.record_id = m.record_id
JOIN core.library l ON l.library_code = m.library_code
JOIN core.item i ON i.record_id = m.record_id
LEFT JOIN catalog.access_rule al ON al.library_code = m.library_code AND al.scope = 'library'
LEFT JOIN catalog.access_rule ac ON ac.library_code = m.library_code AND ac.scope = 'collection'
                                AND ac.value = i.collection
LEFT JOIN catalog.access_rule ai ON ai.library_code = m.library_code AND ai.scope = 'item'
                                AND ai.value = i.accession_number;

COMMENT ON VIEW marts.holdings IS
  'Every copy of every library in each union-catalogue cluster: library, call number, accession number (ĐKCB), access level (item, else collection, else library rule of the registry) and availability where known.';
COMMENT ON COLUMN marts.holdings.availability IS 'unavailable when the library marks the copy lost, withdrawn or damaged; NULL = not known (no circulation data).';

CREATE OR REPLACE VIEW marts.clusters_per_group AS
SELECT g.group_code, g.name AS group_name, g.lead_library,
       count(DISTINCT m.cluster_id) AS clusters,
       count(DISTINCT m.record_id) AS records,
       count(DISTINCT m.cluster_id) FILTER (WHERE shared.libraries >= 2) AS shared_clusters
FROM core.library_group g
JOIN core.group_membership gm ON gm.group_code = g.group_code
     AND gm.valid_from <= current_date AND (gm.valid_to IS NULL OR current_date <= gm.valid_to)
JOIN catalog.cluster_member m ON m.library_code = gm.library_code
JOIN LATERAL (SELECT count(DISTINCT m2.library_code) AS libraries
              FROM catalog.cluster_member m2
              JOIN core.group_membership gm2 ON gm2.library_code = m2.library_code AND gm2.group_code = g.group_code
                   AND gm2.valid_from <= current_date AND (gm2.valid_to IS NULL OR current_date <= gm2.valid_to)
              WHERE m2.cluster_id = m.cluster_id) shared ON true
GROUP BY g.group_code, g.name, g.lead_library;

COMMENT ON VIEW marts.clusters_per_group IS
  'Per linking group: clusters (manifestations) its current members hold, their records, and clusters held by two or more members of the group (the shared part of the group''s union catalogue).';
