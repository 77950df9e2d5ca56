"""The warehouse: embedded PostgreSQL, migrations that are idempotent, registry dimensions."""
from __future__ import annotations

import subprocess

import pytest
import sqlalchemy as sa

from lienthong import dimensions, migrations, warehouse

STAGE_SCHEMAS = {"landing", "staging", "core", "quality", "catalog", "marts"}


def _schema_fingerprint(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            """SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns
               WHERE table_schema = ANY(:s) ORDER BY 1, 2, 3"""), {"s": list(STAGE_SCHEMAS)}).all()


def test_stage_schemas_exist(warehouse_engine):
    with warehouse_engine.connect() as conn:
        schemas = set(conn.execute(sa.text("SELECT schema_name FROM information_schema.schemata")).scalars())
        assert STAGE_SCHEMAS <= schemas
        assert conn.execute(sa.text("SELECT version()")).scalar_one().startswith("PostgreSQL 16")


def test_migrations_are_idempotent(warehouse_engine):
    before = _schema_fingerprint(warehouse_engine)
    first = migrations.upgrade(warehouse_engine)
    second = migrations.upgrade(warehouse_engine)
    assert first == second == (migrations.head_revision(), migrations.head_revision())
    assert _schema_fingerprint(warehouse_engine) == before


def test_registry_dimensions_reload_is_stable(warehouse_engine):
    def counts():
        with warehouse_engine.connect() as conn:
            return [conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                    for t in ("core.library", "core.library_group", "core.group_membership")]

    first = dimensions.load_registry_dimensions(warehouse_engine)
    snapshot = counts()
    second = dimensions.load_registry_dimensions(warehouse_engine)
    assert first == second
    assert snapshot == counts() == [first["libraries"], first["groups"], first["memberships"]]
    with warehouse_engine.connect() as conn:
        leads = conn.execute(sa.text(
            """SELECT count(*) FROM core.library_group g
               JOIN core.group_membership m ON m.group_code = g.group_code AND m.library_code = g.lead_library""")
        ).scalar_one()
    assert leads == first["groups"]


def test_psql_accepts_the_url(warehouse_engine):
    url = warehouse.psql_url()
    binary = str(warehouse.psql_binary()) if warehouse.is_embedded() else "psql"
    out = subprocess.run([binary, url, "-tAc", "SELECT count(*) FROM core.library"],
                         capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) > 0


def test_marts_views_are_documented(warehouse_engine):
    with warehouse_engine.connect() as conn:
        rows = conn.execute(sa.text(
            """SELECT c.relname, obj_description(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'marts' AND c.relkind = 'v'""")).all()
    assert {name for name, _ in rows} >= {"library_holdings", "library_last_batch", "province_summary",
                                          "quality_failures"}
    assert all(comment for _, comment in rows)


def _add_library(conn, code: str) -> None:
    conn.execute(sa.text("INSERT INTO core.library (library_code, name, library_type, valid_from) "
                         "VALUES (:c, 'Thư viện đã rời danh sách', 'THCS', DATE '2020-01-01')"), {"c": code})


def _add_batch(conn, code: str) -> int:
    return conn.execute(sa.text("INSERT INTO core.batch (library_code) VALUES (:c) RETURNING batch_id"),
                        {"c": code}).scalar_one()


def test_a_record_version_belongs_to_its_batchs_library(clean_warehouse):
    """Migration 0012: a record references (batch, library) together, and a batch references its library."""
    with clean_warehouse.begin() as conn:
        own, other = conn.execute(sa.text("SELECT library_code FROM core.library ORDER BY 1 LIMIT 2")).scalars()
        own_batch, other_batch = _add_batch(conn, own), _add_batch(conn, other)
    insert = sa.text(
        """INSERT INTO core.record (library_code, local_id, record_hash, encoding, valid_from, loaded_by_batch,
                                    closed_by_batch)
           VALUES (:l, :i, repeat('a', 64), 'utf-8', now(), :loaded, :closed)""")
    with clean_warehouse.begin() as conn:
        conn.execute(insert, {"l": own, "i": "r1", "loaded": own_batch, "closed": None})
    wrong = [({"l": other, "i": "r2", "loaded": own_batch, "closed": None}, "record_loaded_by_batch_fkey"),
             ({"l": own, "i": "r3", "loaded": own_batch, "closed": other_batch}, "record_closed_by_batch_fkey")]
    for values, constraint in wrong:
        with clean_warehouse.connect() as conn, pytest.raises(sa.exc.IntegrityError, match=constraint):
            conn.execute(insert, values)
    with clean_warehouse.connect() as conn, pytest.raises(sa.exc.IntegrityError, match="batch_library_code_fkey"):
        _add_batch(conn, "NO-SUCH-LIBRARY")


def test_a_library_that_left_the_registry_is_removed_only_without_data(clean_warehouse):
    with clean_warehouse.begin() as conn:
        _add_library(conn, "ROI-DI-TRONG")
        _add_library(conn, "ROI-DI-CO-LO")
        batch = _add_batch(conn, "ROI-DI-CO-LO")  # a failed export still counts: its batch says it was received
    loaded = dimensions.load_registry_dimensions(clean_warehouse)
    with clean_warehouse.connect() as conn:
        left = set(conn.execute(sa.text("SELECT library_code FROM core.library WHERE library_code LIKE 'ROI-DI-%'"))
                   .scalars())
    assert loaded["libraries_removed"] == 1
    assert left == {"ROI-DI-CO-LO"}
    with clean_warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM core.batch WHERE batch_id = :b"), {"b": batch})
    assert dimensions.load_registry_dimensions(clean_warehouse)["libraries_removed"] == 1
