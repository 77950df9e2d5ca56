"""Warehouse roles against real PostgreSQL: each test connects AS the role and proves what it can and cannot read.

Roles are cluster-wide and shared by every test database on the server, so test logins carry a random part
and are dropped afterwards.
"""
from __future__ import annotations

import json
import uuid

import psycopg2.errors
import pytest
import sqlalchemy as sa

from lienthong import access, migrations, warehouse
from lienthong.cli import main
from lienthong.ingest import ingest_library
from tests.marc_builders import book, write_marc

GROUP_ROLES = ("lienthong_pipeline", "lienthong_analyst", "lienthong_steward", "lienthong_admin")


@pytest.fixture
def logins(warehouse_engine):
    """Makes unique login names; drops every one of them (cluster-wide) at the end of the test."""
    made: list[str] = []

    def new(label: str) -> str:
        name = f"lt_{uuid.uuid4().hex[:10]}_{label}"
        made.append(name)
        return name

    yield new
    admin = sa.create_engine(warehouse.sqlalchemy_url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        for name in made:
            if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first():
                conn.execute(sa.text(f'DROP OWNED BY "{name}"'))
                conn.execute(sa.text(f'DROP ROLE "{name}"'))
    admin.dispose()


def connect_as(login: str) -> sa.Engine:
    """The warehouse as seen by ``login`` (the embedded server trusts its unix socket; grants still apply)."""
    return sa.create_engine(warehouse.sqlalchemy_url().set(username=login, password=None),
                            poolclass=sa.pool.NullPool)


def _denied(engine: sa.Engine, sql: str) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql)).fetchall()
    except sa.exc.ProgrammingError as exc:
        assert isinstance(exc.orig, psycopg2.errors.InsufficientPrivilege), exc
        return True
    return False


def _cli_json(capsys, *argv) -> tuple[int, dict]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def two_groups(clean_warehouse, tmp_path):
    """Two groups with no library in common; one library of each ingested with a quarantined record."""
    with clean_warehouse.connect() as conn:
        members = conn.execute(sa.text(
            """SELECT group_code, array_agg(library_code ORDER BY library_code) AS libs FROM core.group_membership
               WHERE valid_to IS NULL GROUP BY group_code ORDER BY group_code""")).all()
    first = members[0]
    second = next(m for m in members[1:] if not set(m.libs) & set(first.libs))
    picked = {}
    for group, libs in (first, second):
        code = libs[0]
        path = write_marc(tmp_path / f"{code}.mrc", [book(f"{code}-1"), book(f"{code}-2", title=None),
                                                    book(f"{code}-3", year=None)])
        result = ingest_library(code, path, engine=clean_warehouse)
        assert result.status == "applied" and result.quarantined >= 1 and result.loaded >= 1
        picked[group] = {"library": code, "libraries": set(libs), "loaded": result.loaded}
    with clean_warehouse.begin() as conn:
        for group, info in picked.items():
            batch = conn.execute(sa.text("SELECT max(batch_id) FROM core.batch WHERE library_code = :l"),
                                 {"l": info["library"]}).scalar_one()
            conn.execute(sa.text("INSERT INTO quality.unreadable (batch_id, library_code, record_index, reason) "
                                 "VALUES (:b, :l, 99, 'test: cắt cụt')"), {"b": batch, "l": info["library"]})
    return clean_warehouse, picked


def _secured_tables(engine) -> list[str]:
    with engine.begin() as conn:
        return [name for name, readable in conn.execute(sa.text("SELECT * FROM access.secure()")) if readable]


def test_roles_exist_nologin_and_a_second_database_migrates_with_them(warehouse_engine):
    with warehouse_engine.connect() as conn:
        roles = dict(conn.execute(sa.text(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(:r)"), {"r": list(GROUP_ROLES)}).all())
    assert roles == {name: False for name in GROUP_ROLES}
    if not warehouse.is_embedded():
        return
    # The roles already exist (cluster-wide): another database's migration must still succeed.
    second = f"{warehouse.sqlalchemy_url().database}_second"
    admin = sa.create_engine(warehouse.sqlalchemy_url("postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{second}" WITH (FORCE)'))
    try:
        engine = sa.create_engine(warehouse.sqlalchemy_url(second), poolclass=sa.pool.NullPool)
        before, after = migrations.upgrade(engine)
        assert before is None and "0007" in after.split("+")
        assert _secured_tables(engine) == _secured_tables(engine)  # re-applying is idempotent
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{second}" WITH (FORCE)'))
        admin.dispose()


def test_steward_reads_only_the_quality_rows_of_its_groups(two_groups, logins, capsys):
    engine, picked = two_groups
    (mine, mine_info), (other, other_info) = picked.items()
    steward = logins("steward")
    code, out = _cli_json(capsys, "access", "grant", "--group", mine, "--login", steward, "--json")
    assert code == 0 and out["outcome"] == "created" and out["group"] == mine

    secured = _secured_tables(engine)
    assert {"quality.check_failure", "quality.quarantine", "quality.unreadable"} <= set(secured)
    as_steward = connect_as(steward)
    with engine.connect() as conn, as_steward.connect() as sconn:
        for table in secured:
            seen = set(sconn.execute(sa.text(f"SELECT DISTINCT library_code FROM {table}")).scalars())
            assert seen <= mine_info["libraries"], table
            expected = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE library_code = ANY(:l)"),
                                    {"l": sorted(mine_info["libraries"])}).scalar_one()
            assert sconn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == expected, table
        for table in ("quality.check_failure", "quality.quarantine", "quality.unreadable"):
            assert sconn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() > 0, table
            hidden = sconn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE library_code = :l"),
                                   {"l": other_info["library"]}).scalar_one()
            assert hidden == 0
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE library_code = :l"),
                                {"l": other_info["library"]}).scalar_one() > 0
    # Nothing else: not the catalogue, not the marts (views would read past row-level security), no writes.
    assert _denied(as_steward, "SELECT 1 FROM core.record LIMIT 1")
    assert _denied(as_steward, "SELECT 1 FROM marts.quality_failures LIMIT 1")
    assert _denied(as_steward, "UPDATE quality.check_failure SET severity = 'warning'")
    assert _denied(as_steward, "SELECT 1 FROM access.login")

    code, out = _cli_json(capsys, "access", "revoke", "--group", mine, "--login", steward, "--json")
    assert code == 0 and out["outcome"] == "revoked"
    assert _denied(as_steward, "SELECT 1 FROM quality.check_failure LIMIT 1")
    as_steward.dispose()


def test_analyst_reads_marts_and_nothing_patron_level(two_groups, logins):
    engine, picked = two_groups
    analyst = logins("analyst")
    assert access.grant(engine, "analyst", analyst).outcome == "created"
    as_analyst = connect_as(analyst)
    with engine.connect() as conn:
        views = conn.execute(sa.text(
            "SELECT schemaname || '.' || viewname FROM pg_views WHERE schemaname = 'marts'")).scalars().all()
        base = conn.execute(sa.text(
            """SELECT table_schema || '.' || table_name FROM information_schema.tables
               WHERE table_schema NOT IN ('marts', 'pg_catalog', 'information_schema')""")).scalars().all()
    assert views and base
    with as_analyst.connect() as aconn:
        for view in views:
            aconn.execute(sa.text(f"SELECT * FROM {view} LIMIT 1")).fetchall()
        holdings = aconn.execute(sa.text("SELECT sum(records) FROM marts.library_holdings")).scalar_one()
    assert holdings == sum(info["loaded"] for info in picked.values())
    for table in base:  # every base table: core, quality, circulation (pseudonymised patrons), access, …
        assert _denied(as_analyst, f"SELECT 1 FROM {table} LIMIT 1"), table
    if any(t.startswith("circulation.") for t in base):
        assert _denied(as_analyst, "SELECT * FROM circulation.loan LIMIT 1")
    assert _denied(as_analyst, "CREATE TABLE marts.mine (x int)")
    as_analyst.dispose()


def test_pipeline_login_runs_an_ingest_but_cannot_touch_access(clean_warehouse, logins, tmp_path):
    pipeline = logins("pipeline")
    assert access.grant(clean_warehouse, "pipeline", pipeline).outcome == "created"
    as_pipeline = connect_as(pipeline)
    before, after = migrations.upgrade(as_pipeline)  # at head: the pipeline may check, not change, the schema
    assert before == after
    path = write_marc(tmp_path / "p.mrc", [book("P-1"), book("P-2", title=None)])
    result = ingest_library("THPT-LUONGSON", path, engine=as_pipeline)
    assert (result.status, result.loaded + result.quarantined) == ("applied", 2) and result.quarantined >= 1
    with as_pipeline.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM quality.quarantine")).scalar_one() == result.quarantined
    assert _denied(as_pipeline, "SELECT 1 FROM access.steward_group")
    assert _denied(as_pipeline, "CREATE TABLE core.sneaky (x int)")
    with pytest.raises(access.AccessError, match="permission denied"):
        access.grant(as_pipeline, "analyst", logins("x"))
    as_pipeline.dispose()


def test_lead_library_admin_grants_and_revokes_only_its_groups_stewards(two_groups, logins, capsys):
    engine, picked = two_groups
    (mine, _), (other, _) = picked.items()
    admin = logins("admin")
    assert access.grant(engine, "admin", admin, mine).outcome == "created"
    owner_steward = logins("theirs")
    access.grant(engine, "steward", owner_steward, other)
    as_admin = connect_as(admin)

    steward = logins("steward")
    assert access.grant(as_admin, "steward", steward, mine, password="mật-khẩu-1").outcome == "created"
    assert access.grant(as_admin, "steward", steward, mine).outcome == "unchanged"
    for kind, login, group in (("steward", steward, other), ("analyst", logins("a"), None),
                               ("admin", logins("b"), mine), ("steward", owner_steward, mine)):
        with pytest.raises(access.AccessError, match="permission denied|not created by lienthong|not yours"):
            access.grant(as_admin, kind, login, group, password="x" if login == owner_steward else None)
    with pytest.raises(access.AccessError, match="not allowed"):
        access.grant(as_admin, "steward", "postgres", mine)
    with pytest.raises(access.AccessError, match="permission denied"):
        access.revoke(as_admin, "steward", owner_steward, other)

    listed = access.list_access(as_admin)
    assert [(s["login"], s["group"]) for s in listed["stewards"]] == [(steward, mine)]
    assert steward in listed["roles"]["steward"] and admin in listed["roles"]["admin"]
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :n"),
                              {"n": steward}).scalar_one()
    assert stored.startswith("SCRAM-SHA-256$") and "mật-khẩu-1" not in stored

    assert access.revoke(as_admin, "steward", steward, mine).outcome == "revoked"
    assert access.list_access(as_admin)["stewards"] == []
    as_admin.dispose()


@pytest.mark.parametrize("login, group, message", [
    ("x'); DROP ROLE postgres; --", None, "not allowed"),
    ("lienthong_pipeline", None, "not allowed"),
    ("lt_valid_name", "NO-SUCH-GROUP", "not in the registry"),
])
def test_grant_refuses_bad_names_and_unknown_groups(warehouse_engine, capsys, login, group, message):
    with warehouse_engine.connect() as conn:
        first_group = conn.execute(sa.text("SELECT min(group_code) FROM core.library_group")).scalar_one()
    code, out = _cli_json(capsys, "access", "grant", "--login", login, "--group", group or first_group, "--json")
    assert code == 1 and out["ok"] is False and message in out["error"]
    with warehouse_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :n"), {"n": login}).scalar_one() \
            == (1 if login == "lienthong_pipeline" else 0)


def test_password_comes_from_the_environment_and_is_never_printed(warehouse_engine, logins, capsys, monkeypatch):
    with warehouse_engine.connect() as conn:
        group = conn.execute(sa.text("SELECT min(group_code) FROM core.library_group")).scalar_one()
    login = logins("pw")
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("LT_TEST_STEWARD_PASSWORD", secret)
    code = main(["access", "grant", "--group", group, "--login", login, "--password-env",
                 "LT_TEST_STEWARD_PASSWORD", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["outcome"] == "created"
    assert secret not in captured.out + captured.err
    code, listing = _cli_json(capsys, "access", "list", "--json")
    assert code == 0 and login in listing["roles"]["steward"] and secret not in json.dumps(listing)
    assert main(["access", "grant", "--group", group, "--login", logins("pw2"), "--password-env", "LT_UNSET_VAR"]) == 1
    assert "LT_UNSET_VAR" in capsys.readouterr().err
