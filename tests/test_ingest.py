"""One library end to end against the real warehouse: snapshots, history, quarantine, holds, re-runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from lienthong.ingest import ingest_library
from lienthong.registry import load_registry
from tests.conftest import with_packaged_registry
from tests.marc_builders import book as marc_book
from tests.marc_builders import write_marc

LIBRARY = "THPT-LUONGSON"


@pytest.fixture
def clean_warehouse(clean_warehouse):
    """The conftest fixture, with the packaged registry's dimensions reloaded (see conftest)."""
    return with_packaged_registry(clean_warehouse)


def book(local_id: str, *args, **kwargs):
    """A test record whose copy has its own ĐKCB (the builder's default ĐKCB is shared, a duplicate)."""
    kwargs.setdefault("items", ((f"STK.{local_id}", "510 T406"),))
    return marc_book(local_id, *args, **kwargs)


@pytest.fixture
def library_code(clean_warehouse):
    registry = load_registry()
    assert LIBRARY in registry.libraries, "the registry must hold the Lương Sơn lead school"
    return LIBRARY


def _current(engine, code):
    with engine.connect() as conn:
        return {row.local_id: row for row in conn.execute(sa.text(
            "SELECT local_id, record_id, record_hash, title, is_complete, has_warnings FROM core.record "
            "WHERE library_code = :l AND valid_to IS NULL"), {"l": code})}


def test_snapshot_is_loaded_with_conservation(library_code, clean_warehouse, tmp_path):
    records = [book(f"R{i}", f"Sách số {i}", items=((f"STK.{i:06d}", "510 T406"),)) for i in range(10)]
    records.append(book("R-notitle", None))                       # error: quarantined
    records.append(book("R-nokw", "Ngữ văn 11", keywords=()))    # warning: loaded, incomplete
    result = ingest_library(library_code, write_marc(tmp_path / "export.mrc", records))

    assert result.status == "applied"
    assert (result.read, result.loaded, result.quarantined, result.unreadable) == (12, 11, 1, 0)
    assert result.conserved
    assert result.quarantine_reasons == {"missing_title": 1}
    current = _current(clean_warehouse, library_code)
    assert set(current) == {f"R{i}" for i in range(10)} | {"R-nokw"}
    assert current["R-nokw"].has_warnings and not current["R-nokw"].is_complete
    assert current["R1"].is_complete and current["R1"].title == "Sách số 1"
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM core.item")).scalar_one() == 11
        quarantined = conn.execute(sa.text("SELECT local_id, reasons FROM quality.quarantine")).all()
        assert [(q.local_id, q.reasons) for q in quarantined] == [("R-notitle", ["missing_title"])]
        staged = conn.execute(sa.text("SELECT count(*) FROM staging.record")).scalar_one()
        assert staged == 0


def test_reingesting_the_same_file_changes_nothing(library_code, clean_warehouse, tmp_path):
    path = write_marc(tmp_path / "export.mrc", [book(f"R{i}") for i in range(5)])
    first = ingest_library(library_code, path)
    tables = ("core.batch", "core.record", "core.item", "landing.delivery", "quality.check_failure")

    def counts():
        with clean_warehouse.connect() as conn:
            return [conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables]

    before = counts()
    second = ingest_library(library_code, path)
    assert second.status == "unchanged"
    assert (second.read, second.loaded) == (first.read, first.loaded)
    after = counts()
    assert after[0] == before[0] + 1  # the re-delivery is recorded as a receipt …
    assert after[1:] == before[1:]  # … and nothing else changes
    with clean_warehouse.connect() as conn:
        receipt = conn.execute(sa.text("SELECT status, same_as_batch FROM core.batch WHERE batch_id = :b"),
                               {"b": second.batch_id}).one()
        newest = conn.execute(sa.text("SELECT batch_id FROM marts.library_last_batch WHERE library_code = :l"),
                              {"l": library_code}).scalar_one()
    assert tuple(receipt) == ("unchanged", first.batch_id)
    assert newest == first.batch_id


def test_changes_keep_history(library_code, clean_warehouse, tmp_path):
    v1 = [book("A", "Toán 10"), book("B", "Vật lí 10"), book("C", "Hóa học 10")]
    ingest_library(library_code, write_marc(tmp_path / "v1.mrc", v1))
    with clean_warehouse.connect() as conn:
        between = conn.execute(sa.text("SELECT now()")).scalar_one()
    time.sleep(0.05)
    v2 = [book("A", "Toán 10"), book("B", "Vật lí 10 (tái bản)"), book("D", "Sinh học 10")]
    result = ingest_library(library_code, write_marc(tmp_path / "v2.mrc", v2))
    assert result.status == "applied"
    assert (result.records_inserted, result.records_closed) == (2, 2)  # B changed, C gone, D new

    current = _current(clean_warehouse, library_code)
    assert {k: v.title for k, v in current.items()} == {"A": "Toán 10", "B": "Vật lí 10 (tái bản)",
                                                        "D": "Sinh học 10"}
    with clean_warehouse.connect() as conn:
        as_of = conn.execute(sa.text(
            """SELECT local_id, title FROM core.record WHERE library_code = :l AND valid_from <= :t
               AND (valid_to IS NULL OR valid_to > :t) ORDER BY local_id"""), {"l": library_code, "t": between}).all()
    assert [tuple(r) for r in as_of] == [("A", "Toán 10"), ("B", "Vật lí 10"), ("C", "Hóa học 10")]


def test_quarantined_record_keeps_its_last_good_version(library_code, clean_warehouse, tmp_path):
    ingest_library(library_code, write_marc(tmp_path / "v1.mrc", [book("A", "Toán 10"), book("B", "Tin học 10")]))
    result = ingest_library(library_code, write_marc(tmp_path / "v2.mrc", [book("A", None), book("B", "Tin học 10")]))
    assert (result.loaded, result.quarantined) == (1, 1)
    current = _current(clean_warehouse, library_code)
    assert current["A"].title == "Toán 10"


def test_far_smaller_export_is_held(library_code, clean_warehouse, tmp_path):
    ingest_library(library_code, write_marc(tmp_path / "full.mrc", [book(f"R{i}") for i in range(10)]))
    before = _current(clean_warehouse, library_code)
    result = ingest_library(library_code, write_marc(tmp_path / "small.mrc", [book("R1")]))
    assert result.status == "held"
    assert "keeps its last good data" in result.message
    assert _current(clean_warehouse, library_code) == before
    empty = ingest_library(library_code, write_marc(tmp_path / "empty.mrc", []))
    assert empty.status == "held" and empty.read == 0


def test_duplicate_control_numbers_are_quarantined(library_code, clean_warehouse, tmp_path):
    result = ingest_library(library_code, write_marc(tmp_path / "dup.mrc", [book("A"), book("A", "Khác", items=(("STK.A2", "510 T406"),))]))
    assert (result.loaded, result.quarantined) == (1, 1)
    assert result.quarantine_reasons == {"duplicate_local_id": 1}


def test_not_an_export_fails_clearly_and_keeps_data(library_code, clean_warehouse, tmp_path):
    ingest_library(library_code, write_marc(tmp_path / "good.mrc", [book("A")]))
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"\x00\x01 this is not MARC at all")
    result = ingest_library(library_code, junk)
    assert result.status in {"failed", "held"}
    assert result.conserved
    assert set(_current(clean_warehouse, library_code)) == {"A"}


def test_unknown_library_is_a_clear_error(clean_warehouse, tmp_path):
    from lienthong.ingest import IngestError

    with pytest.raises(IngestError, match="NO-SUCH-LIB"):
        ingest_library("NO-SUCH-LIB", write_marc(tmp_path / "x.mrc", [book("A")]))


def test_cli_ingest_json(library_code, clean_warehouse, tmp_path):
    path = write_marc(tmp_path / "cli.mrc", [book("A"), book("B", None)])
    out = subprocess.run([sys.executable, "-m", "lienthong.cli", "ingest", "--library", library_code,
                          "--file", str(path), "--json"], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {k: data[k] for k in ("read", "loaded", "quarantined", "unreadable")} == {
        "read": 2, "loaded": 1, "quarantined": 1, "unreadable": 0}
    assert data["quarantine_reasons"] == {"missing_title": 1}


def test_copy_text_arrays_round_trip(clean_warehouse):
    """Staged lists and quarantine reasons go in by COPY as text[] literals: quotes, commas, braces, NULL and tabs
    stay text, and an empty list stays empty."""
    from lienthong import load

    values = ['a,b', '"q"', "NULL", "back\\slash", "{}", "tab\there", "dòng\nmới", ""]
    plain = ["a,b", "NULL", "{}", "Tiếng Việt", ""]  # no quote or backslash: joined without escaping
    with clean_warehouse.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE arrays (v text[])"))
        load._copy(conn.connection.dbapi_connection, "arrays", ("v",), [(load._text_array(values),),
                                                                      (load._text_array([]),),
                                                                      (load._text_array(plain),)])
        assert [row.v for row in conn.execute(sa.text("SELECT v FROM arrays"))] == [values, [], plain]


def test_copy_lines_keep_text_that_looks_like_null_or_escapes(clean_warehouse):
    """A value "\\N" is text, not NULL; tabs, line breaks and backslashes survive COPY as they were."""
    from lienthong import load

    rows = [("\\N", None, "a\tb"), ("x", "c:\\dir", "dòng\r\nmới"), (None, "", "plain"), ("t", True, 7)]
    with clean_warehouse.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE copied (a text, b text, c text) ON COMMIT DROP"))
        assert load._copy(conn.connection.dbapi_connection, "copied", ("a", "b", "c"), rows) == len(rows)
        back = conn.execute(sa.text("SELECT a, b, c FROM copied")).all()
    assert [tuple(r) for r in back] == [("\\N", None, "a\tb"), ("x", "c:\\dir", "dòng\r\nmới"), (None, "", "plain"),
                                        ("t", "t", "7")]


def test_chunk_rows_are_joined_as_they_are_and_escaped_only_when_a_value_needs_it(clean_warehouse):
    """load._text_rows joins a chunk without escaping, checks it once, and falls back to escaping value by value
    for a chunk holding a tab, a line break, a backslash, "\\N", a carriage return or a number."""
    from lienthong import load

    plain = [("a", None, "Tiếng Việt"), (None, "", "x")]
    awkward = [("\\N", None, "a\tb"), ("x", "c:\\dir", "dòng\r\nmới"), ("nul\x00", "ok", None)]
    assert load._text_rows(lambda: iter(plain), 3) == load._copy_text(plain) == "a\t\\N\tTiếng Việt\n\\N\t\tx\n"
    for rows in (awkward, [("1", 2, None)], plain + awkward):
        assert load._text_rows(lambda rows=rows: iter(rows), 3) == load._copy_text(rows)
    assert load._text_rows(lambda: iter([]), 3) == ""
    with clean_warehouse.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE chunk_copied (a text, b text, c text) ON COMMIT DROP"))
        load._copy_text_into(conn.connection.dbapi_connection, "chunk_copied", ("a", "b", "c"),
                             load._text_rows(lambda: iter(plain + awkward), 3))
        back = [tuple(r) for r in conn.execute(sa.text("SELECT a, b, c FROM chunk_copied"))]
    assert back == plain + [("\\N", None, "a\tb"), ("x", "c:\\dir", "dòng\r\nmới"), ("nul\ufffd", "ok", None)]


def test_core_rows_put_every_item_field_in_its_column():
    from lienthong import load
    from lienthong.model import CanonicalRecord, Item

    item = Item(**{name: f"{name}-value" for name in Item.__struct_fields__})
    record = CanonicalRecord(library_code="TV-X", local_id="r1", record_index=4, title="Sách", quantity=3,
                             keywords=["toán", 'có "ngoặc"'], items=[Item(accession_number="A1"), item])
    rows = load.core_rows(9, "TV-X", "2026-11-26T00:00:00+00:00", [71], [record], {4: (True, False)})
    first, second = [dict(zip(load.CORE_ITEM_COLUMNS, line.split("\t"))) for line in rows.items.splitlines()]
    assert first["accession_number"] == "A1" and first["barcode"] == "\\N" and first["item_seq"] == "0"
    assert {name: second[name] for name in Item.__struct_fields__} == {
        name: f"{name}-value" for name in Item.__struct_fields__}
    assert (second["record_id"], second["library_code"], second["item_seq"]) == ("71", "TV-X", "1")
    line = dict(zip(load.CORE_RECORD_COLUMNS, rows.records.rstrip("\n").split("\t")))
    assert (line["record_id"], line["quantity"], line["has_warnings"], line["is_complete"]) == ("71", "3", "t", "f")
    assert line["keywords"] == '{"toán","có \\\\"ngoặc\\\\""}'  # the literal's backslashes doubled for COPY
    staged = dict(zip(load.RECORD_COLUMNS, load.staging_rows(9, [record], {4: (False, True)}).records.split("\t")))
    assert (staged["batch_id"], staged["record_index"], staged["byte_offset"]) == ("9", "4", "\\N")


def _current_content(engine, code) -> set:
    """Current records and their copies, without ids or batches: what two ways of loading must agree on."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            """SELECT r.local_id, r.record_hash, r.title, r.keywords, r.is_complete, r.has_warnings,
                      array_agg(i.item_seq || ':' || coalesce(i.accession_number, '') ORDER BY i.item_seq) AS items
               FROM core.record r LEFT JOIN core.item i USING (record_id)
               WHERE r.library_code = :l AND r.valid_to IS NULL
               GROUP BY r.record_id"""), {"l": code}).all()
    return {tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in rows}


def _first_load_export(tmp_path):
    records = [book(f"R{i}", f"Sách số {i}", items=((f"STK.{i:06d}", "510 T406"), (f"STK.{i:06d}b", "510 T406")))
               for i in range(9)]
    records.insert(3, book("R-notitle", None))                                     # quarantined
    records.insert(6, book("R2", "Trùng số 001", items=(("STK.DUP", "510 T406"),)))  # duplicate 001: quarantined
    return write_marc(tmp_path / "first.mrc", records)


def test_a_first_snapshot_goes_in_chunk_by_chunk_with_the_same_result(library_code, clean_warehouse, tmp_path):
    """A library with no current record gets each chunk inserted while the next is read; core ends exactly as
    when the whole snapshot is applied at the end (a library that already had a record)."""
    from tests.conftest import empty_warehouse

    path = _first_load_export(tmp_path)
    first = ingest_library(library_code, path, chunk_size=2)
    assert first.status == "applied" and first.conserved
    assert (first.loaded, first.quarantined, first.records_inserted, first.items) == (9, 2, 9, 18)
    chunked = _current_content(clean_warehouse, library_code)
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM core.record WHERE loaded_by_batch <> :b"),
                            {"b": first.batch_id}).scalar_one() == 0

    empty_warehouse(clean_warehouse)
    with_packaged_registry(clean_warehouse)
    ingest_library(library_code, write_marc(tmp_path / "seed.mrc", [book("SEED", "Một biểu ghi cũ")]))
    later = ingest_library(library_code, path, chunk_size=2)
    assert (later.status, later.records_inserted, later.records_closed) == ("applied", 9, 1)
    assert _current_content(clean_warehouse, library_code) == chunked


def _copy_fails_at(monkeypatch, n: int, message: str, copy: str = "stage_records") -> dict:
    """Make the n-th chunk COPY of the test (``load.<copy>``: into staging, or a first snapshot's into core) raise
    RuntimeError(message); returns the call count."""
    from lienthong import load

    calls = {"n": 0}
    stage = getattr(load, copy)

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError(message)
        return stage(*args, **kwargs)

    monkeypatch.setattr(load, copy, failing)
    return calls


def test_a_first_snapshot_that_fails_mid_run_leaves_core_empty(library_code, clean_warehouse, tmp_path,
                                                               monkeypatch):
    """Chunks already COPYed into core are rolled back with the run: nothing of a failed first load is visible."""
    from lienthong.ingest import IngestError

    _copy_fails_at(monkeypatch, 3, "disk full while loading", copy="copy_core_rows")
    with pytest.raises(IngestError, match="disk full while loading"):
        ingest_library(library_code, _first_load_export(tmp_path), chunk_size=2)
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM core.record")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT status FROM core.batch")).scalar_one() == "failed"


def test_a_staging_copy_that_fails_in_the_background_fails_the_run_and_keeps_the_last_good_data(
        library_code, clean_warehouse, tmp_path, monkeypatch):
    """Staging COPYs run on their own thread (load.Stager) while the next chunk is validated: the first one
    that fails still fails the run, nothing of it is applied, and staging is left empty."""
    from lienthong.ingest import IngestError

    good = ingest_library(library_code, write_marc(tmp_path / "good.mrc", [book("SEED", "Một biểu ghi cũ")]))
    before = _current_content(clean_warehouse, library_code)
    calls = _copy_fails_at(monkeypatch, 2, "connection reset while staging")
    with pytest.raises(IngestError, match="connection reset while staging"):
        ingest_library(library_code, _first_load_export(tmp_path), chunk_size=2)
    assert calls["n"] >= 2
    assert _current_content(clean_warehouse, library_code) == before
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM staging.record")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM staging.item")).scalar_one() == 0
        statuses = conn.execute(sa.text("SELECT batch_id, status FROM core.batch ORDER BY batch_id")).all()
    assert [status for _, status in statuses] == ["applied", "failed"] and statuses[0][0] == good.batch_id


def test_a_held_first_snapshot_is_rolled_back_but_its_checks_are_kept(library_code, clean_warehouse, tmp_path,
                                                                    monkeypatch):
    from lienthong import ingest

    check = ingest.validate_export

    def count_too_low(*args, **kwargs):
        checks, result = check(*args, **kwargs)
        for c in checks:
            if c.rule == "record_count_drop":
                c.success = False
        return checks, result

    monkeypatch.setattr(ingest, "validate_export", count_too_low)
    held = ingest_library(library_code, _first_load_export(tmp_path), chunk_size=2)
    assert held.status == "held" and held.records_inserted == 0
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM core.record")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM core.item")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT status FROM core.batch")).scalar_one() == "held"
        assert conn.execute(sa.text("SELECT count(*) FROM quality.batch_check WHERE NOT success")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM staging.record")).scalar_one() == 0


def test_chunks_shrink_toward_the_end_of_a_large_file_and_keep_every_entry():
    """With the file's size, chunks halve once less than a chunk is left (estimated from byte offsets), down to
    an eighth of the chunk size; without it they all have the chunk size. Nothing is lost or reordered."""
    from lienthong.ingest import TAIL_CHUNK_DIVISOR, _chunks
    from lienthong.model import CanonicalRecord
    from lienthong.parse import Unreadable

    size, record_bytes, count = 800, 1000, 4000
    entries = [Unreadable(i, i * record_bytes, "bad") if i % 97 == 0 else
               CanonicalRecord(library_code="X", local_id=str(i), record_index=i, byte_offset=i * record_bytes)
               for i in range(count)]
    shaped = list(_chunks(iter(entries), size, file_size=count * record_bytes))
    assert [len(chunk) for chunk in shaped] == [800, 800, 800, 800, 400, 200, 100, 100]
    assert min(len(chunk) for chunk in shaped) == size // TAIL_CHUNK_DIVISOR
    assert [entry for chunk in shaped for entry in chunk] == entries
    assert [len(chunk) for chunk in _chunks(iter(entries), size)] == [800] * 5
