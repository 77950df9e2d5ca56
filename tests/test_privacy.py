"""Readers' privacy: the key is required and never shown; no raw identifier or personal value reaches the warehouse."""
from __future__ import annotations

import csv
import hashlib
import hmac
import json
import pickle
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from lienthong import config
from lienthong.circulation import ingest_circulation, ingest_one
from lienthong.privacy import PatronKeyError, Pseudonymiser, load_key
from lienthong.registry import load_registry
from tests.conftest import REGISTRY_TABLES, STAGE_SCHEMAS

SECRET = "a-long-random-secret-for-tests-42"


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv("LIENTHONG_PATRON_KEY", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_LIENTHONG_PATRON_KEY", raising=False)
    return monkeypatch


# ------------------------------------------------------------------------------------------------ the key
def test_key_from_environment_or_airflow_connection(no_key):
    with pytest.raises(PatronKeyError, match="LIENTHONG_PATRON_KEY"):
        load_key()
    no_key.setenv("AIRFLOW_CONN_LIENTHONG_PATRON_KEY", json.dumps({"conn_type": "generic", "password": SECRET}))
    assert load_key() == SECRET.encode()
    no_key.setenv("AIRFLOW_CONN_LIENTHONG_PATRON_KEY", json.dumps({"conn_type": "generic", "extra": {"key": SECRET}}))
    assert load_key() == SECRET.encode()
    no_key.setenv("AIRFLOW_CONN_LIENTHONG_PATRON_KEY", "generic://:a-long-random%2Fsecret-for-tests@")
    assert load_key() == b"a-long-random/secret-for-tests"
    no_key.setenv("LIENTHONG_PATRON_KEY", SECRET)  # the environment variable wins
    no_key.setenv("AIRFLOW_CONN_LIENTHONG_PATRON_KEY", json.dumps({"password": "another-secret-of-enough-length"}))
    assert load_key() == SECRET.encode()


def test_key_problems_are_reported_without_the_key(no_key):
    no_key.setenv("LIENTHONG_PATRON_KEY", "short-secret")
    with pytest.raises(PatronKeyError) as short:
        load_key()
    assert "short-secret" not in str(short.value) and "16 bytes" in str(short.value)
    no_key.delenv("LIENTHONG_PATRON_KEY")
    no_key.setenv("AIRFLOW_CONN_LIENTHONG_PATRON_KEY", '{"password": "' + SECRET + '"')  # broken JSON
    with pytest.raises(PatronKeyError) as broken:
        load_key()
    assert SECRET not in str(broken.value) and SECRET not in repr(broken.value)


def test_pseudonyms_are_keyed_normalised_and_never_show_the_key():
    pseudonymiser = Pseudonymiser(SECRET.encode())
    expected = hmac.new(SECRET.encode(), b"hs-0001", hashlib.sha256).hexdigest()
    assert pseudonymiser.pseudonym("HS-0001") == expected
    assert pseudonymiser.pseudonym(" hs - 0001 ") == expected
    assert pseudonymiser.pseudonym("") is None and pseudonymiser.pseudonym(None) is None
    assert hashlib.sha256(b"hs-0001").hexdigest() != expected  # not a plain hash anyone could recompute
    other = Pseudonymiser(b"another-secret-of-enough-length")
    assert other.pseudonym("HS-0001") != expected and other.key_id != pseudonymiser.key_id
    for shown in (repr(pseudonymiser), str(pseudonymiser), pseudonymiser.key_id):
        assert SECRET not in shown
    with pytest.raises(TypeError):
        pickle.dumps(pseudonymiser)


def test_ingest_refuses_before_reading_anything_without_a_key(clean_warehouse, tmp_path, no_key):
    export = tmp_path / "muon.csv"
    export.write_text("Mã bạn đọc,Số ĐKCB,Ngày mượn\nHS-1,STK.000001,01/10/2026\n", encoding="utf-8")
    with pytest.raises(PatronKeyError):
        ingest_circulation("THPT-CHVT", export, engine=clean_warehouse)
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM landing.delivery")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM circulation.batch")).scalar_one() == 0


# ------------------------------------------------------------------------------------------------ the scan
def _table_rows(path: Path):
    """Every row of a demo export as {header: cell}, read without lienthong (csv / openpyxl)."""
    if path.suffix == ".xlsx":
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True)
        lines = [[None if c is None else str(c) for c in row] for row in book.active.iter_rows(values_only=True)]
        book.close()
    else:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            lines = list(csv.reader(handle))
    start = next(i for i, line in enumerate(lines) if sum(1 for c in line if c) >= 3)
    header = lines[start]
    return [dict(zip(header, line)) for line in lines[start + 1:]]


IDENTIFIERS = ("Mã bạn đọc", "Số thẻ", "cardnumber", "borrowernumber")
PERSONAL = ("Họ và tên", "Số điện thoại", "Điện thoại", "Địa chỉ", "Ngày sinh")


@pytest.fixture(scope="module")
def ingested(warehouse_engine, demo_province, tmp_path_factory):
    """A public library (Koha report, ILL, rotation, cards) and two schools (one with an XLSX register)."""
    with warehouse_engine.begin() as conn:
        tables = [f"{s}.{t}" for s, t in conn.execute(sa.text(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:s)"), {"s": list(STAGE_SCHEMAS)})]
        conn.execute(sa.text(f"TRUNCATE {', '.join(sorted(set(tables) - REGISTRY_TABLES))} RESTART IDENTITY CASCADE"))
    registry = load_registry()
    drop = config.drop_root()
    xlsx_school = sorted(drop.glob("*/circulation/*.xlsx"))[0].parent.parent.name
    district = registry.libraries[xlsx_school].admin_unit
    public = next(lib.code for lib in registry.active_libraries()
                  if lib.admin_unit == district and lib.type == "district library")
    ill_school = next(code for code, entry in demo_province["circulation"]["libraries"].items()
                      if "ill" in entry["files"] and code not in (xlsx_school, public)
                      and entry["quarantined"].get("ill"))
    codes = [public, xlsx_school, ill_school]
    pseudonymiser = Pseudonymiser(SECRET.encode())
    results = [r for code in codes for r in ingest_circulation(code, registry=registry, engine=warehouse_engine,
                                                                pseudonymiser=pseudonymiser)]
    files = [drop / relative for code in codes
             for relative in demo_province["circulation"]["libraries"][code]["files"].values()]
    return codes, results, files


def test_no_personal_value_reaches_any_warehouse_table(ingested, warehouse_engine):
    codes, results, files = ingested
    assert {r.kind for r in results} == {"loans", "ill", "cards", "rotation"}
    assert any(r.layout == "koha" for r in results) and any(r.file.endswith(".xlsx") for r in results)
    assert sum(r.quarantined for r in results) > 0  # quarantined rows are stored too: they are scanned

    identifiers, personal = set(), set()
    for path in files:
        for row in _table_rows(path):
            identifiers.update(v.strip() for k, v in row.items() if k in IDENTIFIERS and v and v.strip())
            personal.update(v.strip() for k, v in row.items() if k in PERSONAL and v and v.strip())
    births = {f"{m[3]}-{m[2]}-{m[1]}" for m in (re.fullmatch(r"(\d\d)/(\d\d)/(\d{4})", v) for v in personal) if m}
    assert len(identifiers) > 40 and len(personal) > 100 and births
    words = sorted(identifiers | personal | births, key=len, reverse=True)
    pattern = re.compile("(?<![0-9A-Za-z])(" + "|".join(re.escape(w) for w in words) + ")(?![0-9A-Za-z])",
                         re.IGNORECASE)

    with warehouse_engine.connect() as conn:
        scanned, leaks = _scan(conn, pattern)
        hashes = conn.execute(sa.text("SELECT patron_hash FROM circulation.loan_event "
                                      "UNION SELECT card_hash FROM circulation.reader_card")).scalars()
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
        assert scanned > 1000 and leaks == []

        # The scan does find a value that got through: plant one, scan, roll back.
        conn.rollback()
        name = sorted(p for p in personal if " " in p)[0]
        conn.execute(sa.text("UPDATE circulation.quarantine SET row = row || jsonb_build_object('note', :v) "
                             "WHERE row_number = (SELECT min(row_number) FROM circulation.quarantine)"), {"v": name})
        assert {leak[:3] for leak in _scan(conn, pattern)[1]} == {("circulation", "quarantine", "row")}
        conn.rollback()


def _scan(conn, pattern) -> tuple[int, list]:
    """Every text, JSON and array value of every warehouse table and mart, searched for the inputs' values."""
    columns = conn.execute(sa.text(
        """SELECT table_schema, table_name, column_name FROM information_schema.columns
           WHERE table_schema = ANY(:s) AND data_type IN ('text', 'character varying', 'character', 'jsonb',
                                                          'json', 'ARRAY')"""),
        {"s": [*STAGE_SCHEMAS, "marts"]}).all()
    scanned, leaks = 0, []
    for schema, table, column in columns:
        values = conn.execute(sa.text(
            f'SELECT DISTINCT "{column}"::text FROM "{schema}"."{table}" WHERE "{column}" IS NOT NULL')).scalars()
        for value in values:
            scanned += 1
            found = pattern.search(value)
            if found:
                leaks.append((schema, table, column, found.group(0)))
    return scanned, leaks


def test_what_the_dag_task_returns_is_small_and_anonymous(ingested, monkeypatch):
    codes, _, files = ingested
    monkeypatch.setenv("LIENTHONG_PATRON_KEY", SECRET)
    summaries = ingest_one(codes[1])  # unchanged by now: the same shape, nothing re-read
    text = json.dumps(summaries, ensure_ascii=False, allow_nan=False)
    assert len(text) < 4000 and SECRET not in text
    assert all(s["status"] == "unchanged" and s["conserved"] for s in summaries)
    names = {v for path in files for row in _table_rows(path) for k, v in row.items() if k == "Họ và tên" and v}
    assert not any(name in text for name in names)


def test_demo_key_only_when_none_is_configured(tmp_path, no_key):
    from lienthong.privacy import ensure_demo_key

    path = tmp_path / "var" / "demo-patron.key"
    assert ensure_demo_key(path) == path
    assert path.stat().st_mode & 0o777 == 0o600
    first = load_key()
    assert len(first) == 64 and path.read_text() == first.decode()
    no_key.delenv("LIENTHONG_PATRON_KEY")
    assert ensure_demo_key(path) == path and load_key() == first  # the same key next time: pseudonyms link
    no_key.setenv("LIENTHONG_PATRON_KEY", SECRET)
    assert ensure_demo_key(path) is None and load_key() == SECRET.encode()
