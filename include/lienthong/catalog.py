"""The union catalogue (mục lục liên hợp, §III.4): records of every library matched into clusters, one per
manifestation, with holdings, access levels, search and a MARC export for copy cataloguing.

A build has two phases, both safe to re-run:

* **match** (incremental, one transaction): match keys of new record versions are computed in Python
  (Vietnamese-aware, :mod:`lienthong.matchkeys`) once per distinct content (the same edition written the same way
  recurs across libraries), by forked worker processes on every core for large builds, and COPYed into
  ``catalog.record_key``/``record_block`` with their representative flag set at insert. Records with identical
  keys are linked to their representative without comparison; PostgreSQL joins the blocks to stream candidate
  pairs that involve a new representative (a temporary table, never all pairs and never a rewrite of the keys);
  each pair is compared and the accepted ones are stored in ``catalog.link`` with their evidence. Keys and links
  of closed versions go with them (ON DELETE CASCADE), unchanged records are never compared again. A bulk build
  checks the foreign keys of blocks and links once at its end instead of row by row.
* **cluster** (set-based over the stored links): links are applied strongest first, by a union-find over record
  positions, under constraints that forbid a cluster to mix volumes, edition years, ISBNs, authors or access
  levels, or records a steward split; a record without ISBN or year joins only a cluster it alone points to.
  Steward merges come first. Cluster ids are inherited from the previous build by member overlap, so they stay
  stable while members stay; only clusters and members that changed are rewritten.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import time
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from itertools import islice

import sqlalchemy as sa

from lienthong import matchkeys
from lienthong.matchkeys import RecordKeys

#: A fuzzy block larger than this is not expanded into pairs (a title like "Toán 1" held by every school);
#: such records still meet through their ISBN and author blocks.
MAX_BLOCK = 400
_BATCH = 5000
#: Memory for the build's big sorts and hashes (a million keys, blocks and links), per transaction.
_WORK_MEM = "256MB"
_BULK_WORK_MEM = "1GB"

ACCESS_LABELS_VI = {
    "metadata_only": "Chỉ tra cứu và xem dữ liệu",
    "read_on_site": "Được đọc trực tiếp",
    "defined_use": "Được tải về / khai thác theo quy định",
    "paid_service": "Phải trả giá dịch vụ",
}
# Most restrictive first: a cluster shows the most restrictive level of its records.
_ACCESS_ORDER = ("metadata_only", "paid_service", "read_on_site", "defined_use")
_RULE_PRIORITY = {"steward_merge": 0, "same_keys": 1, "isbn": 1, "title_author": 2, "title_publisher_year": 3}


class CatalogError(ValueError):
    """A request the catalogue cannot answer (unknown record, bad reference); the message is for stewards."""


# ------------------------------------------------------------------------------------------ helpers
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(v) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, (list, tuple)):
        return "{" + ",".join('"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"' for x in v) + "}"
    text = str(v)
    return text.translate(_ESCAPES) if "\\" in text or "\t" in text or "\n" in text or "\r" in text else text


def _copy_text(rows: list[tuple]) -> str:
    """Rows in COPY text format (also built in worker processes)."""
    return "".join(["\t".join([_copy_value(v) for v in row]) + "\n" for row in rows])


def _copy(raw, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    if not rows:
        return
    with raw.cursor() as cursor:
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(_copy_text(rows)))


@contextmanager
def _step(steps: dict, name: str):
    """Adds the seconds a step of the build took to ``steps`` (reported in the build's stats)."""
    started = time.monotonic()
    try:
        yield
    finally:
        steps[name] = steps.get(name, 0.0) + time.monotonic() - started


def parse_reference(reference: str) -> tuple[str, str]:
    """"LIBRARY:LOCAL_ID" → (library, local id); the local id may itself contain colons."""
    library, sep, local_id = reference.partition(":")
    if not sep or not library.strip() or not local_id.strip():
        raise CatalogError(f"{reference!r}: viết mã thư viện và số 001 của biểu ghi, dạng THU-VIEN:SO-001 "
                           f"(expected LIBRARY:LOCAL_ID)")
    return library.strip(), local_id.strip()


def _registry():
    from lienthong.registry import load_registry

    return load_registry()


# ------------------------------------------------------------------------------------------ access rules
def refresh_access_rules(conn: sa.Connection, registry=None) -> int:
    """Replace catalog.access_rule with the registry's levels (library, collection, item)."""
    registry = registry or _registry()
    known = set(conn.execute(sa.text("SELECT library_code FROM core.library")).scalars())
    rows = []
    for lib in registry.libraries.values():
        if lib.code not in known:
            continue
        rows.append({"l": lib.code, "s": "library", "v": "", "a": lib.access.level})
        rows += [{"l": lib.code, "s": "collection", "v": k, "a": v} for k, v in lib.access.collections.items()]
        rows += [{"l": lib.code, "s": "item", "v": k, "a": v} for k, v in lib.access.items.items()]
    conn.execute(sa.text("DELETE FROM catalog.access_rule"))
    if rows:
        conn.execute(sa.text("INSERT INTO catalog.access_rule VALUES (:l, :s, :v, :a)"), rows)
    return len(rows)


# ------------------------------------------------------------------------------------------ match phase
_KEY_COLUMNS = ("record_id", "library_code", "local_id", "keys_version", "title_key", "volume", "author_key",
                "publisher_key", "year", "isbn13s", "title_numbers", "search_folded", "search_exact", "title_words",
                "signature")
# New record versions grouped by the content their keys come from: the same edition written the same way
# recurs across libraries, and its keys are computed once.
_NEW_CONTENTS = """
SELECT r.title, r.author, r.publisher, r.pub_year, r.isbns, r.keywords, r.subjects,
       array_agg(r.record_id), array_agg(r.library_code), array_agg(r.local_id)
FROM core.record r
WHERE r.valid_to IS NULL
  AND NOT EXISTS (SELECT 1 FROM catalog.record_key k WHERE k.record_id = r.record_id)
GROUP BY r.title, r.author, r.publisher, r.pub_year, r.isbns, r.keywords, r.subjects
"""
#: Records whose keys are computed in this process before worker processes are started: below that, forking
#: costs more.
PARALLEL_MIN_RECORDS = 2 * _BATCH
_IN_FLIGHT_PER_WORKER = 3


def _derived(title, author, publisher, pub_year, isbns, keywords, subjects) -> tuple[str, list[str], bool]:
    """(the COPY text of a key row from keys_version to title_words, the blocks escaped for COPY, whether the
    signature belongs to the record alone): all that does not depend on which record holds the content."""
    keys = matchkeys.record_keys(title, author, publisher, pub_year, isbns)
    exact = matchkeys.vn(" ".join((title or "", author or "", publisher or "", pub_year or "",
                                   " ".join(keywords or ()), " ".join(subjects or ()), " ".join(isbns or ()))))
    own_signature = not keys.title
    columns = [matchkeys.KEYS_VERSION, keys.title, keys.volume, keys.author, keys.publisher, keys.year, keys.isbns,
               keys.numbers, matchkeys.unmark(exact), exact, sorted(set(matchkeys.fold(title).split()))]
    if not own_signature:
        columns.append(matchkeys.signature(keys, 0))
    return ("\t".join([_copy_value(v) for v in columns]), [_copy_value(b) for b in matchkeys.block_keys(keys)],
            own_signature)


def _key_rows(groups: list[tuple]) -> tuple[str, str, int]:
    """Match keys and blocks of the records of a chunk of contents as COPY text, and the number of records;
    runs in a worker process on large builds."""
    key_lines, block_lines = [], []
    for *content, record_ids, library_codes, local_ids in groups:
        columns, blocks, own_signature = _derived(*content)
        for record_id, library_code, local_id in zip(record_ids, library_codes, local_ids):
            signature = f"\tr:{record_id}" if own_signature else ""
            key_lines.append(
                f"{record_id}\t{_copy_value(library_code)}\t{_copy_value(local_id)}\t{columns}{signature}\n")
            block_lines += [f"{block}\t{record_id}\n" for block in blocks]
    return "".join(key_lines), "".join(block_lines), len(key_lines)


def _worker_count() -> int:
    """As for ingest (LIENTHONG_INGEST_WORKERS or the cores); one inside a daemonic process, which may not fork."""
    from lienthong.workers import ingest_workers

    return 1 if multiprocessing.current_process().daemon else ingest_workers()


def _chunks(reader) -> Iterator[list[tuple]]:
    """Contents holding about ``_BATCH`` records in all. A content held by more records (one edition in many
    libraries) is split: chunked by content alone, a province whose libraries share their editions came as one
    chunk, every key line of it in memory at once (1.2 GB at 837,000 records)."""
    chunk: list[tuple] = []
    records = 0
    while rows := reader.fetchmany(_BATCH):
        for *content, record_ids, library_codes, local_ids in rows:
            start = 0
            while start < len(record_ids):
                end = start + _BATCH - records
                chunk.append((*content, record_ids[start:end], library_codes[start:end], local_ids[start:end]))
                records += len(chunk[-1][-1])
                start = end
                if records >= _BATCH:
                    yield chunk
                    chunk, records = [], 0
    if chunk:
        yield chunk


def _computed(chunks: Iterator[list[tuple]], used: dict) -> Iterator[tuple[str, str, int]]:
    """(keys, blocks, records) per chunk: the first chunks here, the rest on every core (forked workers that
    only compute and never touch the inherited warehouse connection); ``used["key_workers"]`` says how many."""
    workers = _worker_count()
    used["key_workers"] = 0
    for n, rows in enumerate(chunks, 1):
        yield _key_rows(rows)
        if workers > 1 and n * _BATCH >= PARALLEL_MIN_RECORDS:
            break
    else:
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    used["key_workers"] = workers
    in_flight: deque = deque()
    try:
        for rows in chunks:
            in_flight.append(pool.submit(_key_rows, rows))
            if len(in_flight) >= workers * _IN_FLIGHT_PER_WORKER:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _compute_keys(raw, steps: dict) -> dict:
    """Drop keys of closed or outdated record versions; compute keys of current versions that have none, into
    catalog.record_key with their representative flag set once (no later rewrite of the table). Leaves the
    temporary tables tmp_key (the new keys) and tmp_fix (signatures whose representative may have changed)."""
    with _step(steps, "keys_remove"), raw.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE tmp_fix (signature text) ON COMMIT DROP")
        cursor.execute(
            """WITH gone AS (
                   DELETE FROM catalog.record_key k
                   WHERE k.keys_version <> %s
                      OR NOT EXISTS (SELECT 1 FROM core.record r
                                     WHERE r.record_id = k.record_id AND r.valid_to IS NULL)
                   RETURNING k.signature)
               INSERT INTO tmp_fix SELECT signature FROM gone""", (matchkeys.KEYS_VERSION,))
        removed = cursor.rowcount
        cursor.execute(f"CREATE TEMP TABLE tmp_key ON COMMIT DROP AS SELECT {', '.join(_KEY_COLUMNS)} "
                       f"FROM catalog.record_key WITH NO DATA")
        cursor.execute("CREATE TEMP TABLE tmp_block (block text, record_id bigint) ON COMMIT DROP")
    added = 0
    used: dict = {}
    with _step(steps, "keys_compute"):
        reader = raw.cursor(name="catalog_new_records")
        reader.execute(_NEW_CONTENTS)
        with raw.cursor() as cursor:
            for keys_text, blocks_text, count in _computed(_chunks(reader), used):
                cursor.copy_expert(f"COPY tmp_key ({', '.join(_KEY_COLUMNS)}) FROM STDIN", io.StringIO(keys_text))
                cursor.copy_expert("COPY tmp_block (block, record_id) FROM STDIN", io.StringIO(blocks_text))
                added += count
        reader.close()
    with _step(steps, "keys_insert"), raw.cursor() as cursor:
        bulk = added >= BULK_MIN_RECORDS and _owns(cursor, ("catalog.record_key", "catalog.record_block",
                                                             "catalog.link"))
        if bulk:
            _drop_foreign_keys(cursor)
        cursor.execute("ANALYZE tmp_key")
        # Signatures that older records share: their representative is settled below, not at insert.
        cursor.execute(
            """INSERT INTO tmp_fix SELECT DISTINCT t.signature FROM tmp_key t
               WHERE EXISTS (SELECT 1 FROM catalog.record_key e WHERE e.signature = t.signature)""")
        # Sorted in memory (a million keys are about 500 MB), inserted in primary key order.
        cursor.execute(f"SET LOCAL work_mem = '{_BULK_WORK_MEM}'")
        cursor.execute(
            f"""INSERT INTO catalog.record_key ({', '.join(_KEY_COLUMNS)}, is_rep, pending)
                SELECT {', '.join('t.' + c for c in _KEY_COLUMNS)},
                       t.record_id = min(t.record_id) OVER (PARTITION BY t.signature), false
                FROM tmp_key t ORDER BY t.record_id""")
        cursor.execute(f"SET LOCAL work_mem = '{_WORK_MEM}'")
    with _step(steps, "blocks_insert"), raw.cursor() as cursor:
        cursor.execute("INSERT INTO catalog.record_block (block, record_id) SELECT block, record_id FROM tmp_block "
                       "ORDER BY block, record_id")
        cursor.execute("DROP TABLE tmp_block")
    return {"keys_removed": removed, "keys_added": added, **used, "bulk_keys": bulk}


#: From this many new keys, the foreign keys of blocks and links are dropped for the build's transaction and
#: validated once at its end (one join instead of a check per row: "Populating a Database" in PostgreSQL's
#: manual). Readers of blocks and links wait for the build meanwhile.
BULK_MIN_RECORDS = 50_000
_FOREIGN_KEYS = (("record_block", "record_block_record_id_fkey", "record_id"),
                 ("link", "link_record_a_fkey", "record_a"), ("link", "link_record_b_fkey", "record_b"))


def _owns(cursor, tables: tuple[str, ...]) -> bool:
    """Whether this login may alter the tables (their owner's member): a DAG's pipeline login may not, and then
    rows are checked one by one as usual."""
    cursor.execute("SELECT bool_and(pg_has_role(current_user, c.relowner, 'USAGE')) FROM pg_class c "
                   "WHERE c.oid = ANY(CAST(%s AS regclass[]))", (list(tables),))
    return bool(cursor.fetchone()[0])


def _drop_foreign_keys(cursor) -> None:
    for table, name, _ in _FOREIGN_KEYS:
        cursor.execute(f"ALTER TABLE catalog.{table} DROP CONSTRAINT {name}")


def _restore_foreign_keys(cursor) -> None:
    cursor.execute("SELECT conname FROM pg_constraint "
                   "WHERE conname = ANY(%s) AND connamespace = CAST('catalog' AS regnamespace)",
                   ([name for _, name, _ in _FOREIGN_KEYS],))
    present = {name for (name,) in cursor.fetchall()}
    for table, name, column in _FOREIGN_KEYS:
        if name not in present:
            cursor.execute(f"ALTER TABLE catalog.{table} ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
                           f"REFERENCES catalog.record_key (record_id) ON DELETE CASCADE")


_FIX_REPRESENTATIVES = """
WITH fix AS (SELECT DISTINCT signature FROM tmp_fix),
rep AS (SELECT k.signature, min(k.record_id) AS record_id
        FROM catalog.record_key k JOIN fix ON fix.signature = k.signature GROUP BY k.signature)
UPDATE catalog.record_key k SET is_rep = (k.record_id = rep.record_id)
FROM rep
WHERE rep.signature = k.signature AND k.is_rep IS DISTINCT FROM (k.record_id = rep.record_id)
RETURNING k.record_id, k.is_rep
"""

# Identical keys: linked to their representative without a comparison, with the evidence of identity. Only
# new records and the records of a signature whose representative changed need a link.
_SAME_KEYS = """
WITH target AS (
    SELECT record_id FROM tmp_key
    UNION
    SELECT k.record_id FROM catalog.record_key k WHERE k.signature IN (SELECT signature FROM tmp_fix)
)
INSERT INTO catalog.link (record_a, record_b, rule, score, scores)
SELECT r.record_id, k.record_id, 'same_keys', 100,
       jsonb_build_object('title', 100.0, 'author', CASE WHEN k.author_key <> '' THEN 100.0 END,
                          'publisher', CASE WHEN k.publisher_key <> '' THEN 100.0 END,
                          'year', CASE WHEN k.year <> '' THEN 100.0 END, 'isbn', k.isbn13s[1])
FROM target
JOIN catalog.record_key k ON k.record_id = target.record_id AND NOT k.is_rep
JOIN catalog.record_key r ON r.signature = k.signature AND r.is_rep
ORDER BY r.record_id, k.record_id
ON CONFLICT DO NOTHING
"""

# Pairs sharing a block with a pending representative (compared for the first time), never all pairs.
_CANDIDATES = """
WITH touched AS (
    SELECT DISTINCT x.block FROM tmp_pending p JOIN catalog.record_block x ON x.record_id = p.record_id
), small_block AS (
    SELECT b.block FROM catalog.record_block b JOIN touched t ON t.block = b.block
    GROUP BY b.block HAVING count(*) <= :max_block OR b.block LIKE 'i:%%'
), pair AS (
    SELECT DISTINCT LEAST(x.record_id, y.record_id) AS a, GREATEST(x.record_id, y.record_id) AS b
    FROM tmp_pending p
    JOIN catalog.record_block x ON x.record_id = p.record_id
    JOIN small_block s ON s.block = x.block
    JOIN catalog.record_block y ON y.block = x.block AND y.record_id <> x.record_id
    JOIN catalog.record_key q ON q.record_id = y.record_id AND q.is_rep
)
SELECT pair.a, pair.b,
       ka.title_key, ka.volume, ka.author_key, ka.publisher_key, ka.year, ka.isbn13s, ka.title_numbers,
       kb.title_key, kb.volume, kb.author_key, kb.publisher_key, kb.year, kb.isbn13s, kb.title_numbers
FROM pair
JOIN catalog.record_key ka ON ka.record_id = pair.a
JOIN catalog.record_key kb ON kb.record_id = pair.b
WHERE NOT EXISTS (SELECT 1 FROM catalog.link l WHERE l.record_a = pair.a AND l.record_b = pair.b)
"""


def _keys_from(values) -> RecordKeys:
    title, volume, author, publisher, year, isbns, numbers = values
    return RecordKeys(title, volume, author, publisher, year, tuple(isbns), tuple(numbers))


def _match_pending(raw, steps: dict) -> dict:
    """Link identical keys to their representative; compare every candidate pair of a pending representative
    (new, or representative since this run) and store the accepted links."""
    with _step(steps, "representatives"), raw.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE tmp_pending (record_id bigint PRIMARY KEY) ON COMMIT DROP")
        became: list[tuple] = []
        cursor.execute("SELECT 1 FROM tmp_fix LIMIT 1")
        if cursor.fetchone():
            cursor.execute(_FIX_REPRESENTATIVES)
            became = [(record_id,) for record_id, is_rep in cursor.fetchall() if is_rep]
        cursor.execute("INSERT INTO tmp_pending SELECT k.record_id FROM catalog.record_key k "
                       "WHERE k.is_rep AND k.record_id IN (SELECT record_id FROM tmp_key)")
        if became:
            cursor.executemany("INSERT INTO tmp_pending VALUES (%s) ON CONFLICT DO NOTHING", became)
        # Versions before the pending flag was retired.
        cursor.execute("INSERT INTO tmp_pending SELECT record_id FROM catalog.record_key WHERE pending AND is_rep "
                       "ON CONFLICT DO NOTHING")
    with _step(steps, "same_keys"), raw.cursor() as cursor:
        cursor.execute(_SAME_KEYS)
        same_keys = cursor.rowcount
    with _step(steps, "analyze"), raw.cursor() as cursor:
        # Fresh statistics: after a large load the planner otherwise takes the pending representatives for
        # a handful and rescans the block aggregate once per record (minutes instead of seconds).
        cursor.execute("SELECT count(*) FROM tmp_key")
        if cursor.fetchone()[0] >= _ANALYZE_MIN_RECORDS:
            cursor.execute("ANALYZE catalog.record_key")
            cursor.execute("ANALYZE catalog.record_block")
        cursor.execute("ANALYZE tmp_pending")
    compared = accepted = 0
    vetoes: Counter = Counter()
    with _step(steps, "compare"):
        reader = raw.cursor(name="catalog_candidates")
        reader.itersize = _BATCH
        reader.execute(_CANDIDATES.replace(":max_block", str(int(MAX_BLOCK))))
        links: list[tuple] = []
        for row in reader:
            a, b = row[0], row[1]
            result = matchkeys.compare(_keys_from(row[2:9]), _keys_from(row[9:16]))
            compared += 1
            if result.linked:
                accepted += 1
                links.append((a, b, result.rule, result.score, json.dumps(result.scores, ensure_ascii=False)))
                if len(links) >= _BATCH:
                    _copy(raw, "catalog.link", ("record_a", "record_b", "rule", "score", "scores"), links)
                    links.clear()
            else:
                vetoes[result.rule] += 1
        _copy(raw, "catalog.link", ("record_a", "record_b", "rule", "score", "scores"), links)
        reader.close()
    with raw.cursor() as cursor:
        cursor.execute("UPDATE catalog.record_key SET pending = false WHERE pending")
    return {"pairs_compared": compared, "links_added": accepted + same_keys, "same_keys_links": same_keys,
            "pairs_rejected": dict(sorted(vetoes.items()))}


#: New keys from which the big tables' statistics are refreshed before the candidate query.
_ANALYZE_MIN_RECORDS = 10_000


def match(engine: sa.Engine) -> dict:
    """Keys of new record versions, then comparisons of new representatives, in one transaction: a failed
    run leaves nothing half done, and the next run computes the same keys again."""
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7426005)"))
        refresh_access_rules(conn)
    steps: dict[str, float] = {}
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(7426005)")
            cursor.execute(f"SET LOCAL work_mem = '{_WORK_MEM}'")
        stats = _compute_keys(raw, steps)
        stats.update(_match_pending(raw, steps))
        with _step(steps, "foreign_keys"), raw.cursor() as cursor:
            _restore_foreign_keys(cursor)
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
    stats["match_seconds"] = round(time.monotonic() - started, 2)
    stats["match_steps"] = {k: round(v, 2) for k, v in steps.items()}
    return stats


# ------------------------------------------------------------------------------------------ cluster phase
class _Clusters:
    """Union-find over record positions (lists, not objects per record) whose roots carry the facts of their
    members, so a merge that would mix two manifestations is refused and reported instead of made."""

    def __init__(self, record_ids: array, years: list, volumes: list, isbns: list, authors: list, access: list,
                 weak: bytearray, splits: dict[int, set[int]]):
        n = len(record_ids)
        self.record_ids = record_ids
        self.years, self.volumes, self.isbns, self.authors, self.access = years, volumes, isbns, authors, access
        self.weak = weak
        self.parent = list(range(n))
        self.size = [1] * n
        self.strong = [0 if w else 1 for w in weak]  # members with ISBN or year and author
        self.facts: dict[int, tuple] = {}  # root of a merged cluster → sets of its members' facts
        self.splits = splits  # record → records it must never share a cluster with

    def index(self, record_id: int) -> int:
        return bisect_left(self.record_ids, record_id)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def _facts(self, root: int) -> tuple:
        facts = self.facts.get(root)
        if facts is None:
            year, author = self.years[root], self.authors[root]
            facts = ({year} if year else set(), {self.volumes[root]}, set(self.isbns[root]),
                     {author} if author else set(), {self.access[root]})
        return facts

    def conflict(self, ra: int, rb: int) -> str | None:
        if ra not in self.facts and rb not in self.facts:  # two single records: compare their facts directly
            ya, yb, aa, ab = self.years[ra], self.years[rb], self.authors[ra], self.authors[rb]
            ia, ib = self.isbns[ra], self.isbns[rb]
            if ya and yb and ya != yb:
                return "year_differs"
            if self.volumes[ra] != self.volumes[rb]:
                return "volume_differs"
            if ia and ib and not set(ia).intersection(ib):
                return "isbn_differs"
            if aa and ab and aa != ab:
                return "author_differs"
            if self.access[ra] != self.access[rb]:
                return "access_level_differs"
            return None
        fa, fb = self._facts(ra), self._facts(rb)
        if len(fa[0] | fb[0]) > 1:
            return "year_differs"
        if len(fa[1] | fb[1]) > 1:
            return "volume_differs"
        if fa[2] and fb[2] and not (fa[2] & fb[2]):
            return "isbn_differs"
        if len(fa[3] | fb[3]) > 1:
            return "author_differs"
        if len(fa[4] | fb[4]) > 1:
            return "access_level_differs"
        return None

    def split_conflict(self, ra: int, rb: int) -> bool:
        """A steward split a record of one cluster from a record of the other (splits are few)."""
        for record, others in self.splits.items():
            if self.find(record) == ra and any(self.find(other) == rb for other in others):
                return True
        return False

    def union(self, ra: int, rb: int) -> None:
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        fa, fb = self._facts(ra), self._facts(rb)
        for mine, theirs in zip(fa, fb):
            mine |= theirs
        self.facts[ra] = fa
        self.facts.pop(rb, None)
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        self.strong[ra] += self.strong[rb]


def _load_nodes(raw) -> _Clusters:
    """The facts a cluster must not mix, one list entry per record in record id order; equal values share
    one object, so a million records stay small."""
    record_ids = array("q")
    years, volumes, isbns, authors, access = [], [], [], [], []
    weak = bytearray()
    shared: dict = {}
    one = shared.setdefault
    reader = raw.cursor(name="catalog_nodes")
    reader.itersize = 20_000
    reader.execute(
        """SELECT k.record_id, k.year, k.volume, k.isbn13s, k.author_key, COALESCE(a.access_level, 'read_on_site')
           FROM catalog.record_key k
           LEFT JOIN catalog.access_rule a ON a.library_code = k.library_code AND a.scope = 'library'
           ORDER BY k.record_id""")
    for record_id, year, volume, isbn13s, author, level in reader:
        record_ids.append(record_id)
        years.append(one(year, year))
        volumes.append(one(volume, volume))
        numbers = tuple(isbn13s)
        isbns.append(one(numbers, numbers))
        authors.append(one(author, author))
        access.append(one(level, level))
        weak.append(matchkeys.is_weak(isbn13s, year, author))
    reader.close()
    return _Clusters(record_ids, years, volumes, isbns, authors, access, weak, {})


def _load_decisions(conn: sa.Connection) -> list:
    return conn.execute(sa.text(
        """SELECT d.decision_id, d.kind, ka.record_id AS a, kb.record_id AS b, d.reason
           FROM catalog.decision d
           JOIN catalog.record_key ka ON ka.library_code = d.library_a AND ka.local_id = d.local_id_a
           JOIN catalog.record_key kb ON kb.library_code = d.library_b AND kb.local_id = d.local_id_b
           WHERE d.revoked_at IS NULL
           ORDER BY d.decision_id""")).all()


def _copy_lines(raw, table: str, columns: tuple[str, ...], lines: Iterator[str]) -> None:
    """COPY ready-made text lines in slices, so a million rows never sit in one buffer."""
    with raw.cursor() as cursor:
        while True:
            text = "".join(islice(lines, 50_000))
            if not text:
                return
            cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(text))


def cluster(engine: sa.Engine) -> dict:
    """Apply the stored links and decisions; write clusters, members with evidence, link statuses."""
    started = time.monotonic()
    steps: dict[str, float] = {}
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7426005)"))
        conn.execute(sa.text(f"SET LOCAL work_mem = '{_WORK_MEM}'"))
        raw = conn.connection.dbapi_connection
        with _step(steps, "load"):
            uf = _load_nodes(raw)
            decisions = _load_decisions(conn)
        index, find, weak = uf.index, uf.find, uf.weak
        for d in decisions:
            if d.kind == "split":
                uf.splits.setdefault(index(d.a), set()).add(index(d.b))
                uf.splits.setdefault(index(d.b), set()).add(index(d.a))
        n = len(uf.record_ids)
        joined_rule: list[str | None] = [None] * n  # how each record first joined, and the record it joined
        joined_other = array("q", bytes(8 * n))
        steward_evidence: dict[int, dict] = {}
        conn.execute(sa.text(
            "CREATE TEMP TABLE tmp_status (record_a bigint, record_b bigint, status text, reason text) "
            "ON COMMIT DROP"))
        statuses: list[tuple] = []
        status_counts: Counter = Counter()

        def record_status(a: int, b: int, status: str, reason: str | None) -> None:
            statuses.append((a, b, status, reason))
            status_counts[status] += 1
            if len(statuses) >= 10 * _BATCH:
                _copy(raw, "tmp_status", ("record_a", "record_b", "status", "reason"), statuses)
                statuses.clear()

        def join(a: int, b: int, rule: str, force: bool = False) -> tuple[str, str | None]:
            ra, rb = find(a), find(b)
            if ra == rb:
                return "redundant", None
            if uf.splits and uf.split_conflict(ra, rb):
                return "conflict", "steward_split"
            reason = uf.conflict(ra, rb)
            if force and reason != "access_level_differs":  # a steward overrules all but the access policy
                reason = None
            if reason:
                return "conflict", reason
            uf.union(ra, rb)
            for record, other in ((a, b), (b, a)):
                if joined_rule[record] is None:
                    joined_rule[record] = rule
                    joined_other[record] = other
            return "joined", None

        with _step(steps, "union"):
            for d in decisions:
                if d.kind == "merge":
                    a, b = index(d.a), index(d.b)
                    free = [record for record in (a, b) if joined_rule[record] is None]
                    if join(a, b, "steward_merge", force=True)[0] == "joined":
                        for record in free:
                            steward_evidence[record] = {"decision_id": d.decision_id, "reason": d.reason}

            # Strongest first, streamed in PostgreSQL's order: links are never all held in memory.
            reader = raw.cursor(name="catalog_links")
            reader.itersize = 20_000
            priority = " ".join(f"WHEN '{rule}' THEN {rank}" for rule, rank in _RULE_PRIORITY.items())
            reader.execute(f"SELECT record_a, record_b, rule FROM catalog.link "
                           f"ORDER BY CASE rule {priority} ELSE 9 END, score DESC, record_a, record_b")
            deferred: dict[int, list] = defaultdict(list)
            for record_a, record_b, rule in reader:
                a, b = index(record_a), index(record_b)
                if weak[a] or weak[b]:
                    deferred[a if weak[a] else b].append((a, b, rule))
                    continue
                record_status(record_a, record_b, *join(a, b, rule))
            reader.close()
            # A record without ISBN or year joins only the one cluster its links point to.
            ids = uf.record_ids
            for weak_record, weak_links in sorted(deferred.items()):
                targets = {find(b if a == weak_record else a) for a, b, _ in weak_links}
                strong_targets = {t for t in targets if uf.strong[t]}
                if len(strong_targets) > 1:
                    for a, b, _ in weak_links:
                        record_status(ids[a], ids[b], "ambiguous", "no_year_or_isbn")
                    continue
                for a, b, rule in weak_links:
                    other = b if a == weak_record else a
                    if strong_targets and find(other) not in strong_targets:
                        record_status(ids[a], ids[b], "ambiguous", "no_year_or_isbn")
                        continue
                    record_status(ids[a], ids[b], *join(a, b, rule))
            _copy(raw, "tmp_status", ("record_a", "record_b", "status", "reason"), statuses)
            del deferred, statuses

        with _step(steps, "members"):
            # Each component is named by its oldest record until it gets its cluster id.
            component = array("q", bytes(8 * n))
            oldest: dict[int, int] = {}
            for i in range(n):
                root = find(i)
                component[i] = oldest.setdefault(root, ids[i])
            del oldest, uf

            def lines() -> Iterator[str]:
                for i in range(n):
                    rule = joined_rule[i]
                    if rule is None:
                        yield f"{ids[i]}\t{component[i]}\talone\t\\N\t\\N\n"
                        continue
                    evidence = steward_evidence.get(i)
                    evidence = _copy_text([(json.dumps(evidence, ensure_ascii=False),)])[:-1] if evidence else "\\N"
                    yield f"{ids[i]}\t{component[i]}\t{rule}\t{ids[joined_other[i]]}\t{evidence}\n"

            conn.execute(sa.text(
                "CREATE TEMP TABLE tmp_assign (record_id bigint, component bigint, rule text, linked_to bigint, "
                "evidence jsonb) ON COMMIT DROP"))
            _copy_lines(raw, "tmp_assign", ("record_id", "component", "rule", "linked_to", "evidence"), lines())
            del component, joined_rule, joined_other
            conn.execute(sa.text("ANALYZE tmp_assign"))
        with _step(steps, "stable_ids"):
            _stable_ids(conn, raw)
        with _step(steps, "evidence"):
            conn.execute(sa.text(_MEMBERS))
            conn.execute(sa.text("ANALYZE tmp_member"))
        with _step(steps, "clusters"):
            conn.execute(sa.text(_NEW_CLUSTERS))
            conn.execute(sa.text("ANALYZE tmp_cluster"))
        with _step(steps, "write"):
            written = _write_clusters(conn)
        with _step(steps, "link_status"):
            conn.execute(sa.text(
                """UPDATE catalog.link l SET status = t.status, status_reason = t.reason
                   FROM tmp_status t WHERE t.record_a = l.record_a AND t.record_b = l.record_b
                     AND (l.status, l.status_reason) IS DISTINCT FROM (t.status, t.reason)"""))
        counts = conn.execute(sa.text(
            """SELECT count(*), count(*) FILTER (WHERE members > 1), coalesce(max(members), 0)
               FROM catalog.cluster""")).one()
    return {"records": n, "clusters": counts[0], "shared_clusters": counts[1], "largest_cluster": counts[2],
            "links": dict(sorted(status_counts.items())), "decisions": len(decisions),
            **written, "cluster_seconds": round(time.monotonic() - started, 2),
            "cluster_steps": {k: round(v, 2) for k, v in steps.items()}}


# The member rows with their evidence: the link a record first joined by (its scores) and the record it joined.
_MEMBERS = """
CREATE TEMP TABLE tmp_member ON COMMIT DROP AS
SELECT a.record_id, k.library_code, k.local_id, c.cluster_id, a.rule,
       CASE WHEN a.linked_to IS NULL THEN CAST('{}' AS jsonb)
            WHEN a.evidence IS NOT NULL
                 THEN a.evidence || jsonb_build_object('linked_to', o.library_code || ':' || o.local_id)
            ELSE jsonb_build_object('score', l.score, 'scores', l.scores,
                                    'linked_to', o.library_code || ':' || o.local_id) END AS evidence
FROM tmp_assign a
JOIN tmp_component c ON c.component = a.component
JOIN catalog.record_key k ON k.record_id = a.record_id
LEFT JOIN catalog.record_key o ON o.record_id = a.linked_to
LEFT JOIN catalog.link l
       ON l.record_a = LEAST(a.record_id, a.linked_to) AND l.record_b = GREATEST(a.record_id, a.linked_to)
"""


def _stable_ids(conn: sa.Connection, raw) -> None:
    """Each component inherits the previous id it shares most members with (by library and 001); each old id
    goes to one component only; the others get new ids. Writes tmp_component (component → cluster id)."""
    offers = conn.execute(sa.text(
        """SELECT a.component, m.cluster_id
           FROM tmp_assign a
           JOIN catalog.record_key k ON k.record_id = a.record_id
           JOIN catalog.cluster_member m ON m.library_code = k.library_code AND m.local_id = k.local_id
           GROUP BY a.component, m.cluster_id
           ORDER BY count(*) DESC, m.cluster_id, a.component"""))
    ids: dict[int, int] = {}
    used: set[int] = set()
    for component, old_id in offers:
        if component not in ids and old_id not in used:
            ids[component] = old_id
            used.add(old_id)
    fresh = conn.execute(sa.text("SELECT DISTINCT component FROM tmp_assign ORDER BY 1")).scalars().all()
    fresh = [c for c in fresh if c not in ids]
    if fresh:
        conn.execute(sa.text("SELECT setval('catalog.cluster_id_seq', greatest("
                             "(SELECT coalesce(max(cluster_id), 1) FROM catalog.cluster_member), "
                             "(SELECT last_value FROM catalog.cluster_id_seq)))"))
        new_ids = conn.execute(sa.text("SELECT nextval('catalog.cluster_id_seq') FROM generate_series(1, :n)"),
                               {"n": len(fresh)}).scalars().all()
        ids.update(zip(fresh, new_ids))
    conn.execute(sa.text("CREATE TEMP TABLE tmp_component (component bigint PRIMARY KEY, cluster_id bigint) "
                         "ON COMMIT DROP"))
    _copy_lines(raw, "tmp_component", ("component", "cluster_id"),
                (f"{component}\t{cluster_id}\n" for component, cluster_id in ids.items()))
    conn.execute(sa.text("ANALYZE tmp_component"))


# Preferred record: complete in the seven mandatory elements, no warnings, most elements filled, decoded
# without repairs (the export carries no encoding level, leader/17), held by a group's lead library, oldest id.
_NEW_CLUSTERS = """
CREATE TEMP TABLE tmp_cluster ON COMMIT DROP AS
WITH ranked AS (
    SELECT DISTINCT ON (m.cluster_id) m.cluster_id, r.record_id
    FROM tmp_member m
    JOIN core.record r ON r.record_id = m.record_id
    ORDER BY m.cluster_id, r.is_complete DESC, r.has_warnings,
             ((r.title IS NOT NULL)::int + (r.author IS NOT NULL)::int + (r.publisher IS NOT NULL)::int
              + (r.pub_place IS NOT NULL)::int + (r.pub_year IS NOT NULL)::int + (cardinality(r.isbns) > 0)::int
              + (r.language IS NOT NULL)::int + (cardinality(r.keywords) > 0)::int
              + (cardinality(r.subjects) > 0)::int + (r.call_number IS NOT NULL)::int) DESC,
             cardinality(r.repairs),
             r.library_code = ANY (ARRAY(
                 SELECT g.lead_library FROM core.library_group g WHERE g.lead_library IS NOT NULL
                   AND g.valid_from <= current_date AND (g.valid_to IS NULL OR current_date <= g.valid_to))) DESC,
             r.record_id
), agg AS (
    SELECT m.cluster_id, count(*) AS members, count(DISTINCT m.library_code) AS libraries,
           (array_agg(COALESCE(a.access_level, 'read_on_site')
                      ORDER BY array_position(ARRAY['metadata_only', 'paid_service', 'read_on_site', 'defined_use'],
                                              COALESCE(a.access_level, 'read_on_site'))))[1] AS access_level,
           string_agg(DISTINCT k.search_folded, ' ') AS folded,
           string_agg(DISTINCT k.search_exact, ' ') AS exact
    FROM tmp_member m
    JOIN catalog.record_key k ON k.record_id = m.record_id
    LEFT JOIN catalog.access_rule a ON a.library_code = m.library_code AND a.scope = 'library'
    GROUP BY m.cluster_id
)
SELECT ranked.cluster_id, r.record_id AS preferred_record_id, agg.access_level,
       CAST(agg.members AS integer) AS members, CAST(agg.libraries AS integer) AS libraries,
       r.title, r.author, r.publisher, r.pub_year, k.volume, k.isbn13s,
       agg.folded AS search_folded, agg.exact AS search_exact, k.title_words,
       to_tsvector('simple', agg.folded) AS search_tsv, to_tsvector('simple', agg.exact) AS exact_tsv
FROM ranked
JOIN agg ON agg.cluster_id = ranked.cluster_id
JOIN core.record r ON r.record_id = ranked.record_id
JOIN catalog.record_key k ON k.record_id = ranked.record_id
"""


_CLUSTER_COLUMNS = ("cluster_id", "preferred_record_id", "access_level", "members", "libraries", "title", "author",
                    "publisher", "pub_year", "volume", "isbn13s", "search_folded", "search_exact", "title_words",
                    "search_tsv", "exact_tsv")
_MEMBER_COLUMNS = ("record_id", "library_code", "local_id", "cluster_id", "rule", "evidence")
#: From this many clusters or members to write (a first build, new match rules), the search indexes and the
#: members' foreign key are rebuilt once after writing instead of updated row by row; searches wait meanwhile.
BULK_MIN_ROWS = 50_000


def _same(alias: str, other: str, columns: tuple[str, ...]) -> str:
    return (f"ROW({', '.join(f'{alias}.{c}' for c in columns)}) IS NOT DISTINCT FROM "
            f"ROW({', '.join(f'{other}.{c}' for c in columns)})")


def _insert_missing(conn: sa.Connection, table: str, scratch: str, columns: Sequence[str], key: str) -> None:
    """Rows of the scratch table whose key the table lacks, in key order."""
    conn.execute(sa.text(
        f"""INSERT INTO {table} ({', '.join(columns)})
            SELECT {', '.join('t.' + c for c in columns)} FROM {scratch} t
            WHERE NOT EXISTS (SELECT 1 FROM {table} x WHERE x.{key} = t.{key})
            ORDER BY t.{key}"""))


def _write_clusters(conn: sa.Connection) -> dict:
    """Replace only the clusters and members that changed (a rebuild without changes writes nothing); the
    ones a member's cluster no longer has are deleted first (their members with them, then rewritten)."""
    deleted = conn.execute(sa.text(
        f"""DELETE FROM catalog.cluster c WHERE NOT EXISTS (
                SELECT 1 FROM tmp_cluster t
                WHERE t.cluster_id = c.cluster_id AND {_same('t', 'c', _CLUSTER_COLUMNS)})""")).rowcount
    conn.execute(sa.text(
        f"""DELETE FROM catalog.cluster_member m WHERE NOT EXISTS (
                SELECT 1 FROM tmp_member t WHERE t.record_id = m.record_id AND {_same('t', 'm', _MEMBER_COLUMNS)})"""))
    new_clusters = conn.execute(sa.text(
        "SELECT count(*) FROM tmp_cluster t WHERE NOT EXISTS "
        "(SELECT 1 FROM catalog.cluster c WHERE c.cluster_id = t.cluster_id)")).scalar_one()
    new_members = conn.execute(sa.text(
        "SELECT count(*) FROM tmp_member t WHERE NOT EXISTS "
        "(SELECT 1 FROM catalog.cluster_member m WHERE m.record_id = t.record_id)")).scalar_one()
    bulk = new_clusters >= BULK_MIN_ROWS or new_members >= BULK_MIN_ROWS
    if bulk:
        with conn.connection.dbapi_connection.cursor() as cursor:
            bulk = _owns(cursor, ("catalog.cluster", "catalog.cluster_member"))
    if bulk:
        conn.execute(sa.text(f"SET LOCAL maintenance_work_mem = '{_WORK_MEM}'"))
        conn.execute(sa.text("DROP INDEX catalog.cluster_search_idx, catalog.cluster_exact_idx"))
        conn.execute(sa.text("ALTER TABLE catalog.cluster_member DROP CONSTRAINT cluster_member_cluster_id_fkey"))
    _insert_missing(conn, "catalog.cluster", "tmp_cluster", _CLUSTER_COLUMNS, "cluster_id")
    _insert_missing(conn, "catalog.cluster_member", "tmp_member", _MEMBER_COLUMNS, "record_id")
    if bulk:
        conn.execute(sa.text("CREATE INDEX cluster_search_idx ON catalog.cluster USING gin (search_tsv)"))
        conn.execute(sa.text("CREATE INDEX cluster_exact_idx ON catalog.cluster USING gin (exact_tsv)"))
        conn.execute(sa.text(
            "ALTER TABLE catalog.cluster_member ADD CONSTRAINT cluster_member_cluster_id_fkey FOREIGN KEY "
            "(cluster_id) REFERENCES catalog.cluster (cluster_id) ON DELETE CASCADE"))
    return {"clusters_deleted": deleted, "clusters_written": new_clusters, "members_written": new_members,
            "bulk_clusters": bulk}


def build(engine: sa.Engine | None = None) -> dict:
    """Match new record versions, then re-cluster; what `lienthong catalog build` and the DAG run."""
    from lienthong import warehouse

    engine = engine or warehouse.engine()
    with engine.begin() as conn:
        run_id = conn.execute(sa.text("INSERT INTO catalog.build_run DEFAULT VALUES RETURNING run_id")).scalar_one()
    stats = {"run_id": run_id, **match(engine), **cluster(engine)}
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE catalog.build_run SET finished_at = now(), stats = CAST(:s AS jsonb) "
                             "WHERE run_id = :r"), {"s": json.dumps(stats), "r": run_id})
    return stats


# ------------------------------------------------------------------------------------------ decisions
def _current_record(conn: sa.Connection, reference: str) -> tuple[str, str]:
    library, local_id = parse_reference(reference)
    found = conn.execute(sa.text(
        "SELECT 1 FROM core.record WHERE library_code = :l AND local_id = :i AND valid_to IS NULL"),
        {"l": library, "i": local_id}).first()
    if not found:
        raise CatalogError(f"{reference}: không có biểu ghi hiện hành nào của thư viện {library} với số 001 "
                           f"{local_id!r} (no current record)")
    return library, local_id


def decide(engine: sa.Engine, kind: str, a: str, b: str, reason: str, decided_by: str | None = None) -> dict:
    """Record a steward's merge or split of two records and re-cluster (no new comparisons needed)."""
    if kind not in ("merge", "split"):
        raise CatalogError(f"unknown decision {kind!r}: merge or split")
    if not reason or not reason.strip():
        raise CatalogError("hãy ghi lý do của quyết định (--reason is required)")
    with engine.begin() as conn:
        lib_a, id_a = _current_record(conn, a)
        lib_b, id_b = _current_record(conn, b)
        if (lib_a, id_a) == (lib_b, id_b):
            raise CatalogError(f"{a}: hai biểu ghi phải khác nhau (the two records must differ)")
        # A new decision about the same pair replaces the earlier one, in either direction.
        conn.execute(sa.text(
            """UPDATE catalog.decision SET revoked_at = now()
               WHERE revoked_at IS NULL AND ((library_a, local_id_a, library_b, local_id_b) = (:la, :ia, :lb, :ib)
                     OR (library_a, local_id_a, library_b, local_id_b) = (:lb, :ib, :la, :ia))"""),
            {"la": lib_a, "ia": id_a, "lb": lib_b, "ib": id_b})
        decision_id = conn.execute(sa.text(
            """INSERT INTO catalog.decision (kind, library_a, local_id_a, library_b, local_id_b, reason, decided_by)
               VALUES (:k, :la, :ia, :lb, :ib, :r, COALESCE(:by, current_user)) RETURNING decision_id"""),
            {"k": kind, "la": lib_a, "ia": id_a, "lb": lib_b, "ib": id_b, "r": reason.strip(),
             "by": decided_by}).scalar_one()
    stats = cluster(engine)
    with engine.connect() as conn:
        ids = {ref: conn.execute(sa.text(
            "SELECT cluster_id FROM catalog.cluster_member WHERE library_code = :l AND local_id = :i"),
            {"l": lib, "i": local}).scalar() for ref, (lib, local) in ((a, (lib_a, id_a)), (b, (lib_b, id_b)))}
    return {"decision_id": decision_id, "kind": kind, "a": a, "b": b, "reason": reason.strip(),
            "cluster_ids": ids, "clusters": stats["clusters"]}


# ------------------------------------------------------------------------------------------ explain
def explain(engine: sa.Engine, reference: str) -> dict:
    """Which cluster a record sits in and why: how it joined, its links with evidence, decisions about it."""
    library, local_id = parse_reference(reference)
    with engine.connect() as conn:
        member = conn.execute(sa.text(
            """SELECT m.record_id, m.cluster_id, m.rule, m.evidence, c.members, c.libraries, c.access_level,
                      c.title, c.preferred_record_id, p.library_code AS p_lib, p.local_id AS p_id,
                      k.title_key, k.volume, k.author_key, k.publisher_key, k.year, k.isbn13s
               FROM catalog.cluster_member m
               JOIN catalog.cluster c ON c.cluster_id = m.cluster_id
               JOIN catalog.cluster_member p ON p.record_id = c.preferred_record_id
               JOIN catalog.record_key k ON k.record_id = m.record_id
               WHERE m.library_code = :l AND m.local_id = :i"""), {"l": library, "i": local_id}).first()
        if member is None:
            exists = conn.execute(sa.text(
                "SELECT valid_to IS NULL FROM core.record WHERE library_code = :l AND local_id = :i "
                "ORDER BY record_id DESC LIMIT 1"), {"l": library, "i": local_id}).scalar()
            if exists is None:
                raise CatalogError(f"{reference}: thư viện {library} không có biểu ghi số 001 {local_id!r} "
                                   f"(no such record)")
            raise CatalogError(f"{reference}: biểu ghi chưa có trong mục lục liên hợp — hãy chạy "
                               f"'lienthong catalog build' (not in the union catalogue yet)")
        links = conn.execute(sa.text(
            """SELECT o.library_code, o.local_id, l.rule, l.score, l.scores, l.status, l.status_reason,
                      om.cluster_id AS other_cluster
               FROM catalog.link l
               JOIN catalog.record_key o ON o.record_id = CASE WHEN l.record_a = :r THEN l.record_b ELSE l.record_a END
               LEFT JOIN catalog.cluster_member om ON om.record_id = o.record_id
               WHERE l.record_a = :r OR l.record_b = :r
               ORDER BY l.score DESC, o.library_code, o.local_id"""), {"r": member.record_id}).all()
        decisions = conn.execute(sa.text(
            """SELECT decision_id, kind, library_a || ':' || local_id_a AS a, library_b || ':' || local_id_b AS b,
                      reason, decided_by, decided_at
               FROM catalog.decision
               WHERE revoked_at IS NULL
                 AND ((library_a = :l AND local_id_a = :i) OR (library_b = :l AND local_id_b = :i))
               ORDER BY decision_id"""), {"l": library, "i": local_id}).mappings().all()
    return {
        "record": f"{library}:{local_id}",
        "cluster_id": member.cluster_id,
        "rule": member.rule,
        "evidence": member.evidence,
        "keys": {"title": member.title_key, "volume": member.volume, "author": member.author_key,
                 "publisher": member.publisher_key, "year": member.year, "isbn13": list(member.isbn13s)},
        "cluster": {"title": member.title, "records": member.members, "libraries": member.libraries,
                    "access_level": member.access_level,
                    "preferred_record": f"{member.p_lib}:{member.p_id}"},
        "links": [{"other": f"{l.library_code}:{l.local_id}", "other_cluster_id": l.other_cluster, "rule": l.rule,
                   "score": float(l.score), "scores": l.scores, "status": l.status, "reason": l.status_reason}
                  for l in links],
        "decisions": [dict(d) for d in decisions],
        "message_vi": _explain_vi(member, links),
    }


_RULES_VI = {
    "same_keys": "trùng mọi khóa so khớp (nhan đề, tập, tác giả, nhà xuất bản, năm, ISBN)",
    "isbn": "trùng ISBN",
    "title_author": "trùng nhan đề và tác giả",
    "title_publisher_year": "trùng nhan đề, nhà xuất bản và năm xuất bản",
    "steward_merge": "cán bộ thư viện quyết định gộp",
    "alone": "không trùng với biểu ghi nào khác",
}


def _explain_vi(member, links) -> str:
    joined = sum(1 for l in links if l.status in ("joined", "redundant"))
    refused = [l for l in links if l.status in ("conflict", "ambiguous")]
    text = (f"Biểu ghi thuộc cụm {member.cluster_id} ({member.members} biểu ghi của {member.libraries} thư viện), "
            f"lý do: {_RULES_VI.get(member.rule, member.rule)}; {joined} liên kết trong cụm.")
    if refused:
        text += (f" {len(refused)} liên kết không được gộp (khác năm, tập, ISBN, tác giả, mức truy cập hoặc "
                 f"thiếu thông tin).")
    return text


# ------------------------------------------------------------------------------------------ holdings & search
def holdings(conn: sa.Connection, cluster_ids: list[int], *, group: str | None = None,
             library: str | None = None) -> dict[int, list[dict]]:
    rows = conn.execute(sa.text(
        """SELECT h.cluster_id, h.library_code, h.library_name, h.local_id, h.accession_number, h.call_number,
                  h.collection, h.location, h.status, h.availability, h.access_level
           FROM marts.holdings h
           WHERE h.cluster_id = ANY(:ids)
             AND (CAST(:library AS text) IS NULL OR h.library_code = :library)
             AND (CAST(:grp AS text) IS NULL OR h.library_code IN (
                  SELECT library_code FROM core.group_membership
                  WHERE group_code = :grp AND valid_from <= current_date
                    AND (valid_to IS NULL OR current_date <= valid_to)))
           ORDER BY h.cluster_id, h.library_code, h.accession_number NULLS LAST"""),
        {"ids": list(cluster_ids), "library": library, "grp": group}).mappings()
    out: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        out[row["cluster_id"]].append({k: v for k, v in row.items() if k != "cluster_id"})
    return out


_SEARCH = """
WITH q AS (SELECT plainto_tsquery('simple', :folded) AS folded, plainto_tsquery('simple', :exact) AS exact)
SELECT c.cluster_id, c.title, c.author, c.publisher, c.pub_year, c.volume, c.isbn13s, c.access_level,
       c.members, c.libraries,
       ts_rank(c.search_tsv, q.folded) + 2 * ts_rank(c.exact_tsv, q.exact)
       + CASE WHEN c.exact_tsv @@ q.exact THEN 1 ELSE 0 END
       + cardinality(ARRAY(SELECT unnest(c.title_words) INTERSECT SELECT unnest(CAST(:words AS text[]))))::float
         / greatest(cardinality(c.title_words), 1) AS rank
FROM catalog.cluster c, q
WHERE c.search_tsv @@ q.folded
  AND (CAST(:library AS text) IS NULL OR EXISTS (
       SELECT 1 FROM catalog.cluster_member m WHERE m.cluster_id = c.cluster_id AND m.library_code = :library))
  AND (CAST(:grp AS text) IS NULL OR EXISTS (
       SELECT 1 FROM catalog.cluster_member m JOIN core.group_membership gm ON gm.library_code = m.library_code
       WHERE m.cluster_id = c.cluster_id AND gm.group_code = :grp AND gm.valid_from <= current_date
         AND (gm.valid_to IS NULL OR current_date <= gm.valid_to)))
ORDER BY rank DESC, c.libraries DESC, c.cluster_id
LIMIT :limit
"""


def search(engine: sa.Engine, text: str, *, group: str | None = None, library: str | None = None,
           limit: int = 20, with_holdings: bool = True) -> list[dict]:
    """Clusters whose words contain every word of ``text``, with or without diacritics. Ranked by full-text
    rank, an exact-diacritic match ("Mà" before "Ma") and the share of the title the query covers ("Toán 10"
    before "Để học tốt Toán 10")."""
    folded = matchkeys.fold(text)
    if not folded:
        raise CatalogError("hãy nhập từ cần tìm (empty search)")
    exact = " ".join(matchkeys._words(matchkeys.vn(text)).split())
    with engine.connect() as conn:
        rows = conn.execute(sa.text(_SEARCH), {"folded": folded, "exact": exact, "library": library,
                                               "grp": group, "limit": limit,
                                               "words": sorted(set(folded.split()))}).mappings().all()
        results = [dict(r, isbn13s=list(r["isbn13s"]), rank=round(float(r["rank"]), 4)) for r in rows]
        if with_holdings and results:
            held = holdings(conn, [r["cluster_id"] for r in results], group=group, library=library)
            for r in results:
                r["holdings"] = held.get(r["cluster_id"], [])
    return results


# ------------------------------------------------------------------------------------------ export
def _cluster_ids(conn: sa.Connection, *, cluster_id: int | None, query: str | None, group: str | None,
                 engine: sa.Engine) -> list[int]:
    if cluster_id is not None:
        if conn.execute(sa.text("SELECT 1 FROM catalog.cluster WHERE cluster_id = :c"), {"c": cluster_id}).first():
            return [cluster_id]
        raise CatalogError(f"không có cụm {cluster_id} trong mục lục liên hợp (no such cluster)")
    if query is not None:
        return [r["cluster_id"] for r in search(engine, query, group=group, limit=1000, with_holdings=False)]
    if group is not None:
        if not conn.execute(sa.text("SELECT 1 FROM core.library_group WHERE group_code = :g"), {"g": group}).first():
            raise CatalogError(f"không có nhóm liên thông {group!r} (no such group)")
        return list(conn.execute(sa.text(
            """SELECT DISTINCT m.cluster_id FROM catalog.cluster_member m
               JOIN core.group_membership gm ON gm.library_code = m.library_code
               WHERE gm.group_code = :g AND gm.valid_from <= current_date
                 AND (gm.valid_to IS NULL OR current_date <= gm.valid_to)
               ORDER BY 1"""), {"g": group}).scalars())
    raise CatalogError("chọn --cluster, --query hoặc --group")


def _marc_record(cluster_row, record_row, held: list[dict]):
    from pymarc import Field, Indicators, Record, Subfield

    def field(tag, ind, pairs):
        subs = [Subfield(code=c, value=v) for c, v in pairs if v]
        return Field(tag=tag, indicators=Indicators(*ind), subfields=subs) if subs else None

    record = Record(leader="00000nam a2200000 a 4500", force_utf8=True)
    record.add_field(Field(tag="001", data=f"LT{cluster_row.cluster_id:09d}"))
    record.add_field(Field(tag="003", data="LIENTHONG"))
    year = record_row.pub_year if record_row.pub_year and len(record_row.pub_year) == 4 else "uuuu"
    language = (record_row.language or "vie")[:3].ljust(3)
    record.add_field(Field(tag="008", data=f"000000s{year}    vm            000 0 {language} d"))
    fields = [field("020", "  ", [("a", isbn)]) for isbn in record_row.isbns]
    fields.append(field("035", "  ", [("a", f"({record_row.library_code}){record_row.local_id}")]))
    fields.append(field("041", "0 ", [("a", record_row.language)]))
    if record_row.call_number:
        fields.append(field("082", "04", [("a", record_row.call_number)]))
    if record_row.author:
        fields.append(field("100", ("1" if "," in record_row.author else "0") + " ", [("a", record_row.author)]))
    fields.append(field("245", ("1" if record_row.author else "0") + "0",
                        [("a", record_row.title or "[Không nhan đề]")]))
    fields.append(field("264", " 1", [("a", record_row.pub_place), ("b", record_row.publisher),
                                      ("c", record_row.pub_year)]))
    fields.append(field("506", "  ", [("a", ACCESS_LABELS_VI[cluster_row.access_level]),
                                      ("f", cluster_row.access_level)]))
    fields += [field("650", " 7", [("a", s)]) for s in record_row.subjects]
    fields += [field("653", "  ", [("a", k)]) for k in record_row.keywords]
    if cluster_row.access_level != "metadata_only":
        for h in held:
            if h["access_level"] == "metadata_only":
                continue
            fields.append(field("952", "  ", [("a", h["library_code"]), ("b", h["library_code"]),
                                              ("8", h["collection"]), ("o", h["call_number"]),
                                              ("p", h["accession_number"]), ("z", h["access_level"])]))
    for f in fields:
        if f is not None:
            record.add_field(f)
    return record


def export(engine: sa.Engine, out, *, cluster_id: int | None = None, query: str | None = None,
           group: str | None = None, fmt: str = "marc21") -> dict:
    """Write the preferred record of each chosen cluster for copy cataloguing, with the holdings its access
    level allows (a metadata-only cluster exports its description only)."""
    from pathlib import Path

    from pymarc import MARCWriter, XMLWriter

    if fmt not in ("marc21", "marcxml"):
        raise CatalogError(f"unknown format {fmt!r}: marc21 or marcxml")
    with engine.connect() as conn:
        ids = _cluster_ids(conn, cluster_id=cluster_id, query=query, group=group, engine=engine)
        clusters = conn.execute(sa.text(
            """SELECT c.cluster_id, c.access_level, r.*
               FROM catalog.cluster c JOIN core.record r ON r.record_id = c.preferred_record_id
               WHERE c.cluster_id = ANY(:ids) ORDER BY c.cluster_id"""), {"ids": ids}).all()
        held = holdings(conn, ids, group=group)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = items = 0
    metadata_only = 0
    with open(path, "wb") as handle:
        writer = MARCWriter(handle) if fmt == "marc21" else XMLWriter(handle)
        for row in clusters:
            record = _marc_record(row, row, held.get(row.cluster_id, []))
            writer.write(record)
            written += 1
            items += len(record.get_fields("952"))
            metadata_only += row.access_level == "metadata_only"
        writer.close(close_fh=False)
    return {"file": str(path), "format": fmt, "records": written, "items": items,
            "metadata_only_records": metadata_only}
