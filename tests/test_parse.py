"""lienthong.parse against the public broken fixtures and hand-built files.

The fixtures are broken on purpose (PROVENANCE.md); the reader must never crash, salvage what can be
salvaged and give every other record a reason.
"""
from __future__ import annotations

import collections.abc
import io
import time
import unicodedata
from pathlib import Path

import pymarc
import pytest
from pymarc import Field, Indicators, Subfield

from lienthong import parse
from lienthong.parse import ParsedRecord, ParseError, Unreadable, detect_format, read_records
from lienthong.vietnamese import encode_legacy
from tests.conftest import MARC_PUBLIC

FIXTURES = MARC_PUBLIC
ALL_FIXTURES = sorted(p for p in FIXTURES.rglob("*") if p.suffix in {".mrc", ".marc", ".xml"})
IGNORABLE = b" \t\r\n\x00\x1a\x0b\x0c"

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="public MARC fixtures not available")


def read_all(path, **kwargs) -> list[ParsedRecord | Unreadable]:
    return list(read_records(path, **kwargs))


def split(results):
    parsed = [r for r in results if isinstance(r, ParsedRecord)]
    unreadable = [r for r in results if isinstance(r, Unreadable)]
    return parsed, unreadable


def fixture(name: str) -> Path:
    matches = [p for p in ALL_FIXTURES if p.name == name]
    assert len(matches) == 1, name
    return matches[0]


def make_record(title: str, ident: str = "id1") -> pymarc.Record:
    """A small UTF-8 record; pymarc's as_marc() writes correct ISO 2709 for it."""
    record = pymarc.Record(force_utf8=True)
    record.add_field(Field(tag="001", data=ident))
    record.add_field(Field(tag="245", indicators=Indicators("1", "0"), subfields=[Subfield("a", title)]))
    return record


# --------------------------------------------------------------------------------------------------
# every fixture


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_every_fixture_is_read_and_accounted_for(path: Path):
    results = read_all(path)  # must not raise
    parsed, unreadable = split(results)
    assert [r.index for r in results] == list(range(len(results)))
    for item in parsed:
        assert item.record.fields, item
        assert item.encoding in {"utf-8", "marc-8"}
        assert len(str(item.record.leader)) == 24
    for item in unreadable:
        assert item.reason and len(item.reason) > 10
    raw = path.read_bytes()
    if detect_format(raw[:4096]) == "marc21":
        terminators = raw.count(b"\x1d")
        tail = raw[raw.rfind(b"\x1d") + 1:]
        assert len(results) == terminators + (1 if tail.strip(IGNORABLE) else 0)
        offsets = [r.offset for r in results]
        assert offsets == sorted(offsets) and all(o is not None for o in offsets)
        for item in parsed:  # the offset points at the record's leader, right after a terminator/separator
            assert item.offset == 0 or raw[item.offset - 1] in b"\x1d\r\n\x00"
    else:
        assert all(r.offset is None for r in results)
        assert results, "every XML fixture has at least one record or one reason"


# --------------------------------------------------------------------------------------------------
# fixture-specific expectations (PROVENANCE.md)


def test_line_separated_file_yields_all_twenty():
    parsed, unreadable = split(read_all(fixture("qa-catalogue__000-line-seperated.mrc")))
    assert len(parsed) == 20 and not unreadable
    assert sum("stripped-line-separator" in p.repairs for p in parsed) == 19


def test_hathi_oversize_record_is_salvaged():
    parsed, unreadable = split(read_all(fixture("marc4j__bad_hathi_records.mrc")))
    assert len(parsed) > 3  # pymarc stops after 3
    assert len(parsed) == 5 and not unreadable
    big = parsed[3]
    assert "oversize-record" in big.repairs
    assert len(big.record.fields) > 12000  # every directory entry paired with its field
    holdings = big.record.get_fields("974")
    assert len(holdings) > 12000 and all(f.subfields[0].code == "b" and f["u"] for f in holdings)


def test_oversize_records_with_overflowing_directory_numbers():
    for name in ("marc4j__datos-20161010-slice.mrc", "marc4j__bad_oversize_field_bad_directory.mrc"):
        parsed, unreadable = split(read_all(fixture(name)))
        assert not unreadable, name
        assert any("directory-wide-entries" in p.repairs for p in parsed), name


def test_pride_and_prejudice_with_many_errors():
    results = read_all(fixture("marc4j__pride-and-prejudice-with-many-errors.mrc"))
    parsed, unreadable = split(results)
    assert len(results) == 383
    assert len(parsed) >= 298
    assert sum("bad directory" in u.reason for u in unreadable) == 16
    assert all(u.reason.startswith(f"record {u.index} at byte {u.offset}: ") for u in unreadable)


def test_mislabelled_latin_bytes_are_not_taken_for_marc8():
    """ISO 5426 bytes under a UTF-8 leader would decode as MARC-8 to "g℗en℗erale"; refuse instead."""
    results = read_all(fixture("marc4j__pride-and-prejudice-with-many-errors.mrc"))
    record_290 = results[290]
    assert isinstance(record_290, Unreadable)
    assert "invalid UTF-8 in field 260 $b" in record_290.reason
    texts = " ".join(str(r.record) for r in results if isinstance(r, ParsedRecord))
    assert "℗e" not in texts


def test_music_has_three_records():
    parsed, unreadable = split(read_all(fixture("File_MARC__music.mrc")))
    assert len(parsed) == 3 and not unreadable
    assert "leader09-said-marc8-but-utf8" in parsed[0].repairs


def test_marc8_decodes_like_its_utf8_twin():
    marc8 = read_all(fixture("marc4j__brkrtest.mrc"))
    utf8 = read_all(fixture("marc4j__brkrtest_UTF8.mrc"))
    assert len(marc8) == len(utf8) == 8
    for a, b in zip(marc8, utf8):
        assert a.encoding == "marc-8" and b.encoding == "utf-8"
        titles_a = [unicodedata.normalize("NFC", f.value()) for f in a.record.get_fields("245")]
        titles_b = [unicodedata.normalize("NFC", f.value()) for f in b.record.get_fields("245")]
        assert titles_a == titles_b


def test_leader_says_utf8_but_content_is_marc8():
    [result] = read_all(fixture("ruby-marc__marc8_accented_chars.marc"))
    assert isinstance(result, ParsedRecord)
    assert result.encoding == "marc-8"
    assert "leader09-said-utf8-but-marc8" in result.repairs
    assert result.record["245"]["a"] == 'Histoire du "nouveau théâtre."'


def test_explicit_encoding_override_is_honoured():
    [forced] = read_all(fixture("ruby-marc__marc8_accented_chars.marc"), encoding="marc-8")
    assert forced.encoding == "marc-8" and "leader09-said-utf8-but-marc8" not in forced.repairs
    wrong = read_all(fixture("marc4j__brkrtest.mrc"), encoding="utf-8")
    assert any(isinstance(r, Unreadable) and "invalid UTF-8" in r.reason for r in wrong)
    with pytest.raises(ParseError, match="unsupported encoding 'klingon-8'"):
        read_records(fixture("marc4j__brkrtest.mrc"), encoding="klingon-8")
    latin = read_all(fixture("ruby-marc__marc8_accented_chars.marc"), encoding="latin-1")
    assert latin[0].encoding == "iso8859-1"  # a Python codec from the registry is honoured as said


def test_truncated_last_record():
    parsed, unreadable = split(read_all(fixture("marc4j__008008027.mrc")))
    assert len(parsed) == 18
    assert len(unreadable) == 1 and "truncated" in unreadable[0].reason
    assert unreadable[0].index == 18


def test_invalid_utf8_names_the_field():
    [result] = read_all(fixture("traject__bad_utf_byte.utf8.marc"))
    assert isinstance(result, Unreadable)
    assert "invalid UTF-8 in field 300 $a" in result.reason


def test_foreign_code_page_is_refused_with_a_reason():
    results = read_all(fixture("ruby-marc__cp866_multirecord.marc"))
    assert len(results) == 2
    assert all(isinstance(r, Unreadable) and "subfield delimiter" in r.reason for r in results)


def test_control_field_bad_bytes_are_salvaged():
    [result] = read_all(fixture("openlibrary__collingswood_bad_008.mrc"))
    assert isinstance(result, ParsedRecord)
    assert "control-field-bad-bytes:008" in result.repairs
    assert "\ufffd" in result.record["008"].data


def test_xml_error_keeps_records_before_and_recovers_after():
    results = read_all(fixture("ruby-marc__three-records-second-bad.xml"))
    assert [type(r) for r in results] == [ParsedRecord, Unreadable, ParsedRecord]
    assert results[0].index == 0 and results[0].record["245"]["a"] == "The Texas ranger"
    assert "line 72, column 29" in results[1].reason
    assert "xml-recovered-after-error" in results[2].repairs


def test_xml_structural_defects_stay_with_their_record():
    for name, words in (("marc4j__chabon-missing-controlfield-tag.xml", "controlfield without a tag"),
                        ("marc4j__chabon-missing-datafield-tag.xml", "datafield without a tag"),
                        ("marc4j__chabon-missing-subfield-code.xml", "subfield without a code")):
        [result] = read_all(fixture(name))
        assert isinstance(result, Unreadable) and words in result.reason, name


def test_xml_tags_without_leading_zeros_and_missing_indicators():
    [record] = read_all(fixture("ruby-marc__no-leading-zero.xml"))
    assert record.record.get_fields("042") and "tag-zero-padded" in record.repairs
    [record] = read_all(fixture("marc4j__cruel-cruel-indicatorless-summerland.xml"))
    assert record.record["911"].indicators == Indicators(" ", " ")
    assert "indicators-repaired:911" in record.repairs


def test_xml_with_bom_and_namespaces():
    assert len(split(read_all(fixture("solrmarc__specTestRecs_withBOM.xml")))[0]) == 76
    parsed, _ = split(read_all(fixture("File_MARC__namespace.xml")))
    assert len(parsed) == 2


def test_bad_leader_length_in_xml_is_resized():
    [result] = read_all(fixture("File_MARC__bad_leader.xml"))
    assert "leader-resized" in result.repairs
    assert str(result.record.leader) == "00711cam a2200229   4500"


# --------------------------------------------------------------------------------------------------
# hostile XML


def test_xxe_is_not_resolved(tmp_path):
    path = tmp_path / "xxe.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
        '<collection xmlns="http://www.loc.gov/MARC21/slim"><record><leader>00000nam a2200000 a 4500</leader>'
        '<datafield tag="245" ind1="0" ind2="0"><subfield code="a">A &e; B</subfield></datafield>'
        "</record></collection>")
    results = read_all(path)
    assert results
    for result in results:
        text = result.reason if isinstance(result, Unreadable) else str(result.record)
        assert "root:" not in text
    assert all(isinstance(r, Unreadable) for r in results)
    assert "entities are refused" in results[0].reason


def test_external_dtd_is_not_loaded(tmp_path):
    path = tmp_path / "dtd.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE collection SYSTEM "file:///etc/passwd">\n'
        '<collection><record><leader>00000nam a2200000 a 4500</leader>'
        '<datafield tag="245" ind1="0" ind2="0"><subfield code="a">Safe</subfield></datafield>'
        "</record></collection>")
    [result] = read_all(path)
    assert isinstance(result, ParsedRecord) and result.record["245"]["a"] == "Safe"


def test_billion_laughs_is_not_expanded(tmp_path):
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    path = tmp_path / "lol.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE lolz [{entities}]>\n'
        '<collection><record><leader>00000nam a2200000 a 4500</leader>'
        '<datafield tag="245" ind1="0" ind2="0"><subfield code="a">&lol9;</subfield></datafield>'
        '<datafield tag="246" ind1="0" ind2="0"><subfield code="&lol9;">x</subfield></datafield>'
        "</record></collection>")
    started = time.monotonic()
    results = read_all(path)
    assert time.monotonic() - started < 5
    assert results and all(isinstance(r, Unreadable) for r in results)
    assert all("lollol" not in r.reason for r in results)


def test_xml_record_without_tag_does_not_cost_the_file(tmp_path):
    path = tmp_path / "three.xml"
    record = ('<record><leader>00000nam a2200000 a 4500</leader>'
              '<datafield {tag} ind1="0" ind2="0"><subfield code="a">{title}</subfield></datafield></record>')
    path.write_text('<collection xmlns="http://www.loc.gov/MARC21/slim">' + "".join(
        record.format(tag=tag, title=title) for tag, title in
        (('tag="245"', "One"), ("", "Two"), ('tag="245"', "Three"))) + "</collection>")
    results = read_all(path)
    assert [type(r) for r in results] == [ParsedRecord, Unreadable, ParsedRecord]
    assert results[2].record["245"]["a"] == "Three" and results[2].index == 2


def test_oai_wrapper_record_is_not_a_marc_record(tmp_path):
    path = tmp_path / "oai.xml"
    path.write_text(
        '<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><ListRecords>'
        + "".join(
            f'<record><header><identifier>oai:{i}</identifier></header><metadata>'
            f'<marc:record xmlns:marc="http://www.loc.gov/MARC21/slim">'
            f'<marc:leader>00000nam a2200000 a 4500</marc:leader><marc:controlfield tag="001">{i}</marc:controlfield>'
            f'</marc:record></metadata></record>' for i in range(3))
        + "</ListRecords></OAI-PMH>")
    results = read_all(path)
    assert [r.record["001"].data for r in results] == ["0", "1", "2"]


# --------------------------------------------------------------------------------------------------
# hand-built ISO 2709


def test_offsets_and_indexes_of_a_built_file(tmp_path):
    chunks, expected = [], []
    position = 0
    for i in range(5):
        data = make_record(f"Sách {i}", ident=f"rec{i}").as_marc()
        separator = b"\r\n" if i % 2 else b""
        chunks.append(separator + data)
        expected.append(position + len(separator))
        position += len(separator) + len(data)
    path = tmp_path / "built.mrc"
    path.write_bytes(b"".join(chunks) + b"\n")
    results = read_all(path)
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.offset for r in results] == expected
    assert [r.record["245"]["a"] for r in results] == [f"Sách {i}" for i in range(5)]
    assert all(r.encoding == "utf-8" for r in results)
    assert results[0].repairs == [] and results[1].repairs == ["stripped-line-separator"]


def test_wrong_leader_length_is_framed_on_terminator(tmp_path):
    good = make_record("Toán 10").as_marc()
    lying = b"00999" + good[5:]
    path = tmp_path / "lying.mrc"
    path.write_bytes(lying + make_record("Văn 10").as_marc())
    first, second = read_all(path)
    assert "framed-on-terminator" in first.repairs and first.record["245"]["a"] == "Toán 10"
    assert second.record["245"]["a"] == "Văn 10" and not second.repairs


def test_leader_says_marc8_but_bytes_are_utf8(tmp_path):
    data = bytearray(make_record("Tiếng Việt 6").as_marc())
    data[9:10] = b" "
    path = tmp_path / "mislabelled.mrc"
    path.write_bytes(bytes(data))
    [result] = read_all(path)
    assert result.encoding == "utf-8" and "leader09-said-marc8-but-utf8" in result.repairs
    assert result.record["245"]["a"] == "Tiếng Việt 6"


def test_bad_byte_in_001_does_not_cost_the_record(tmp_path):
    data = make_record("Lịch sử 7", ident="ABC").as_marc().replace(b"ABC", b"A\xffC")
    path = tmp_path / "bad001.mrc"
    path.write_bytes(data)
    [result] = read_all(path)
    assert isinstance(result, ParsedRecord)
    assert result.record["001"].data == "A\ufffdC"
    assert "control-field-bad-bytes:001" in result.repairs


def test_empty_whitespace_and_trailing_garbage(tmp_path):
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    assert read_all(empty) == []
    blank = tmp_path / "blank.mrc"
    blank.write_bytes(b"\r\n \n\x00")
    assert read_all(blank) == []
    padded = tmp_path / "padded.mrc"
    padded.write_bytes(make_record("Một").as_marc() + b"\r\n\x00 \n")
    assert [type(r) for r in read_all(padded)] == [ParsedRecord]
    garbage = tmp_path / "garbage.mrc"
    garbage.write_bytes(make_record("Hai").as_marc() + b"junk!")
    results = read_all(garbage)
    assert [type(r) for r in results] == [ParsedRecord, Unreadable]
    assert "5 bytes after the last record" in results[1].reason


def test_runaway_bytes_without_terminator_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(parse, "MAX_RECORD_BYTES", 1000)
    monkeypatch.setattr(parse, "CHUNK_SIZE", 256)
    path = tmp_path / "runaway.mrc"
    path.write_bytes(make_record("Trước").as_marc() + b"x" * 5000 + b"\x1d" + make_record("Sau").as_marc())
    results = read_all(path)
    assert [type(r) for r in results] == [ParsedRecord, Unreadable, ParsedRecord]
    assert "no record terminator" in results[1].reason
    assert results[2].record["245"]["a"] == "Sau"


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_framing_does_not_depend_on_chunk_size(monkeypatch, chunk):
    names = ("qa-catalogue__000-line-seperated.mrc", "marc4j__008008027.mrc", "File_MARC__music.mrc")
    expected = {n: [(type(r), r.offset, getattr(r, "repairs", None)) for r in read_all(fixture(n))] for n in names}
    monkeypatch.setattr(parse, "CHUNK_SIZE", chunk)
    for name in names:
        got = [(type(r), r.offset, getattr(r, "repairs", None)) for r in read_all(fixture(name))]
        assert got == expected[name], name


def test_bom_before_iso2709(tmp_path):
    path = tmp_path / "bom.mrc"
    path.write_bytes(b"\xef\xbb\xbf" + make_record("Địa lí 8").as_marc())
    [result] = read_all(path)
    assert result.offset == 3 and "stripped-bom" in result.repairs


class CountingReader(io.RawIOBase):
    """A lazily read file that remembers how many bytes were asked of it."""

    def __init__(self, path: Path):
        super().__init__()
        self._file = open(path, "rb")
        self.consumed = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        self.consumed += len(data)
        return len(data)

    def close(self):
        self._file.close()
        super().close()


def test_streaming_large_file(tmp_path, monkeypatch):
    monkeypatch.setattr(parse, "CHUNK_SIZE", 64 * 1024)
    path = tmp_path / "many.mrc"
    with open(path, "wb") as out:
        for i in range(20_000):
            out.write(make_record(f"Truyện {i}", ident=f"{i:06d}").as_marc())
    size = path.stat().st_size
    assert size > 2 * parse.CHUNK_SIZE

    generator = read_records(path)
    assert isinstance(generator, collections.abc.Generator)  # a compiled (Cython) generator is one too

    with CountingReader(path) as source:
        records = read_records(source)
        first = next(records)
        assert first.record["001"].data == "000000"
        assert source.consumed < size / 4  # the file is read as needed, not at once
        rest = sum(1 for _ in records)
    assert rest + 1 == 20_000


# --------------------------------------------------------------------------------------------------
# format detection


def test_detect_format():
    assert detect_format(b"\xef\xbb\xbf  \n<?xml version='1.0'?><collection/>") == "marcxml"
    assert detect_format(b"<record/>") == "marcxml"
    assert detect_format(b"00714cam a2200205 a 4500") == "marc21"
    assert detect_format(b"title,author\nToan,Nguyen\n") == "csv"
    assert detect_format(encode_legacy("STT;Nhan đề;Tác giả\r\n1;Toán;Hà", "tcvn3")) == "csv"
    assert detect_format(b"STT\tNhan de\n1\tToan\n") == "csv"
    assert detect_format("\ufeffSTT\tNhan đề\n".encode("utf-16")) == "csv"
    assert detect_format(b"PK\x03\x04\x14\x00\x06\x00") == "xlsx"
    with pytest.raises(ParseError, match="gzip"):
        detect_format(b"\x1f\x8b\x08\x00")
    with pytest.raises(ParseError, match="unknown format"):
        detect_format(b"just some words without a delimiter\n")


@pytest.mark.parametrize("content, fmt", [(b"a,b\n1,2\n", "csv"), (b"PK\x03\x04rest", "xlsx")])
def test_spreadsheets_are_refused_with_a_pointer_to_tabular(tmp_path, content, fmt):
    path = tmp_path / "export.bin"
    path.write_bytes(content)
    with pytest.raises(ParseError, match=rf"export.bin: .*{fmt.upper()}.*lienthong.tabular"):
        read_records(path)
    with pytest.raises(ParseError, match="lienthong.tabular"):
        read_records(path, format=fmt)


def test_unknown_format_names_the_file(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("title,author\nToán,Nguyễn\n")
    with pytest.raises(ParseError, match="export.csv"):
        read_records(path)


# --------------------------------------------------------------------------------------------------
# file objects and robustness


class NoSeek(io.RawIOBase):
    """A pipe-like stream: readable once, cannot rewind."""

    def __init__(self, data: bytes):
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seekable(self):
        return False


def test_xml_from_file_objects():
    data = fixture("ruby-marc__three-records-second-bad.xml").read_bytes()
    kinds = [type(r) for r in read_records(io.BytesIO(data))]
    assert kinds == [ParsedRecord, Unreadable, ParsedRecord]
    # a file handed over mid-way is rewound to where it started, not to byte 0
    handle = io.BytesIO(b"HEADER" + data)
    handle.read(6)
    assert [type(r) for r in read_records(handle)] == kinds
    # a pipe cannot be re-read for recovery: the records before the error and the reason remain
    assert [type(r) for r in read_records(NoSeek(data))] == [ParsedRecord, Unreadable]


def test_mangled_bytes_never_raise_and_are_all_accounted_for():
    import random

    rng = random.Random(20240901)
    base = fixture("marc4j_065001035.mrc").read_bytes()[:40_000]
    for _ in range(200):
        data = bytearray(base)
        for _ in range(rng.randint(1, 30)):
            at, roll = rng.randrange(len(data)), rng.random()
            if roll < 0.5:
                data[at] = rng.randrange(256)
            elif roll < 0.7:
                data[at:at] = bytes([rng.choice(b"\x1d\x1e\x1f\x1b\n")])
            elif roll < 0.85:
                del data[at:at + rng.randint(1, 50)]
            else:
                data[at:at + 5] = b"99999"
        data = bytes(data)
        results = list(read_records(io.BytesIO(data)))
        tail = data[data.rfind(b"\x1d") + 1:]
        assert len(results) == data.count(b"\x1d") + (1 if tail.strip(IGNORABLE) else 0)
        assert [r.index for r in results] == list(range(len(results)))


def _fields(record) -> list:
    return [(f.tag, f.data) if f.is_control_field() else (f.tag, tuple(f.indicators), [tuple(s) for s in f.subfields])
            for f in record.fields]


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "fixtures" / "marc-public").glob("*/*.m*rc")),
                         ids=lambda p: p.name)
def test_fast_path_reads_what_the_careful_path_reads(path):
    """Every record that rmarc decodes comes out as the repairing decoder reads it: leader, fields, repairs; and
    so does the LightRecord the ingest reads."""
    from lienthong import parse

    for _, framed, file_encoding in parse._iso2709_frames(parse._Source(path), None):
        if framed.data is None:
            continue
        declared = file_encoding is None
        fast = parse._clean_utf8_record(framed.data, declared=declared)
        if fast is None and file_encoding == "utf-8":
            declared = False
            fast = parse._clean_utf8_record(framed.data, declared=declared)
        if fast is None:
            continue
        careful, used, repairs = parse._decode_iso_record(framed.data, file_encoding, fast=False)
        assert (used, repairs) == ("utf-8", [])
        assert str(fast.leader) == str(careful.leader)
        assert _fields(fast) == _fields(careful)
        light = parse._clean_utf8_record(framed.data, declared=declared, light=True)
        assert light.leader == str(careful.leader)
        assert _light_fields(light) == _fields(careful)
        for field, expected in zip(light.fields, careful.fields):
            if not field.is_control_field():
                assert field.get_subfields("a", "b", "p") == expected.get_subfields("a", "b", "p")


def _light_fields(record) -> list:
    return [(f.tag, f.data) if f.is_control_field() else (f.tag, (f.indicator1, f.indicator2), f.subfields)
            for f in record.fields]


def test_fast_path_takes_the_common_record():
    from lienthong import parse
    from tests.marc_builders import book

    raw = book("R1", "Toán 10").as_marc()
    assert parse._clean_utf8_record(raw, declared=True) is not None
    nfd = book("R1", unicodedata.normalize("NFD", "Toán 10")).as_marc()
    assert parse._clean_utf8_record(nfd, declared=True) is None  # NFD: the careful path repairs it
