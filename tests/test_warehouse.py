"""The warehouse: embedded PostgreSQL, migrations that are idempotent, registry dimensions."""
from __future__ import annotations

import subprocess

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
