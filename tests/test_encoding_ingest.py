"""Legacy-encoded demo exports (TCVN3 under a blank or lying leader, VNI, Windows-1258, NFD) through the real
ingest into the real warehouse: the titles in core.record are the generator's NFC titles, as from UTF-8."""
from __future__ import annotations

import unicodedata
from dataclasses import replace

import pytest
import sqlalchemy as sa

from lienthong.demo import EXPORT_ENCODINGS, LibrarySpec, export_encoding, generate_province, legacy_text
from lienthong.demo_run import library_specs
from lienthong.ingest import ingest_library
from lienthong.normalise import to_canonical
from lienthong.parse import HEAD_RECORDS, ParsedRecord, read_records
from lienthong.registry import load_registry

SCALE, SEED = 0.25, 7  # as the session's demo province (tests/conftest.py)


@pytest.fixture(scope="module")
def demo_libraries(tmp_path_factory):
    """One registry library per legacy encoding, generated as the demo does and again all in UTF-8.

    Generated here rather than read from the session's drop folders, which other tests may replace. Returns
    ({(encoding, leader09): code}, {code: ground-truth entry}, root, {code: {local_id: expected title}}).
    """
    root = tmp_path_factory.mktemp("legacy")
    chosen: dict[tuple[str, str], str] = {}
    entries: dict[str, dict] = {}
    for spec in library_specs(load_registry()):
        key = export_encoding(spec.code)
        if key[0] == "utf-8" or key in chosen:
            continue
        spec = replace(spec, drop_folder=root / "legacy" / spec.code)
        entry = generate_province([spec], root / "legacy", scale=SCALE, seed=SEED)["libraries"][spec.code]
        if entry["file"].endswith(".mrc"):  # a spreadsheet library's encoding is lienthong.tabular's business
            chosen[key], entries[spec.code] = spec.code, entry
    expected: dict[str, dict[str, str]] = {}
    for code, entry in entries.items():
        spec = next(s for s in library_specs(load_registry()) if s.code == code)
        twin_root = root / "utf8"
        twin = generate_province([replace(spec, drop_folder=twin_root / code)], twin_root, scale=SCALE, seed=SEED,
                                 legacy_encodings=False)["libraries"][code]
        assert twin["encoding"] == "utf-8" and twin["records"] == entry["records"]
        expected[code] = {}
        for parsed in read_records(twin_root / twin["file"]):
            assert isinstance(parsed, ParsedRecord)
            canonical = to_canonical(parsed, code)
            expected[code][canonical.local_id] = legacy_text(canonical.title or "", entry["encoding"])
    return chosen, entries, root / "legacy", expected


def test_every_legacy_encoding_of_the_demo_is_exercised(demo_libraries):
    chosen, entries, root, _ = demo_libraries
    assert set(chosen) == set(EXPORT_ENCODINGS)
    for (encoding, leader09), code in chosen.items():
        assert entries[code]["encoding"] == encoding
        data = (root / entries[code]["file"]).read_bytes()
        assert data[9:10].decode() == leader09, code  # the leader claims what the library's software wrote
        if encoding != "utf-8-nfd":
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")


@pytest.mark.parametrize("encoding", [f"{name}/{leader or 'blank'}" for name, leader in
                                      [(n, l.strip()) for n, l in EXPORT_ENCODINGS]])
def test_legacy_export_lands_as_the_same_nfc_titles(demo_libraries, clean_warehouse, encoding):
    chosen, entries, root, expected = demo_libraries
    name, leader = encoding.split("/")
    code = chosen[(name, " " if leader == "blank" else leader)]
    entry = entries[code]
    result = ingest_library(code, root / entry["file"], engine=clean_warehouse)

    assert result.status == "applied" and result.conserved, result
    assert result.unreadable == 0 and result.read == entry["records"]
    with clean_warehouse.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT local_id, title, encoding, repairs FROM core.record "
            "WHERE library_code = :l AND valid_to IS NULL"), {"l": code}).all()
    assert len(rows) == result.loaded > 0
    titles = {row.local_id: row.title for row in rows}
    assert titles == {local_id: expected[code][local_id] or None for local_id in titles}
    assert all(unicodedata.is_normalized("NFC", title) for title in titles.values() if title)
    assert not any("Hæ" in (title or "") or "\ufffd" in (title or "") for title in titles.values())
    if name == "utf-8-nfd":
        assert {row.encoding for row in rows} == {"utf-8"}
        assert all("nfd→nfc" in row.repairs for row in rows if not row.title.isascii())
    else:
        assert {row.encoding for row in rows} == {name}
        assert sum(f"encoding:{name}" in row.repairs for row in rows) > len(rows) / 2


@pytest.mark.parametrize("encoding", sorted({name for name, _ in EXPORT_ENCODINGS}))
def test_large_legacy_files_decode_record_for_record(tmp_path, encoding):
    """Well past the head the file's encoding is decided from: every record equals its UTF-8 twin's."""
    code = next(code for code in (f"LIB-{k}" for k in range(1000)) if export_encoding(code)[0] == encoding)
    contents = {}
    for legacy in (True, False):
        root = tmp_path / str(legacy)
        spec = LibrarySpec(code=code, type="provincial library", name=code, drop_folder=root / code)
        entry = generate_province([spec], root, scale=1.5, legacy_encodings=legacy)["libraries"][code]
        parsed = list(read_records(root / entry["file"]))
        assert all(isinstance(p, ParsedRecord) for p in parsed)
        contents[legacy] = [to_canonical(p, code) for p in parsed]
    assert len(contents[True]) == len(contents[False]) > 2 * HEAD_RECORDS
    for got, want in zip(contents[True], contents[False]):
        assert got.title == (legacy_text(want.title, encoding) if want.title else None)
        assert got.author == (legacy_text(want.author, encoding) if want.author else None)
        assert got.subjects == [legacy_text(s, encoding) for s in want.subjects]
        if got.title == want.title and got.author == want.author:
            assert got.record_hash == want.record_hash
