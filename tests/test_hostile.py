"""Hostile input: each refused or neutralised with a clear message, nothing read from or written to where it
should not be. Real files, a real loopback HTTP server (to see whether a DTD is fetched), the real warehouse.
"""
from __future__ import annotations

import http.server
import json
import threading
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lienthong import config, landing
from lienthong.parse import ParsedRecord, ParseError, Unreadable, read_records
from tests.marc_builders import book, write_marc

MARCXML_HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n'
RECORD_XML = (b'<record><leader>00000nam a2200000 a 4500</leader><controlfield tag="001">%s</controlfield>'
              b'<datafield tag="245" ind1="1" ind2="0"><subfield code="a">%s</subfield></datafield></record>')


def _collection(doctype: bytes, *records: bytes) -> bytes:
    return (MARCXML_HEAD + doctype + b'\n<collection xmlns="http://www.loc.gov/MARC21/slim">'
            + b"".join(records) + b"</collection>\n")


@pytest.fixture
def dtd_server():
    """A loopback HTTP server that serves an evil DTD and counts the requests it gets."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = b'<!ENTITY leak SYSTEM "file:///etc/hostname">'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_xml_external_entity_is_refused_and_nothing_is_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("BÍ-MẬT-KHÔNG-ĐƯỢC-ĐỌC", encoding="utf-8")
    path = tmp_path / "xxe.xml"
    path.write_bytes(_collection(
        b'<!DOCTYPE collection [<!ENTITY xxe SYSTEM "file://' + str(secret).encode() + b'">]>',
        RECORD_XML % (b"x1", b"&xxe;")))
    entries = list(read_records(path))
    assert entries and all(isinstance(e, Unreadable) for e in entries)
    assert "entities are refused" in entries[0].reason and "xxe" in entries[0].reason and "xxe.xml" in entries[0].reason
    assert "BÍ-MẬT" not in repr(entries)


def test_external_dtd_and_parameter_entities_are_never_fetched(tmp_path, dtd_server):
    url, hits = dtd_server
    cases = {
        "system-dtd.xml": _collection(f'<!DOCTYPE collection SYSTEM "{url}/evil.dtd">'.encode(),
                                      RECORD_XML % (b"d1", b"&leak;")),
        "parameter.xml": _collection(f'<!DOCTYPE collection [<!ENTITY % ext SYSTEM "{url}/p.dtd"> %ext;]>'.encode(),
                                     RECORD_XML % (b"d2", b"&leak;")),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        entries = list(read_records(path))
        assert entries, name
        assert not any(isinstance(e, ParsedRecord) and "leak" in str(e.record) for e in entries)
        reasons = " ".join(e.reason for e in entries if isinstance(e, Unreadable))
        assert "entit" in reasons and "refused" in reasons, (name, reasons)
    assert hits == []  # the parser never went to the network


def test_billion_laughs_is_refused_without_expanding(tmp_path):
    lol = [b'<!ENTITY lol0 "lol">'] + [
        b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(10))) for i in range(1, 10)]
    path = tmp_path / "laughs.xml"
    path.write_bytes(_collection(b"<!DOCTYPE collection [" + b"".join(lol) + b"]>",
                                 RECORD_XML % (b"l1", b"&lol9;"), RECORD_XML % (b"l2", b"Sau")))
    entries = list(read_records(path))
    assert entries and isinstance(entries[0], Unreadable)
    assert "entities are refused" in entries[0].reason and "lol" in entries[0].reason
    assert all(len(str(e.record)) < 10_000 for e in entries if isinstance(e, ParsedRecord))


def test_huge_field_in_iso2709_is_unreadable_and_later_records_survive(tmp_path):
    good_before, good_after = book("H-1"), book("H-3")
    huge = book("H-2", title="A" * 150_000)  # the leader cannot state a length over 99999
    path = write_marc(tmp_path / "huge.mrc", [good_before, huge, good_after])
    entries = list(read_records(path))
    ids = [e.record["001"].data for e in entries if isinstance(e, ParsedRecord)]
    assert "H-1" in ids and "H-3" in ids
    assert len(entries) == 3
    bad = [e for e in entries if not (isinstance(e, ParsedRecord) and e.record["001"].data in ("H-1", "H-3"))]
    assert len(bad) == 1
    if isinstance(bad[0], Unreadable):
        assert bad[0].index == 1 and bad[0].reason


def test_endless_line_without_record_terminator_is_skipped_bounded(tmp_path):
    path = tmp_path / "endless.mrc"
    good = write_marc(tmp_path / "g.mrc", [book("E-1")]).read_bytes()
    with open(path, "wb") as handle:
        handle.write(good)
        handle.write(b"9" * (17 << 20))  # 17 MiB without 0x1D: over the framer's 16 MiB bound
        handle.write(b"\x1d")
        handle.write(write_marc(tmp_path / "g2.mrc", [book("E-2")]).read_bytes())
    entries = list(read_records(path))
    ids = [e.record["001"].data for e in entries if isinstance(e, ParsedRecord)]
    assert ids == ["E-1", "E-2"]
    unreadable = [e for e in entries if isinstance(e, Unreadable)]
    assert len(unreadable) == 1 and unreadable[0].reason


def test_hostile_source_names_stay_inside_the_landing_store(clean_warehouse, tmp_path):
    names = ["..\\..\\evil.mrc", "tệp\nmới\x00.mrc".replace("\x00", ""), "$(rm -rf ~);'.mrc", "\u202eexe.mrc"]
    root = config.landing_root()
    for index, name in enumerate(names):
        folder = tmp_path / f"d{index}"
        folder.mkdir()
        path = folder / name
        write_marc(path, [book(f"N-{index}")])
        delivery = landing.land(clean_warehouse, "THPT-LUONGSON", path, "local:test")
        assert delivery.stored_path.resolve().parent.parent == root.resolve()
        assert delivery.stored_path.name == delivery.sha256
        assert "/" not in delivery.original_name and "\\" not in delivery.original_name
        assert not any(ch in delivery.original_name for ch in "\n\r\x00\u202e")
    assert landing.clean_name("../../etc/passwd") == "passwd"
    assert landing.clean_name("..\\..\\boot.ini") == "boot.ini"
    assert landing.clean_name("\x1b[31m") == "[31m"
    assert landing.clean_name("\n\t") == "unnamed"


def test_drop_folder_outside_the_drop_root_is_refused(state_dir):
    from lienthong.sources import SourceError, drop_folder

    for location in ("../../etc", "/etc", "a/../../b"):
        with pytest.raises(SourceError, match="outside the drop root"):
            drop_folder("THPT-LUONGSON", location)


def test_unknown_library_code_with_path_characters_is_a_clear_error(clean_warehouse):
    from lienthong.ingest import IngestError, ingest_library

    with pytest.raises(IngestError, match="not in the registry"):
        ingest_library("../../etc/passwd")


def test_sql_metacharacters_in_registry_values_are_data(warehouse_engine, tmp_path, capsys):
    from lienthong import dimensions
    from lienthong.cli import main
    from lienthong.registry import load_registry

    hostile = "Trường'); DROP TABLE core.record; -- \"x\" \\ $$ ;"
    source = Path(load_registry().path)
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["libraries"][0]["name"] = hostile
    code = data["libraries"][0]["code"]
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    registry = load_registry(path)
    assert registry.libraries[code].name == hostile
    try:
        dimensions.load_registry_dimensions(warehouse_engine, registry)
        with warehouse_engine.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('core.record') IS NOT NULL")).scalar_one()
            stored = conn.execute(sa.text("SELECT name FROM core.library WHERE library_code = :c"),
                                  {"c": code}).scalar_one()
            via_mart = conn.execute(sa.text("SELECT library_name FROM marts.library_holdings WHERE library_code = :c"),
                                    {"c": code}).scalar_one()
        assert stored == hostile == via_mart
        assert main(["registry", "show", "--file", str(path), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert hostile in [lib["name"] for lib in shown["libraries"]]
    finally:
        dimensions.load_registry_dimensions(warehouse_engine, load_registry(source))
    with warehouse_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM core.library WHERE library_code = :c"),
                            {"c": code}).scalar_one() != hostile


def test_xlsx_zip_bomb_is_refused_before_inflating(tmp_path):
    from lienthong.tabular import read_table

    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as member:
            block = b"0" * (1 << 20)
            for _ in range(600):  # 600 MiB of zeros, a few hundred KiB compressed
                member.write(block)
    assert path.stat().st_size < 5 << 20
    with pytest.raises(ParseError, match="ZIP bomb") as info:
        read_table(path)
    assert "bomb.xlsx" in str(info.value)


def test_csv_huge_field_and_line_are_refused_with_the_file_named(tmp_path):
    from lienthong.tabular import read_table

    line = tmp_path / "longline.csv"
    line.write_bytes(b"Nhan de,DKCB\n" + b"A" * (2 << 20) + b",STK.1\n")
    field = tmp_path / "bigfield.csv"
    field.write_bytes(b'Nhan de,DKCB\n"' + b"B\n" * 100_000 + b'",STK.2\n')
    for path in (line, field):
        with pytest.raises(ParseError) as info:
            table = read_table(path, expected_headers=["Nhan de", "DKCB"])
            for _ in table.rows:
                pass
        assert path.name in str(info.value)
