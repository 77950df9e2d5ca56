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

    # Small chunks, so most contents go through two forked workers; every bulk path taken.
    monkeypatch.setattr(catalog, "_BATCH", 20)
    monkeypatch.setattr(catalog, "PARALLEL_MIN_CONTENTS", 20)
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
