-- lienthong warehouse, migration 005: circulation, inter-library loan (ILL), reader cards, collection rotation.
-- Times are the province's local time (Asia/Ho_Chi_Minh) as the libraries record them: timestamp without zone.
-- No column holds a name, phone, address, birth date or raw reader identifier: readers appear only as
-- patron_hash, an HMAC-SHA256 pseudonym made before the warehouse (docs/privacy.md).

CREATE SCHEMA IF NOT EXISTS circulation;

-- ---------------------------------------------------------------- batches: one run of one export of one kind
CREATE TABLE circulation.batch (
    batch_id          bigserial PRIMARY KEY,
    library_code      text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('loans', 'ill', 'cards', 'rotation')),
    delivery_id       bigint REFERENCES landing.delivery (delivery_id),
    sha256            char(64),
    file_name         text,
    layout            text,            -- 'vi' (Vietnamese headers) or 'koha' (Koha statistics columns)
    key_id            text,            -- which pseudonymisation key made the batch's patron_hash values
    status            text NOT NULL DEFAULT 'loading'
                      CHECK (status IN ('loading', 'applied', 'held', 'failed')),
    status_reason     text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    rows_read         integer NOT NULL DEFAULT 0,
    rows_loaded       integer NOT NULL DEFAULT 0,
    rows_quarantined  integer NOT NULL DEFAULT 0,
    rows_unreadable   integer NOT NULL DEFAULT 0,
    window_start      timestamp,       -- earliest and latest key date in the file: the span it replaces
    window_end        timestamp,
    dropped_columns   text[] NOT NULL DEFAULT '{}'  -- headers not kept (personal data or unknown), names only
);
CREATE INDEX circulation_batch_library_idx ON circulation.batch (library_code, kind, batch_id DESC);

CREATE TABLE circulation.row_failure (
    batch_id      bigint NOT NULL REFERENCES circulation.batch (batch_id) ON DELETE CASCADE,
    library_code  text NOT NULL,
    kind          text NOT NULL,
    row_number    integer NOT NULL,
    rule          text NOT NULL,
    field         text NOT NULL,
    value         text,
    severity      text NOT NULL CHECK (severity IN ('error', 'warning')),
    message_vi    text NOT NULL,
    fix_vi        text NOT NULL
);
CREATE INDEX circulation_row_failure_batch_idx ON circulation.row_failure (batch_id);

CREATE TABLE circulation.quarantine (
    batch_id      bigint NOT NULL REFERENCES circulation.batch (batch_id) ON DELETE CASCADE,
    library_code  text NOT NULL,
    kind          text NOT NULL,
    row_number    integer NOT NULL,
    reasons       text[] NOT NULL,
    row           jsonb NOT NULL,     -- the kept fields only, reader already pseudonymised
    PRIMARY KEY (batch_id, row_number)
);

CREATE TABLE circulation.unreadable (
    batch_id      bigint NOT NULL REFERENCES circulation.batch (batch_id) ON DELETE CASCADE,
    library_code  text NOT NULL,
    kind          text NOT NULL,
    row_number    integer NOT NULL,
    reason        text NOT NULL,
    PRIMARY KEY (batch_id, row_number)
);

-- A batch's loadable rows (already pseudonymised) before it is applied: one JSON object per target row.
CREATE UNLOGGED TABLE circulation.staged_row (
    staged_id     bigserial PRIMARY KEY,
    batch_id      bigint NOT NULL,
    data          jsonb NOT NULL
);
CREATE INDEX staged_row_batch_idx ON circulation.staged_row (batch_id);

-- ---------------------------------------------------------------- facts (one export's rows replace its window)
CREATE TABLE circulation.loan_event (
    library_code     text NOT NULL,                 -- where the event happened (the exporting library)
    owner_library    text NOT NULL,                 -- whose item it is (a rotated item belongs to its sender)
    event_type       text NOT NULL CHECK (event_type IN ('checkout', 'renewal', 'return')),
    event_at         timestamp NOT NULL,
    item_ref         text NOT NULL,                 -- ĐKCB or barcode (Koha itemnumber when that is all)
    patron_hash      char(64),
    patron_category  text,
    batch_id         bigint NOT NULL REFERENCES circulation.batch (batch_id),
    row_number       integer NOT NULL
);
CREATE INDEX loan_event_library_idx ON circulation.loan_event (library_code, event_at);

-- Loans derived from the events (checkout → renewals → return), rebuilt when a loans export is applied.
CREATE TABLE circulation.loan (
    loan_id          bigserial PRIMARY KEY,
    library_code     text NOT NULL,
    owner_library    text NOT NULL,
    item_ref         text NOT NULL,
    patron_hash      char(64),
    patron_category  text,
    checkout_at      timestamp NOT NULL,
    renewals         integer NOT NULL DEFAULT 0,
    last_renewal_at  timestamp,
    returned_at      timestamp,
    due_on           date,                          -- last checkout/renewal day + the owner's loan_days
    overdue          boolean NOT NULL DEFAULT false,
    over_limit       boolean NOT NULL DEFAULT false
);
CREATE INDEX loan_library_idx ON circulation.loan (library_code, checkout_at);
CREATE INDEX loan_patron_idx ON circulation.loan (patron_hash, owner_library);

CREATE TABLE circulation.ill_request (
    library_code       text NOT NULL,               -- the exporting library = the requesting library
    request_ref        text,
    requesting_library text NOT NULL,
    owning_library     text NOT NULL,
    item_ref           text,
    record_ref         text,
    patron_hash        char(64),
    patron_category    text,
    channel            text CHECK (channel IN ('home_library', 'at_owner', 'post', 'online')),
    requested_at       timestamp NOT NULL,
    approved_at        timestamp,
    shipped_at         timestamp,
    received_at        timestamp,
    returned_at        timestamp,
    closed_at          timestamp,                   -- cancelled or refused at
    outcome            text NOT NULL CHECK (outcome IN ('requested', 'approved', 'shipped', 'received',
                                                         'returned', 'cancelled', 'refused')),
    reason             text,                        -- why cancelled or refused
    access_level       text,
    access_forbidden   boolean NOT NULL DEFAULT false,
    overdue            boolean NOT NULL DEFAULT false,
    over_limit         boolean NOT NULL DEFAULT false,
    batch_id           bigint NOT NULL REFERENCES circulation.batch (batch_id),
    row_number         integer NOT NULL
);
CREATE INDEX ill_request_library_idx ON circulation.ill_request (library_code, requested_at);

CREATE TABLE circulation.reader_card (
    library_code     text NOT NULL,                 -- the issuing library
    card_hash        char(64) NOT NULL,             -- pseudonym of the card number (= the reader's patron_hash)
    patron_category  text NOT NULL CHECK (patron_category IN ('pupil', 'teacher', 'staff', 'other')),
    issued_on        date NOT NULL,
    expires_on       date,
    valid_at         text[] NOT NULL DEFAULT '{}',  -- library or group codes as written in the export
    valid_libraries  text[] NOT NULL DEFAULT '{}',  -- resolved to library codes (groups expanded)
    batch_id         bigint NOT NULL REFERENCES circulation.batch (batch_id),
    row_number       integer NOT NULL
);
CREATE INDEX reader_card_hash_idx ON circulation.reader_card (card_hash);

CREATE TABLE circulation.rotation_item (
    library_code   text NOT NULL,                   -- the exporting library = the sender
    rotation_ref   text NOT NULL,
    from_library   text NOT NULL,
    to_library     text NOT NULL,
    item_ref       text NOT NULL,
    sent_on        date NOT NULL,
    received_on    date,
    returned_on    date,
    batch_id       bigint NOT NULL REFERENCES circulation.batch (batch_id),
    row_number     integer NOT NULL
);
CREATE INDEX rotation_item_to_idx ON circulation.rotation_item (to_library, item_ref);

-- ---------------------------------------------------------------- policy (the owning library's rules, §III.3)
CREATE VIEW circulation.lending_policy AS
SELECT library_code,
       coalesce((lending_policy->>'loan_days')::int, 14) AS loan_days,
       coalesce((lending_policy->>'max_items')::int, 3)  AS max_items
FROM core.library;

-- Rebuild loans from events and recompute every policy flag. Called in the applying transaction, under a
-- lock, so two libraries applied at once do not interleave.
CREATE FUNCTION circulation.refresh_policy(p_library text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7426005);
    DELETE FROM circulation.loan WHERE library_code = p_library;
    INSERT INTO circulation.loan (library_code, owner_library, item_ref, patron_hash, patron_category,
                                  checkout_at, renewals, last_renewal_at, returned_at)
    SELECT library_code, owner_library, item_ref,
           max(patron_hash) FILTER (WHERE event_type = 'checkout'),
           max(patron_category) FILTER (WHERE event_type = 'checkout'),
           min(event_at) FILTER (WHERE event_type = 'checkout'),
           count(*) FILTER (WHERE event_type = 'renewal'),
           max(event_at) FILTER (WHERE event_type = 'renewal'),
           min(event_at) FILTER (WHERE event_type = 'return')
    FROM (
        SELECT e.*, sum((e.event_type = 'checkout')::int) OVER (
                   PARTITION BY e.library_code, e.owner_library, e.item_ref
                   ORDER BY e.event_at, CASE e.event_type WHEN 'return' THEN 0 WHEN 'checkout' THEN 1 ELSE 2 END,
                            e.batch_id, e.row_number) AS loan_seq
        FROM circulation.loan_event e WHERE e.library_code = p_library
    ) ev
    WHERE loan_seq > 0
    GROUP BY library_code, owner_library, item_ref, loan_seq
    ORDER BY 6, 3;

    -- Due day and overdue: open loans are judged at the library's last recorded event.
    UPDATE circulation.loan l
    SET due_on = (coalesce(l.last_renewal_at, l.checkout_at))::date + p.loan_days,
        overdue = (coalesce(l.returned_at, obs.observed_until))::date
                  > (coalesce(l.last_renewal_at, l.checkout_at))::date + p.loan_days,
        over_limit = false
    FROM circulation.lending_policy p,
         (SELECT max(event_at) AS observed_until FROM circulation.loan_event WHERE library_code = p_library) obs
    WHERE l.library_code = p_library AND p.library_code = l.owner_library;

    -- Over the limit: at checkout the reader already held max_items open loans of the same owner.
    UPDATE circulation.loan l SET over_limit = (
        SELECT count(*) >= p.max_items
        FROM circulation.loan b
        WHERE b.patron_hash = l.patron_hash AND b.owner_library = l.owner_library
          AND (b.checkout_at, b.loan_id) < (l.checkout_at, l.loan_id)
          AND (b.returned_at IS NULL OR b.returned_at > l.checkout_at))
    FROM circulation.lending_policy p
    WHERE p.library_code = l.owner_library AND l.patron_hash IS NOT NULL
      AND (l.library_code = p_library OR l.owner_library IN (
             SELECT DISTINCT owner_library FROM circulation.loan WHERE library_code = p_library));

    -- ILL: overdue after the owner's loan_days from receipt; over the limit of items held from one owner.
    UPDATE circulation.ill_request r
    SET overdue = r.received_at IS NOT NULL
                  AND (coalesce(r.returned_at, obs.observed_until))::date > r.received_at::date + p.loan_days,
        over_limit = r.received_at IS NOT NULL AND r.patron_hash IS NOT NULL AND (
            SELECT count(*) >= p.max_items FROM circulation.ill_request b
            WHERE b.patron_hash = r.patron_hash AND b.owning_library = r.owning_library
              AND b.received_at IS NOT NULL
              AND (b.received_at, b.batch_id, b.row_number) < (r.received_at, r.batch_id, r.row_number)
              AND (b.returned_at IS NULL OR b.returned_at > r.received_at))
    FROM circulation.lending_policy p,
         (SELECT max(greatest(requested_at, approved_at, shipped_at, received_at, returned_at, closed_at))
                 AS observed_until
          FROM circulation.ill_request WHERE library_code = p_library) obs
    WHERE r.library_code = p_library AND p.library_code = r.owning_library;
END $$;

-- ---------------------------------------------------------------- marts
CREATE VIEW marts.circulation_loans AS
SELECT l.library_code,
       date_trunc('month', l.checkout_at)::date         AS month,
       count(*)                                          AS loans,
       sum(l.renewals)                                   AS renewals,
       count(*) FILTER (WHERE l.returned_at IS NOT NULL) AS returned,
       count(*) FILTER (WHERE l.overdue)                 AS overdue,
       count(*) FILTER (WHERE l.over_limit)              AS over_limit,
       count(DISTINCT l.patron_hash)                     AS active_readers,
       count(*) FILTER (WHERE l.owner_library <> l.library_code) AS loans_of_rotated_items
FROM circulation.loan l
GROUP BY l.library_code, date_trunc('month', l.checkout_at);
COMMENT ON VIEW marts.circulation_loans IS
  'Loans per library and month of checkout: loans, renewals, returned, overdue and over-limit loans (owning library''s policy), distinct readers, loans of rotated items.';

CREATE VIEW marts.ill_requests AS
SELECT r.requesting_library, r.owning_library, r.channel,
       count(*)                                                     AS requests,
       count(*) FILTER (WHERE r.received_at IS NOT NULL)            AS filled,
       count(*) FILTER (WHERE r.outcome = 'refused')                AS refused,
       count(*) FILTER (WHERE r.outcome = 'cancelled')              AS cancelled,
       round(count(*) FILTER (WHERE r.received_at IS NOT NULL)::numeric / count(*), 4) AS fill_rate,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.received_at - r.requested_at) / 86400)
              FILTER (WHERE r.received_at IS NOT NULL))::numeric, 2) AS median_turnaround_days,
       count(*) FILTER (WHERE r.overdue)                            AS overdue,
       count(*) FILTER (WHERE r.over_limit)                         AS over_limit,
       count(*) FILTER (WHERE r.access_forbidden)                   AS access_forbidden
FROM circulation.ill_request r
GROUP BY r.requesting_library, r.owning_library, r.channel;
COMMENT ON VIEW marts.ill_requests IS
  'Inter-library loan requests per pair of libraries and delivery channel: requests, filled (received), refused, cancelled, fill rate, median turnaround requested → received in days, policy flags.';

CREATE VIEW marts.ill_by_channel AS
SELECT r.channel,
       count(*)                                                     AS requests,
       count(*) FILTER (WHERE r.received_at IS NOT NULL)            AS filled,
       round(count(*) FILTER (WHERE r.received_at IS NOT NULL)::numeric / count(*), 4) AS fill_rate,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.received_at - r.requested_at) / 86400)
              FILTER (WHERE r.received_at IS NOT NULL))::numeric, 2) AS median_turnaround_days
FROM circulation.ill_request r
GROUP BY r.channel;
COMMENT ON VIEW marts.ill_by_channel IS
  'Inter-library loan requests per delivery channel (home_library, at_owner, post, online): requests, filled, fill rate, median turnaround in days.';

CREATE VIEW marts.reader_cards AS
SELECT c.library_code AS issuing_library, c.patron_category,
       count(DISTINCT (c.batch_id, c.row_number))                      AS cards_issued,
       count(DISTINCT (c.batch_id, c.row_number)) FILTER (WHERE cardinality(c.valid_libraries) > 1)
                                                                       AS cards_valid_elsewhere,
       count(DISTINCT u.library_code)                                  AS libraries_used,
       count(DISTINCT c.card_hash) FILTER (WHERE u.library_code <> c.library_code) AS cards_used_elsewhere
FROM circulation.reader_card c
LEFT JOIN (SELECT DISTINCT library_code, patron_hash FROM circulation.loan) u ON u.patron_hash = c.card_hash
GROUP BY c.library_code, c.patron_category;
COMMENT ON VIEW marts.reader_cards IS
  'Reader cards per issuing library and category (pupil, teacher, staff, other): cards issued, cards valid beyond the issuer, libraries where the holders borrowed, cards used at another library.';

CREATE VIEW marts.card_use AS
SELECT c.library_code AS issuing_library, l.library_code AS using_library,
       count(DISTINCT c.card_hash) AS readers, count(l.loan_id) AS loans,
       bool_and(l.library_code = ANY (c.valid_libraries)) AS all_within_validity
FROM circulation.reader_card c
JOIN circulation.loan l ON l.patron_hash = c.card_hash
GROUP BY c.library_code, l.library_code;
COMMENT ON VIEW marts.card_use IS
  'Where the cards of each issuing library are used: readers and loans per using library, and whether every such loan was at a library where the card is valid.';

CREATE VIEW marts.rotation AS
SELECT r.from_library, r.to_library, r.rotation_ref,
       min(r.sent_on) AS sent_on, max(r.received_on) AS received_on, max(r.returned_on) AS returned_on,
       count(*) AS items_sent,
       count(*) FILTER (WHERE r.received_on IS NOT NULL) AS items_received,
       count(*) FILTER (WHERE r.returned_on IS NOT NULL) AS items_returned,
       coalesce(sum(lo.loans), 0) AS loans_at_receiver
FROM circulation.rotation_item r
LEFT JOIN LATERAL (
    SELECT count(*) AS loans FROM circulation.loan l
    WHERE l.library_code = r.to_library AND l.owner_library = r.from_library AND l.item_ref = r.item_ref
      AND r.received_on IS NOT NULL AND l.checkout_at::date >= r.received_on
      AND (r.returned_on IS NULL OR l.checkout_at::date <= r.returned_on)
) lo ON true
GROUP BY r.from_library, r.to_library, r.rotation_ref;
COMMENT ON VIEW marts.rotation IS
  'Collection rotation batches (luân chuyển): items sent, received and returned, and the loans of those items at the receiving library while it held them.';

CREATE VIEW marts.circulation_policy_flags AS
SELECT 'loan' AS kind, library_code, owner_library AS owning_library,
       count(*) FILTER (WHERE overdue) AS overdue, count(*) FILTER (WHERE over_limit) AS over_limit,
       0::bigint AS access_forbidden
FROM circulation.loan GROUP BY library_code, owner_library
UNION ALL
SELECT 'ill', library_code, owning_library,
       count(*) FILTER (WHERE overdue), count(*) FILTER (WHERE over_limit), count(*) FILTER (WHERE access_forbidden)
FROM circulation.ill_request GROUP BY library_code, owning_library;
COMMENT ON VIEW marts.circulation_policy_flags IS
  'Loans and ILL requests breaking the owning library''s lending policy (registry loan_days, max_items) or lent against the item''s access level, per library and owning library.';

CREATE VIEW marts.circulation_batches AS
SELECT b.library_code, b.kind, b.batch_id, b.status, b.status_reason, b.file_name, b.layout, b.rows_read,
       b.rows_loaded, b.rows_quarantined, b.rows_unreadable, b.window_start, b.window_end, b.finished_at
FROM circulation.batch b;
COMMENT ON VIEW marts.circulation_batches IS
  'Every circulation export run with its conservation counts (rows_read = rows_loaded + rows_quarantined + rows_unreadable).';

-- Period figures per registry library; helper reports (period_reports) call exactly this.
CREATE FUNCTION marts.circulation_summary(period_start date, period_end date)
RETURNS TABLE (library_code text, loans bigint, active_readers bigint, ill_requests bigint, ill_filled bigint,
               ill_median_turnaround_days numeric, cards_issued bigint, rotated_items bigint)
LANGUAGE sql STABLE AS $$
    SELECT lib.library_code,
           coalesce(lo.loans, 0), coalesce(lo.readers, 0),
           coalesce(ill.requests, 0), coalesce(ill.filled, 0), ill.median_days,
           coalesce(cards.issued, 0), coalesce(rot.items, 0)
    FROM core.library lib
    LEFT JOIN (SELECT l.library_code, count(*) AS loans, count(DISTINCT l.patron_hash) AS readers
               FROM circulation.loan l
               WHERE l.checkout_at >= period_start AND l.checkout_at < period_end + 1
               GROUP BY l.library_code) lo ON lo.library_code = lib.library_code
    LEFT JOIN (SELECT r.requesting_library, count(*) AS requests,
                      count(*) FILTER (WHERE r.received_at IS NOT NULL) AS filled,
                      round((percentile_cont(0.5) WITHIN GROUP (
                          ORDER BY extract(epoch FROM r.received_at - r.requested_at) / 86400)
                          FILTER (WHERE r.received_at IS NOT NULL))::numeric, 2) AS median_days
               FROM circulation.ill_request r
               WHERE r.requested_at >= period_start AND r.requested_at < period_end + 1
               GROUP BY r.requesting_library) ill ON ill.requesting_library = lib.library_code
    LEFT JOIN (SELECT c.library_code, count(*) AS issued FROM circulation.reader_card c
               WHERE c.issued_on BETWEEN period_start AND period_end
               GROUP BY c.library_code) cards ON cards.library_code = lib.library_code
    LEFT JOIN (SELECT r.to_library, count(*) AS items FROM circulation.rotation_item r
               WHERE r.received_on BETWEEN period_start AND period_end
               GROUP BY r.to_library) rot ON rot.to_library = lib.library_code
    ORDER BY lib.library_code
$$;
COMMENT ON FUNCTION marts.circulation_summary(date, date) IS
  'Per registry library for the days period_start..period_end (inclusive): loans (checkouts), active readers (distinct borrowers), ILL requests placed and filled (received), median ILL turnaround requested → received in days, reader cards issued, rotated items received.';
