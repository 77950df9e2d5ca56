"""The fast paths of the union-catalogue build make the same catalogue as the plain ones: keys computed by
forked worker processes, foreign keys and search indexes rebuilt once for a bulk build, and a rebuild that
writes only what changed. Their speed is measured by `make bench-catalog`, never here."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from lienthong import catalog
from tests.conftest import empty_warehouse

pytestmark = pytest.mark.integration

SCHOOLS = ("THPT-MAICHAU", "THPT-MAICHAU-B", "PTDTNT-MAICHAU")
_CATALOG = "catalog.record_key, catalog.record_block, catalog.link, catalog.cluster, catalog.cluster_member"


@pytest.fixture(scope="module")
def ingested(warehouse_engine, demo_province):
    from lienthong.ingest import ingest_library
    from lienthong.registry import PUBLIC_LIBRARY_TYPES, load_registry

    empty_warehouse(warehouse_engine)
    codes = [lib.code for lib in load_registry().active_libraries()
             if lib.type in PUBLIC_LIBRARY_TYPES or lib.code in SCHOOLS]
    for code in codes:
        assert ingest_library(code).status == "applied"
    yield warehouse_engine
    empty_warehouse(warehouse_engine)


def _fresh_build(engine) -> dict:
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {_CATALOG}, catalog.build_run CASCADE"))
        conn.execute(sa.text("ALTER SEQUENCE catalog.cluster_id_seq RESTART"))
    return catalog.build(engine)


def _catalogue(engine) -> dict:
    """Everything a build writes, except the times it was written."""
    queries = {
        "keys": "SELECT record_id, keys_version, title_key, volume, author_key, publisher_key, year, isbn13s, "
                "title_numbers, search_folded, search_exact, title_words, signature, is_rep, pending "
                "FROM catalog.record_key",
        "blocks": "SELECT block, record_id FROM catalog.record_block",
        "links": "SELECT record_a, record_b, rule, score, CAST(scores AS text), status, status_reason "
                 "FROM catalog.link",
        "members": "SELECT record_id, library_code, local_id, cluster_id, rule, CAST(evidence AS text) "
                   "FROM catalog.cluster_member",
        "clusters": "SELECT cluster_id, preferred_record_id, access_level, members, libraries, title, volume, "
                    "isbn13s, search_folded, search_exact, title_words, CAST(search_tsv AS text), "
                    "CAST(exact_tsv AS text) FROM catalog.cluster",
    }
    with engine.connect() as conn:
        return {name: sorted(tuple(map(str, row)) for row in conn.execute(sa.text(sql)))
                for name, sql in queries.items()}


def _schema(engine) -> tuple[list, list]:
    with engine.connect() as conn:
        constraints = conn.execute(sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = CAST('catalog' AS regnamespace) ORDER BY 1")).all()
        indexes = conn.execute(sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'catalog' ORDER BY 1")).all()
    return constraints, indexes


def test_worker_and_bulk_paths_build_the_same_catalogue(ingested, monkeypatch):
    engine = ingested
    schema = _schema(engine)
    monkeypatch.setattr(catalog, "BULK_MIN_RECORDS", 10**9)
    monkeypatch.setattr(catalog, "BULK_MIN_ROWS", 10**9)
    monkeypatch.setattr(catalog, "_worker_count", lambda: 1)
    plain_stats = _fresh_build(engine)
    plain = _catalogue(engine)
    assert plain_stats["keys_added"] > 100 and plain_stats["clusters_written"] == plain_stats["clusters"]
    assert (plain_stats["key_workers"], plain_stats["bulk_keys"], plain_stats["bulk_clusters"]) == (0, False, False)

    # Small chunks, so most contents go through two forked workers (an edition held by more than 20 records is
    # split across chunks); every bulk path taken.
    monkeypatch.setattr(catalog, "_BATCH", 20)
    monkeypatch.setattr(catalog, "PARALLEL_MIN_RECORDS", 20)
    monkeypatch.setattr(catalog, "_worker_count", lambda: 2)
    monkeypatch.setattr(catalog, "BULK_MIN_RECORDS", 1)
    monkeypatch.setattr(catalog, "BULK_MIN_ROWS", 1)
    fast_stats = _fresh_build(engine)
    fast = _catalogue(engine)
    assert (fast_stats["key_workers"], fast_stats["bulk_keys"], fast_stats["bulk_clusters"]) == (2, True, True)

    assert fast == plain
    for name in ("keys_added", "pairs_compared", "links_added", "same_keys_links", "pairs_rejected", "clusters",
                 "links"):
        assert fast_stats[name] == plain_stats[name], name
    assert _schema(engine) == schema  # foreign keys and search indexes are back as the migration made them


def test_rebuild_without_changes_writes_nothing(ingested):
    engine = ingested
    _fresh_build(engine)
    before = _catalogue(engine)
    stats = catalog.build(engine)
    assert (stats["keys_added"], stats["keys_removed"], stats["links_added"]) == (0, 0, 0)
    assert (stats["clusters_deleted"], stats["clusters_written"], stats["members_written"]) == (0, 0, 0)
    assert _catalogue(engine) == before


def test_key_chunks_hold_a_bounded_number_of_records_however_contents_are_shared(warehouse_engine, monkeypatch):
    """An edition held by many libraries is one content row with many record ids: it is split across chunks,
    so a chunk never holds more than _BATCH records, and the key lines come out as from the whole content."""
    monkeypatch.setattr(catalog, "_BATCH", 10)
    raw = warehouse_engine.raw_connection()
    try:
        reader = raw.cursor(name="shared_contents")
        reader.execute(
            """SELECT 'Tiếng Việt ' || c, 'Nguyễn Văn A', 'Nxb. Giáo dục', '2020', ARRAY['9786040000000'],
                      ARRAY[]::text[], ARRAY[]::text[],
                      array(SELECT c * 100 + x FROM generate_series(1, n) x),
                      array(SELECT 'TH-' || x FROM generate_series(1, n) x),
                      array(SELECT 'id' || x FROM generate_series(1, n) x)
               FROM (VALUES (1, 3), (2, 25), (3, 4)) v (c, n) ORDER BY c""")
        chunks = list(catalog._chunks(reader))
        reader.close()
    finally:
        raw.close()
    sizes = [sum(len(part[-1]) for part in chunk) for chunk in chunks]
    assert sizes == [10, 10, 10, 2]
    ids = [record_id for chunk in chunks for part in chunk for record_id in part[-3]]
    assert ids == [101, 102, 103, *range(201, 226), *range(301, 305)]
    split_lines = "".join(catalog._key_rows(chunk)[0] for chunk in chunks)
    content = ("Tiếng Việt 2", "Nguyễn Văn A", "Nxb. Giáo dục", "2020", ["9786040000000"], [], [])
    one_piece = catalog._key_rows([(*content, list(range(201, 226)), [f"TH-{x}" for x in range(1, 26)],
                                    [f"id{x}" for x in range(1, 26)])])
    assert one_piece[2] == 25 and one_piece[0] in split_lines
