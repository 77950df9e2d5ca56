"""The union catalogue (mục lục liên hợp, §III.4): records of every library matched into clusters, one per
manifestation, with holdings, access levels, search and a MARC export for copy cataloguing.

A build has two phases, both safe to re-run:

* **match** (incremental): match keys of new record versions are computed in Python (Vietnamese-aware,
  :mod:`lienthong.matchkeys`) and COPYed into ``catalog.record_key``/``record_block``; PostgreSQL joins the
  blocks to stream candidate pairs that involve a new record (never all pairs); each pair is compared and
  the accepted ones are stored in ``catalog.link`` with their evidence. Keys and links of closed versions go
  with them (ON DELETE CASCADE), unchanged records are never compared again.
* **cluster** (set-based over the stored links): links are applied strongest first under constraints that
  forbid a cluster to mix volumes, edition years, ISBNs, authors or access levels, or records a steward split;
  a record without ISBN or year joins only a cluster it alone points to. Steward merges come first. Cluster ids
  are inherited from the previous build by member overlap, so they stay stable while members stay.
"""
from __future__ import annotations

import io
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from types import SimpleNamespace

import sqlalchemy as sa

from lienthong import matchkeys
from lienthong.matchkeys import RecordKeys

#: A fuzzy block larger than this is not expanded into pairs (a title like "Toán 1" held by every school);
#: such records still meet through their ISBN and author blocks.
MAX_BLOCK = 400
_BATCH = 5000

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
def _copy(raw, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    if not rows:
        return
    escapes = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

    def value(v) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, bool):
            return "t" if v else "f"
        if isinstance(v, (list, tuple)):
            return "{" + ",".join('"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"' for x in v) + "}"
        text = str(v)
        return text.translate(escapes) if "\\" in text or "\t" in text or "\n" in text or "\r" in text else text

    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join([value(v) for v in row]) + "\n")
    buffer.seek(0)
    with raw.cursor() as cursor:
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)


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


def _search_words(row) -> list[str]:
    return [row.title or "", row.author or "", row.publisher or "", row.pub_year or "",
            " ".join(row.keywords or ()), " ".join(row.subjects or ()), " ".join(row.isbns or ())]


def compute_keys(engine: sa.Engine) -> dict:
    """Drop keys of closed or outdated record versions; compute keys of current versions that have none."""
    with engine.begin() as conn:
        removed = conn.execute(sa.text(
            """DELETE FROM catalog.record_key k
               WHERE k.keys_version <> :v
                  OR NOT EXISTS (SELECT 1 FROM core.record r WHERE r.record_id = k.record_id AND r.valid_to IS NULL)"""
        ), {"v": matchkeys.KEYS_VERSION}).rowcount
    added = 0
    raw = engine.raw_connection()
    try:
        reader = raw.cursor(name="catalog_new_records")
        reader.itersize = _BATCH
        reader.execute(
            """SELECT r.record_id, r.library_code, r.local_id, r.title, r.author, r.publisher, r.pub_year, r.isbns,
                      r.keywords, r.subjects
               FROM core.record r
               WHERE r.valid_to IS NULL
                 AND NOT EXISTS (SELECT 1 FROM catalog.record_key k WHERE k.record_id = r.record_id)
               ORDER BY r.record_id""")
        keys_rows: list[tuple] = []
        block_rows: list[tuple] = []

        def flush() -> None:
            _copy(raw, "catalog.record_key", _KEY_COLUMNS, keys_rows)
            _copy(raw, "catalog.record_block", ("block", "record_id"), block_rows)
            keys_rows.clear()
            block_rows.clear()

        columns = ("record_id", "library_code", "local_id", "title", "author", "publisher", "pub_year", "isbns",
                   "keywords", "subjects")
        for values in reader:
            row = SimpleNamespace(**dict(zip(columns, values)))
            keys = matchkeys.record_keys(row.title, row.author, row.publisher, row.pub_year, row.isbns)
            exact = matchkeys.vn(" ".join(_search_words(row)))
            keys_rows.append((row.record_id, row.library_code, row.local_id, matchkeys.KEYS_VERSION, keys.title,
                              keys.volume, keys.author, keys.publisher, keys.year, list(keys.isbns),
                              list(keys.numbers), matchkeys.unmark(exact), exact,
                              sorted(set(matchkeys.fold(row.title).split())),
                              matchkeys.signature(keys, row.record_id)))
            block_rows += [(block, row.record_id) for block in matchkeys.block_keys(keys)]
            added += 1
            if len(keys_rows) >= _BATCH:
                flush()
        flush()
        reader.close()
        raw.commit()
    finally:
        raw.close()
    return {"keys_removed": removed, "keys_added": added}


_CANDIDATES = """
WITH small_block AS (
    SELECT block FROM catalog.record_block GROUP BY block HAVING count(*) <= :max_block OR block LIKE 'i:%%'
), pair AS (
    SELECT DISTINCT LEAST(x.record_id, y.record_id) AS a, GREATEST(x.record_id, y.record_id) AS b
    FROM catalog.record_key p
    JOIN catalog.record_block x ON x.record_id = p.record_id
    JOIN small_block s ON s.block = x.block
    JOIN catalog.record_block y ON y.block = x.block AND y.record_id <> x.record_id
    JOIN catalog.record_key q ON q.record_id = y.record_id AND q.is_rep
    WHERE p.pending AND p.is_rep
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


_REPRESENTATIVES = """
WITH rep AS (SELECT signature, min(record_id) AS record_id FROM catalog.record_key GROUP BY signature)
UPDATE catalog.record_key k
SET is_rep = (k.record_id = rep.record_id), pending = k.pending OR k.record_id = rep.record_id
FROM rep
WHERE rep.signature = k.signature AND k.is_rep IS DISTINCT FROM (k.record_id = rep.record_id)
"""

# Identical keys: linked to their representative without a comparison, with the evidence of identity.
_SAME_KEYS = """
INSERT INTO catalog.link (record_a, record_b, rule, score, scores)
SELECT r.record_id, k.record_id, 'same_keys', 100,
       jsonb_build_object('title', 100.0, 'author', CASE WHEN k.author_key <> '' THEN 100.0 END,
                          'publisher', CASE WHEN k.publisher_key <> '' THEN 100.0 END,
                          'year', CASE WHEN k.year <> '' THEN 100.0 END, 'isbn', k.isbn13s[1])
FROM catalog.record_key k
JOIN catalog.record_key r ON r.signature = k.signature AND r.is_rep
WHERE NOT k.is_rep
ON CONFLICT DO NOTHING
"""


def match_pending(engine: sa.Engine) -> dict:
    """Compare every candidate pair involving a record not compared before; store the accepted links.

    Only the oldest record of each signature (identical keys) is compared; the others are linked to it."""
    compared = accepted = 0
    vetoes: Counter = Counter()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute(_REPRESENTATIVES)
            cursor.execute(_SAME_KEYS)
            same_keys = cursor.rowcount
            # Fresh statistics: after a large load the planner otherwise takes the pending representatives for
            # a handful and rescans the block aggregate once per record (minutes instead of seconds).
            cursor.execute("ANALYZE catalog.record_key")
            cursor.execute("ANALYZE catalog.record_block")
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
        raw.commit()
    finally:
        raw.close()
    return {"pairs_compared": compared, "links_added": accepted + same_keys, "same_keys_links": same_keys,
            "pairs_rejected": dict(sorted(vetoes.items()))}


def match(engine: sa.Engine) -> dict:
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7426005)"))
        refresh_access_rules(conn)
    stats = compute_keys(engine)
    stats.update(match_pending(engine))
    stats["match_seconds"] = round(time.monotonic() - started, 2)
    return stats


# ------------------------------------------------------------------------------------------ cluster phase
@dataclass(slots=True)
class _Node:
    """A record's facts that a cluster must not mix."""

    library_code: str
    local_id: str
    year: str
    volume: str
    isbns: frozenset
    author: str
    access: str
    weak: bool


class _Clusters:
    """Union-find whose roots carry the facts of their members, so a merge that would mix two manifestations
    is refused and reported instead of made."""

    def __init__(self, nodes: dict[int, _Node], splits: dict[int, set[int]]):
        self.parent: dict[int, int] = {}
        self.nodes = nodes
        self.facts: dict[int, tuple] = {}
        self.splits = splits  # record → records it must never share a cluster with
        self.members: dict[int, list[int]] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def _facts(self, root: int) -> tuple:
        if root not in self.facts:
            n = self.nodes[root]
            self.facts[root] = ({n.year} - {""}, {n.volume}, set(n.isbns), {n.author} - {""}, {n.access})
        return self.facts[root]

    def conflict(self, ra: int, rb: int) -> str | None:
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
        if not self.splits:
            return False
        small, large = sorted((ra, rb), key=lambda r: len(self.members.get(r, [r])))
        large_members = set(self.members.get(large, [large]))
        return any(self.splits.get(m, set()) & large_members for m in self.members.get(small, [small]))

    def union(self, ra: int, rb: int) -> None:
        fa, fb = self._facts(ra), self._facts(rb)
        if len(self.members.get(ra, [ra])) < len(self.members.get(rb, [rb])):
            ra, rb, fa, fb = rb, ra, fb, fa
        self.parent[rb] = ra
        for mine, theirs in zip(fa, fb):
            mine |= theirs
        self.facts.pop(rb, None)
        self.members.setdefault(ra, [ra]).extend(self.members.pop(rb, [rb]))


@dataclass(slots=True)
class _Link:
    record_a: int
    record_b: int
    rule: str
    score: float
    scores: dict


def _load_nodes(conn: sa.Connection) -> dict[int, _Node]:
    rows = conn.execute(sa.text(
        """SELECT k.record_id, k.library_code, k.local_id, k.year, k.volume, k.isbn13s, k.author_key,
                  COALESCE(a.access_level, 'read_on_site')
           FROM catalog.record_key k
           LEFT JOIN catalog.access_rule a ON a.library_code = k.library_code AND a.scope = 'library'"""))
    return {r[0]: _Node(r[1], r[2], r[3], r[4], frozenset(r[5]), r[6], r[7], matchkeys.is_weak(r[5], r[3], r[6]))
            for r in rows}


def _load_decisions(conn: sa.Connection) -> list:
    return conn.execute(sa.text(
        """SELECT d.decision_id, d.kind, ka.record_id AS a, kb.record_id AS b, d.reason
           FROM catalog.decision d
           JOIN catalog.record_key ka ON ka.library_code = d.library_a AND ka.local_id = d.local_id_a
           JOIN catalog.record_key kb ON kb.library_code = d.library_b AND kb.local_id = d.local_id_b
           WHERE d.revoked_at IS NULL
           ORDER BY d.decision_id""")).all()


def cluster(engine: sa.Engine) -> dict:
    """Apply the stored links and decisions; write clusters, members with evidence, link statuses."""
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7426005)"))
        nodes = _load_nodes(conn)
        decisions = _load_decisions(conn)
        splits: dict[int, set[int]] = defaultdict(set)
        for d in decisions:
            if d.kind == "split":
                splits[d.a].add(d.b)
                splits[d.b].add(d.a)
        uf = _Clusters(nodes, dict(splits))
        joined_by: dict[int, tuple[str, dict]] = {}
        raw = conn.connection.dbapi_connection
        conn.execute(sa.text(
            "CREATE TEMP TABLE tmp_status (record_a bigint, record_b bigint, status text, reason text) "
            "ON COMMIT DROP"))
        statuses: list[tuple] = []
        status_counts: Counter = Counter()

        def record_status(a: int, b: int, status: str, reason: str | None) -> None:
            statuses.append((a, b, status, reason))
            status_counts[status] += 1
            if len(statuses) >= _BATCH:
                _copy(raw, "tmp_status", ("record_a", "record_b", "status", "reason"), statuses)
                statuses.clear()

        def join(a: int, b: int, rule: str, evidence: dict, force: bool = False) -> tuple[str, str | None]:
            ra, rb = uf.find(a), uf.find(b)
            if ra == rb:
                return "redundant", None
            if uf.split_conflict(ra, rb):
                return "conflict", "steward_split"
            reason = uf.conflict(ra, rb)
            if force and reason != "access_level_differs":  # a steward overrules all but the access policy
                reason = None
            if reason:
                return "conflict", reason
            uf.union(ra, rb)
            for record, other in ((a, b), (b, a)):
                joined_by.setdefault(record, (rule, dict(evidence, linked_to=other)))
            return "joined", None

        for d in decisions:
            if d.kind == "merge":
                join(d.a, d.b, "steward_merge", {"decision_id": d.decision_id, "reason": d.reason}, force=True)

        # Strongest first, streamed in PostgreSQL's order: links are never all held in memory.
        reader = raw.cursor(name="catalog_links")
        reader.itersize = _BATCH
        priority = " ".join(f"WHEN '{rule}' THEN {rank}" for rule, rank in _RULE_PRIORITY.items())
        reader.execute(f"SELECT record_a, record_b, rule, score, scores FROM catalog.link "
                       f"ORDER BY CASE rule {priority} ELSE 9 END, score DESC, record_a, record_b")
        deferred: dict[int, list] = defaultdict(list)
        for values in reader:
            link = _Link(*values)
            weak_a, weak_b = nodes[link.record_a].weak, nodes[link.record_b].weak
            if weak_a or weak_b:
                deferred[link.record_a if weak_a else link.record_b].append(link)
                continue
            evidence = {"score": float(link.score), "scores": link.scores}
            record_status(link.record_a, link.record_b, *join(link.record_a, link.record_b, link.rule, evidence))
        reader.close()
        # A record without ISBN or year joins only the one cluster its links point to.
        for weak, weak_links in sorted(deferred.items()):
            targets = {uf.find(l.record_b if l.record_a == weak else l.record_a) for l in weak_links}
            strong_targets = {t for t in targets if not all(nodes[m].weak for m in uf.members.get(t, [t]))}
            if len(strong_targets) > 1:
                for l in weak_links:
                    record_status(l.record_a, l.record_b, "ambiguous", "no_year_or_isbn")
                continue
            for link in weak_links:
                other = link.record_b if link.record_a == weak else link.record_a
                if strong_targets and uf.find(other) not in strong_targets:
                    record_status(link.record_a, link.record_b, "ambiguous", "no_year_or_isbn")
                    continue
                evidence = {"score": float(link.score), "scores": link.scores}
                record_status(link.record_a, link.record_b,
                              *join(link.record_a, link.record_b, link.rule, evidence))

        components: dict[int, list[int]] = defaultdict(list)
        for record in nodes:
            components[uf.find(record)].append(record)
        assigned = _stable_ids(conn, nodes, list(components.values()))

        conn.execute(sa.text("DELETE FROM catalog.cluster_member"))
        conn.execute(sa.text("DELETE FROM catalog.cluster"))
        conn.execute(sa.text("CREATE TEMP TABLE tmp_member (LIKE catalog.cluster_member) ON COMMIT DROP"))
        member_columns = ("record_id", "library_code", "local_id", "cluster_id", "rule", "evidence")
        member_rows = []
        for cluster_id, members in assigned:
            for record in members:
                node = nodes[record]
                rule, evidence = joined_by.get(record, ("alone", {}))
                if "linked_to" in evidence:
                    other = nodes[evidence["linked_to"]]
                    evidence = dict(evidence, linked_to=f"{other.library_code}:{other.local_id}")
                member_rows.append((record, node.library_code, node.local_id, cluster_id, rule,
                                    json.dumps(evidence, ensure_ascii=False)))
                if len(member_rows) >= _BATCH:  # streamed: a million members never sit in one buffer
                    _copy(raw, "tmp_member", member_columns, member_rows)
                    member_rows.clear()
        _copy(raw, "tmp_member", member_columns, member_rows)
        _copy(raw, "tmp_status", ("record_a", "record_b", "status", "reason"), statuses)
        conn.execute(sa.text(_INSERT_CLUSTERS))
        conn.execute(sa.text(
            "INSERT INTO catalog.cluster_member SELECT * FROM tmp_member"))
        conn.execute(sa.text(
            """UPDATE catalog.link l SET status = t.status, status_reason = t.reason
               FROM tmp_status t WHERE t.record_a = l.record_a AND t.record_b = l.record_b
                 AND (l.status, l.status_reason) IS DISTINCT FROM (t.status, t.reason)"""))
        counts = conn.execute(sa.text(
            """SELECT count(*), count(*) FILTER (WHERE members > 1), coalesce(max(members), 0)
               FROM catalog.cluster""")).one()
    return {"records": len(nodes), "clusters": counts[0], "shared_clusters": counts[1], "largest_cluster": counts[2],
            "links": dict(sorted(status_counts.items())), "decisions": len(decisions),
            "cluster_seconds": round(time.monotonic() - started, 2)}


def _stable_ids(conn: sa.Connection, nodes: dict[int, _Node], components: list[list[int]]) -> list:
    """Each component inherits the previous id it shares most members with (by library and 001); each old id
    goes to one component only; the others get new ids."""
    previous = {(r[0], r[1]): r[2] for r in conn.execute(sa.text(
        "SELECT library_code, local_id, cluster_id FROM catalog.cluster_member"))}
    components.sort(key=lambda members: min(members))
    offers = []
    for index, members in enumerate(components):
        counts = Counter(previous.get((nodes[m].library_code, nodes[m].local_id)) for m in members)
        counts.pop(None, None)
        offers += [(-count, old_id, index) for old_id, count in counts.items()]
    offers.sort()
    ids: dict[int, int] = {}
    used: set[int] = set()
    for _, old_id, index in offers:
        if index not in ids and old_id not in used:
            ids[index] = old_id
            used.add(old_id)
    fresh = [i for i in range(len(components)) if i not in ids]
    if fresh:
        conn.execute(sa.text("SELECT setval('catalog.cluster_id_seq', greatest(:m, "
                             "(SELECT last_value FROM catalog.cluster_id_seq)))"),
                     {"m": max(previous.values(), default=1)})
        new_ids = conn.execute(sa.text("SELECT nextval('catalog.cluster_id_seq') FROM generate_series(1, :n)"),
                               {"n": len(fresh)}).scalars().all()
        ids.update(zip(fresh, new_ids))
    return [(ids[i], members) for i, members in enumerate(components)]


# Preferred record: complete in the seven mandatory elements, no warnings, most elements filled, decoded
# without repairs (the export carries no encoding level, leader/17), held by a group's lead library, oldest id.
_INSERT_CLUSTERS = """
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
             EXISTS (SELECT 1 FROM core.library_group g WHERE g.lead_library = r.library_code
                     AND g.valid_from <= current_date AND (g.valid_to IS NULL OR current_date <= g.valid_to)) DESC,
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
INSERT INTO catalog.cluster (cluster_id, preferred_record_id, access_level, members, libraries, title, author,
                             publisher, pub_year, volume, isbn13s, search_folded, search_exact, title_words,
                             search_tsv, exact_tsv)
SELECT ranked.cluster_id, r.record_id, agg.access_level, agg.members, agg.libraries, r.title, r.author,
       r.publisher, r.pub_year, k.volume, k.isbn13s, agg.folded, agg.exact, k.title_words,
       to_tsvector('simple', agg.folded), to_tsvector('simple', agg.exact)
FROM ranked
JOIN agg ON agg.cluster_id = ranked.cluster_id
JOIN core.record r ON r.record_id = ranked.record_id
JOIN catalog.record_key k ON k.record_id = ranked.record_id
"""


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
