"""Backup and restore with the real pg_dump/pg_restore of the embedded server: a restore into a fresh database
has the same rows in every table (counts and checksums), the same row-level security, and the landed files.
"""
from __future__ import annotations

import hashlib
import json
import tarfile

import pytest
import sqlalchemy as sa

from lienthong import landing, warehouse
from lienthong.cli import main
from lienthong.ingest import ingest_library
from tests.marc_builders import book, write_marc

TABLES = sa.text(
    """SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
       WHERE schemaname !~ '^(pg_|information_schema$)' ORDER BY 1""")


def fingerprint(engine: sa.Engine) -> dict:
    """Every table's row count and a checksum of its rows; sequences; policies; grants."""
    with engine.connect() as conn:
        tables = conn.execute(TABLES).scalars().all()
        result = {}
        for table in tables:
            result[table] = tuple(conn.execute(sa.text(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table} t"
            )).one())
        result["sequences"] = conn.execute(sa.text(
            "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2")).all()
        result["policies"] = conn.execute(sa.text(
            "SELECT schemaname, tablename, policyname, roles::text, qual FROM pg_policies ORDER BY 1, 2, 3")).all()
        result["grants"] = conn.execute(sa.text(
            """SELECT table_schema, table_name, grantee, privilege_type FROM information_schema.role_table_grants
               WHERE grantee LIKE 'lienthong\\_%' AND table_schema NOT LIKE 'pg\\_temp\\_%'
               ORDER BY 1, 2, 3, 4""")).all()  # a pooled session's temporary table is not the warehouse's
    return result


@pytest.fixture
def loaded(clean_warehouse, tmp_path):
    for code, n in (("THPT-LUONGSON", 6), ("THPT-CHVT", 4)):
        path = write_marc(tmp_path / f"{code}.mrc",
                          [book(f"{code}-{i}", title=None if i == 0 else f"Sách {i}",
                                items=((f"STK.{code}.{i}", "510"),)) for i in range(n)])
        assert ingest_library(code, path, engine=clean_warehouse).status == "applied"
    return clean_warehouse


@pytest.fixture
def restored_name(warehouse_engine):
    name = f"{warehouse_engine.url.database}_restored"
    admin = sa.create_engine(warehouse.sqlalchemy_url("postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    yield name
    warehouse.dispose_engines()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _json(capsys, argv) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else {"stderr": out.err})


def test_backup_then_restore_into_a_fresh_database_is_identical(loaded, restored_name, tmp_path, capsys,
                                                                monkeypatch):
    before = fingerprint(loaded)
    assert before["core.record"][0] > 0 and before["landing.delivery"][0] == 2
    out = tmp_path / "backup" / "warehouse.dump"
    code, result = _json(capsys, ["db", "backup", "--out", str(out), "--with-landing", "--json"])
    assert code == 0, result
    assert out.is_file() and result["landing_files"] == 2 and result["landing_not_ok"] == []
    manifest = json.loads((tmp_path / "backup" / "warehouse.dump.manifest.json").read_text())
    assert manifest["dump_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    with loaded.connect() as conn:
        landed = set(conn.execute(sa.text("SELECT sha256 FROM landing.delivery")).scalars())
    assert {f["sha256"] for f in manifest["landing_files"]} == landed

    new_landing = tmp_path / "landing-restored"
    monkeypatch.setenv("LIENTHONG_LANDING_ROOT", str(new_landing))
    code, result = _json(capsys, ["db", "restore", str(out), "--database", restored_name, "--json"])
    assert code == 0, result
    assert result["database"] == restored_name and result["landing"]["restored"] == 2
    assert result["landing_missing"] == []
    for sha in landed:
        assert hashlib.sha256(landing.path_of(sha).read_bytes()).hexdigest() == sha

    restored = sa.create_engine(warehouse.sqlalchemy_url(restored_name), poolclass=sa.pool.NullPool)
    after = fingerprint(restored)
    restored.dispose()
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == before[key], key


def test_restore_refuses_a_non_empty_database_and_a_damaged_dump(loaded, tmp_path, capsys):
    out = tmp_path / "w.dump"
    assert main(["db", "backup", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["db", "restore", str(out)]) == 1  # the configured warehouse is not empty
    assert "is not empty" in capsys.readouterr().err
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    assert main(["db", "restore", str(out), "--database", "lienthong_never_created"]) == 1
    assert "does not match the sha256" in capsys.readouterr().err


def test_landing_archive_with_a_foreign_member_is_refused(loaded, restored_name, tmp_path, capsys, monkeypatch):
    out = tmp_path / "b.dump"
    assert main(["db", "backup", "--out", str(out), "--with-landing"]) == 0
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(f"{out}.landing.tar", "a") as tar:
        tar.add(evil, arcname="../../outside.txt")
    monkeypatch.setenv("LIENTHONG_LANDING_ROOT", str(tmp_path / "landing2"))
    capsys.readouterr()
    assert main(["db", "restore", str(out), "--database", restored_name]) == 1
    assert "is not a landed file of this backup" in capsys.readouterr().err
    assert not (tmp_path / "outside.txt").exists()
