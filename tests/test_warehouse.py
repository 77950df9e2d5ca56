"""The warehouse: embedded PostgreSQL, migrations that are idempotent, registry dimensions."""
from __future__ import annotations

import io
import subprocess
import threading

import psycopg2
import pytest
import sqlalchemy as sa
from alembic import command

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


_VERSION = sa.text(
    """INSERT INTO core.record (library_code, local_id, record_hash, encoding, valid_from, loaded_by_batch)
       VALUES (:l, :i, repeat('a', 64), 'utf-8', now(), :b) RETURNING record_id""")
_COPY = sa.text("INSERT INTO core.item (record_id, library_code, item_seq) VALUES (:r, :l, :s)")


def _copies(conn) -> list[int]:
    return conn.execute(sa.text("SELECT record_id FROM core.item ORDER BY record_id, item_seq")).scalars().all()


def _copy_rows(engine, table: str, columns: str, lines: list[str]) -> None:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.StringIO("".join(lines)))
        raw.commit()
    finally:
        raw.close()


def test_statement_foreign_keys_hold_for_copy_and_insert(clean_warehouse):
    """Migration 0013: the keys a load fires per row are checked per statement, with the same errors."""
    with clean_warehouse.begin() as conn:
        own, other = conn.execute(sa.text("SELECT library_code FROM core.library ORDER BY 1 LIMIT 2")).scalars()
        batch, other_batch = _add_batch(conn, own), _add_batch(conn, other)
        record = conn.execute(_VERSION, {"l": own, "i": "r1", "b": batch}).scalar_one()
    _copy_rows(clean_warehouse, "core.item", "record_id, library_code, item_seq",
               [f"{record}\t{own}\t0\n", f"{record}\t{own}\t1\n"])
    with pytest.raises(psycopg2.errors.ForeignKeyViolation, match="item_record_id_fkey"):  # one bad line: no row
        _copy_rows(clean_warehouse, "core.item", "record_id, library_code, item_seq",
                   [f"{record}\t{own}\t2\n", f"{record + 99}\t{own}\t0\n"])
    wrong_library = f"record_loaded_by_batch_fkey[\\s\\S]*{other_batch}, {own}"  # the detail names the key
    with pytest.raises(psycopg2.errors.ForeignKeyViolation, match=wrong_library):
        _copy_rows(clean_warehouse, "core.record", "library_code, local_id, record_hash, encoding, valid_from, "
                   "loaded_by_batch", [f"{own}\tr2\t{'a' * 64}\tutf-8\tnow\t{batch}\n",
                                       f"{own}\tr3\t{'a' * 64}\tutf-8\tnow\t{other_batch}\n"])
    refused = [(_COPY, {"r": record + 99, "l": own, "s": 0}, "item_record_id_fkey"),
               (sa.text("UPDATE core.item SET record_id = record_id + 99"), {}, "item_record_id_fkey"),
               (sa.text("UPDATE core.record SET loaded_by_batch = :b"), {"b": other_batch},
                "record_loaded_by_batch_fkey"),
               (sa.text("UPDATE core.record SET record_id = record_id + 99"), {}, "item_record_id_fkey"),
               (sa.text("UPDATE core.batch SET library_code = :l WHERE batch_id = :b"), {"l": other, "b": batch},
                "record_loaded_by_batch_fkey"),
               (sa.text("DELETE FROM core.batch WHERE batch_id = :b"), {"b": batch}, "record_loaded_by_batch_fkey")]
    for statement, values, constraint in refused:
        with clean_warehouse.connect() as conn, pytest.raises(sa.exc.IntegrityError, match=constraint):
            conn.execute(statement, values)
    with clean_warehouse.begin() as conn:
        assert _copies(conn) == [record, record]
        conn.execute(sa.text("UPDATE core.batch SET status = 'applied' WHERE batch_id = :b"), {"b": batch})
        conn.execute(sa.text("DELETE FROM core.batch WHERE batch_id = :b"), {"b": other_batch})  # loaded nothing
        conn.execute(sa.text("DELETE FROM core.record WHERE record_id = :r"), {"r": record})
        assert _copies(conn) == []  # ON DELETE CASCADE
        again = conn.execute(_VERSION, {"l": own, "i": "r1", "b": batch}).scalar_one()
        conn.execute(_COPY, {"r": again, "l": own, "s": 0})
    with clean_warehouse.begin() as conn:
        conn.execute(sa.text("TRUNCATE core.record CASCADE"))  # reaches core.item as the declared key did
        assert _copies(conn) == []


def test_a_cascading_delete_is_read_committed_and_waits_for_a_load(clean_warehouse):
    """A copy's loading transaction locks its version as a declared key does: a delete of the version waits,
    then takes the copy with it; at REPEATABLE READ, whose snapshot would miss the copy, the delete is refused."""
    with clean_warehouse.begin() as conn:
        own = conn.execute(sa.text("SELECT library_code FROM core.library ORDER BY 1 LIMIT 1")).scalar_one()
        record = conn.execute(_VERSION, {"l": own, "i": "r1", "b": _add_batch(conn, own)}).scalar_one()
    with clean_warehouse.connect() as conn, pytest.raises(sa.exc.OperationalError, match="READ COMMITTED"):
        conn.execution_options(isolation_level="REPEATABLE READ").execute(
            sa.text("DELETE FROM core.record WHERE record_id = :r"), {"r": record})
    loading = clean_warehouse.connect()
    loading.execute(_COPY, {"r": record, "l": own, "s": 0})  # not committed yet
    deleted: list[int] = []

    def delete() -> None:
        with clean_warehouse.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '20s'"))
            deleted.append(conn.execute(sa.text("DELETE FROM core.record WHERE record_id = :r"),
                                        {"r": record}).rowcount)

    deleting = threading.Thread(target=delete)
    deleting.start()
    deleting.join(1.0)
    assert deleting.is_alive() and not deleted  # waiting for the load's lock
    loading.commit()
    loading.close()
    deleting.join(30)
    assert deleted == [1]
    with clean_warehouse.connect() as conn:
        assert _copies(conn) == []


def test_statement_foreign_keys_downgrade_to_declared_ones(clean_warehouse):
    def keys(conn) -> set[str]:
        return set(conn.execute(sa.text(
            """SELECT conname FROM pg_constraint WHERE contype = 'f'
               AND conrelid IN ('core.item'::regclass, 'core.record'::regclass)""")).scalars())

    with clean_warehouse.begin() as conn:
        assert "item_record_id_fkey" not in keys(conn)
        command.downgrade(migrations.alembic_config(conn), "0012")
        assert keys(conn) >= {"item_record_id_fkey", "record_loaded_by_batch_fkey", "record_closed_by_batch_fkey"}
        assert not conn.execute(sa.text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%fkey%'")).scalar_one()
    before, after = migrations.upgrade(clean_warehouse)
    assert before != after == migrations.head_revision()
    with clean_warehouse.connect() as conn:
        assert keys(conn) == {"record_closed_by_batch_fkey"}


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
