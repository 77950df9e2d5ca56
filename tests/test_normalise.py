"""lienthong.normalise: pymarc records (built in code, Vietnamese school data) → CanonicalRecord."""
from __future__ import annotations

import unicodedata

import msgspec
import pymarc
import pytest
from pymarc import Field, Indicators, Subfield

from lienthong.model import CanonicalRecord, Item
from lienthong.normalise import to_canonical
from lienthong.parse import ParsedRecord, read_records
from tests.conftest import MARC_PUBLIC

FIXTURES = MARC_PUBLIC


def field(tag: str, *pairs: str, ind: str = "  ") -> Field:
    codes = pairs[0::2]
    values = pairs[1::2]
    return Field(tag=tag, indicators=Indicators(ind[0], ind[1]),
                 subfields=[Subfield(code, value) for code, value in zip(codes, values)])


def school_record(*extra: Field, title: str = "Toán 10 /",
                  control_001: str | None = " SGK-2019-001 ") -> pymarc.Record:
    record = pymarc.Record(force_utf8=True)
    if control_001 is not None:
        record.add_field(Field(tag="001", data=control_001))
    record.add_field(Field(tag="008", data="190715s2019    vm            000 0 vie d"))
    record.add_field(field("020", "a", "978-604-0-12345-6 (bìa mềm) :", "c", "15000đ"))
    record.add_field(field("082", "a", "510", "b", "T406", ind="04"))
    record.add_field(field("100", "a", "Nguyễn, Nhật Ánh,", ind="1 "))
    record.add_field(field("245", "a", title, "c", "Nguyễn Nhật Ánh", ind="10"))
    record.add_field(field("260", "a", "H. :", "b", "Nxb. Giáo dục Việt Nam,", "c", "2019."))
    record.add_field(field("650", "a", "Toán học.", ind=" 7"))
    record.add_field(field("653", "a", "Sách giáo khoa"))
    record.add_field(field("653", "a", "Sách giáo khoa"))
    record.add_field(field("952", "a", "THPT-HB", "b", "THPT-HB", "c", "KHO-SGK", "8", "SGK", "o", "510 T406",
                           "p", "STK.000123", "y", "SGK", "1", "0", "0", "0", "4", "0"))
    for extra_field in extra:
        record.add_field(extra_field)
    return record


def parsed(record: pymarc.Record, index: int = 0, offset: int | None = 0, repairs=None) -> ParsedRecord:
    return ParsedRecord(index=index, offset=offset, record=record, encoding="utf-8", repairs=list(repairs or []))


def test_vietnamese_school_record():
    canonical = to_canonical(parsed(school_record(), index=4, offset=1234), "THPT-HB")
    assert isinstance(canonical, CanonicalRecord)
    assert canonical.library_code == "THPT-HB"
    assert canonical.local_id == "SGK-2019-001"
    assert (canonical.record_index, canonical.byte_offset) == (4, 1234)
    assert canonical.title == "Toán 10"
    assert canonical.author == "Nguyễn, Nhật Ánh"
    assert canonical.pub_place == "H."  # the abbreviation of Hà Nội keeps its period
    assert canonical.publisher == "Nxb. Giáo dục Việt Nam"
    assert canonical.pub_year == "2019"
    assert canonical.isbns == ["9786040123456"]
    assert canonical.language == "vie"
    assert canonical.keywords == ["Sách giáo khoa"]
    assert canonical.subjects == ["Toán học"]
    assert canonical.call_number == "510 T406"
    assert canonical.quantity is None
    assert canonical.encoding == "utf-8"
    assert canonical.items == [Item(accession_number="STK.000123", call_number="510 T406", barcode="STK.000123",
                                    collection="SGK", item_type="SGK", location="THPT-HB / KHO-SGK", status=None)]
    assert len(canonical.record_hash) == 64


def test_nfd_input_becomes_nfc_with_a_repair():
    nfd_title = unicodedata.normalize("NFD", "Tiếng Việt 1 /")
    assert nfd_title != unicodedata.normalize("NFC", nfd_title)
    canonical = to_canonical(parsed(school_record(title=nfd_title), repairs=["framed-on-terminator"]), "THPT-HB")
    assert canonical.title == "Tiếng Việt 1"
    assert unicodedata.is_normalized("NFC", canonical.title)
    assert canonical.repairs == ["framed-on-terminator", "nfd→nfc"]
    assert "nfd→nfc" not in to_canonical(parsed(school_record()), "THPT-HB").repairs


def test_new_tone_placement_becomes_the_traditional_one_with_a_repair():
    record = school_record(field("653", "a", "Sức khoẻ học đường"), field("650", "a", "Hoà Bình (tỉnh)", ind=" 7"),
                           title="Thuỷ tinh và hoá học /")
    canonical = to_canonical(parsed(record), "THPT-HB")
    assert canonical.title == "Thủy tinh và hóa học"
    assert "Sức khỏe học đường" in canonical.keywords
    assert "Hòa Bình (tỉnh)" in canonical.subjects
    assert "tone-placement" in canonical.repairs
    old_style = to_canonical(parsed(school_record(title="Thủy tinh và hóa học /")), "THPT-HB")
    assert old_style.title == canonical.title and "tone-placement" not in old_style.repairs


def test_hash_ignores_position_but_not_content():
    first = to_canonical(parsed(school_record(), index=0, offset=0), "THPT-HB")
    moved = to_canonical(parsed(school_record(), index=99, offset=50_000), "THPT-HB")
    assert first.record_hash == moved.record_hash
    retitled = to_canonical(parsed(school_record(title="Toán 11 /")), "THPT-HB")
    assert retitled.record_hash != first.record_hash
    extra_copy = to_canonical(parsed(school_record(field("952", "p", "STK.000124"))), "THPT-HB")
    assert extra_copy.record_hash != first.record_hash
    nfd = to_canonical(parsed(school_record(title=unicodedata.normalize("NFD", "Toán 10 /"))), "THPT-HB")
    assert nfd.record_hash == first.record_hash  # same text once NFC


def test_fallbacks_author_year_language_call_number():
    record = pymarc.Record(force_utf8=True)
    record.add_field(Field(tag="008", data="180101s2018    vm            000 0 vie d"))
    record.add_field(field("090", "a", "895.922", "b", "Ng527"))
    record.add_field(field("245", "a", "Mắt biếc :", "b", "truyện dài /", ind="10"))
    record.add_field(field("264", "a", "[Tp. Hồ Chí Minh] :", "b", "Nxb. Trẻ,", "c", "[201-?]", ind=" 1"))
    record.add_field(field("264", "c", "©2018", ind=" 4"))
    record.add_field(field("700", "a", "Nguyễn, Nhật Ánh.", ind="1 "))
    record.add_field(field("700", "a", "Đỗ, Hoàng Tường", ind="1 "))
    canonical = to_canonical(parsed(record, index=7), "THCS-LS")
    assert canonical.local_id == "idx:7"
    assert canonical.title == "Mắt biếc : truyện dài"
    assert canonical.author == "Nguyễn, Nhật Ánh"
    assert canonical.pub_place == "Tp. Hồ Chí Minh"
    assert canonical.publisher == "Nxb. Trẻ"
    assert canonical.pub_year == "2018"  # not in 264_1 $c, found in the copyright date
    assert canonical.language == "vie"
    assert canonical.call_number == "895.922 Ng527"
    assert canonical.items == []


def test_year_from_008_and_unknown_markers():
    record = pymarc.Record(force_utf8=True)
    record.add_field(Field(tag="001", data="X1"))
    record.add_field(Field(tag="008", data="050101s2005    vm            000 0 |||  "))
    record.add_field(field("084", "a", "V23"))
    record.add_field(field("245", "a", "Truyện cổ tích Việt Nam.", ind="00"))
    record.add_field(field("260", "a", "[K.đ.] :", "b", "[s.n.],", "c", "[n.d.]"))
    canonical = to_canonical(parsed(record), "TH-A")
    assert canonical.title == "Truyện cổ tích Việt Nam"
    assert (canonical.pub_place, canonical.publisher) == (None, None)
    assert canonical.pub_year == "2005"
    assert canonical.language is None
    assert canonical.call_number == "V23"
    assert canonical.author is None


def test_item_status_and_holdings_field():
    record = school_record(field("952", "p", "STK.000200", "o", "510 T406", "1", "2", "4", "1"))
    canonical = to_canonical(parsed(record), "THPT-HB")
    assert canonical.items[1].status == "lost; damaged"
    assert canonical.items[1].accession_number == "STK.000200"

    holdings = school_record(field("852", "b", "Kho mở", "h", "510", "i", "T406", "p", "ĐKCB-0042"))
    items = to_canonical(parsed(holdings), "THPT-HB", item_field="852").items
    assert items == [Item(accession_number="ĐKCB-0042", call_number="510 T406", barcode="ĐKCB-0042",
                          location="Kho mở")]
    with pytest.raises(ValueError, match="unsupported item field"):
        to_canonical(parsed(holdings), "THPT-HB", item_field="995")


def test_text_is_stripped_empty_becomes_none_and_lists_are_deduped():
    record = school_record(field("020", "a", "  "), field("020", "a", "9786040123456"),
                           field("653", "a", " sách giáo khoa  "), field("650", "a", "   "),
                           control_001="   ")
    canonical = to_canonical(parsed(record, index=3), "THPT-HB")
    assert canonical.local_id == "idx:3"
    assert canonical.isbns == ["9786040123456"]
    assert canonical.keywords == ["Sách giáo khoa", "sách giáo khoa"]
    assert canonical.subjects == ["Toán học"]
    for name in ("title", "author", "pub_place", "publisher"):
        value = getattr(canonical, name)
        assert value == value.strip() and value


def test_repairs_and_encoding_come_from_the_parser():
    entry = ParsedRecord(index=0, offset=None, record=school_record(), encoding="marc-8",
                         repairs=["leader09-said-utf8-but-marc8"])
    canonical = to_canonical(entry, "THPT-HB")
    assert canonical.encoding == "marc-8"
    assert canonical.repairs == ["leader09-said-utf8-but-marc8"]
    assert entry.repairs == ["leader09-said-utf8-but-marc8"]  # the parser's list is not modified


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="public MARC fixtures not available")
def test_koha_marcxml_fixture():
    """The Koha export carries 942/999 (biblio level) and no 952: a record with no copies, not an error."""
    [entry] = list(read_records(FIXTURES / "marcxml" / "marc4j__1474920681_KOHA_LFL_5.xml"))
    assert not entry.record.get_fields("952")
    canonical = to_canonical(entry, "KOHA-LFL")
    assert canonical.local_id == "121564"
    assert canonical.title == "Cinema and architecture : from historical to digital"
    assert canonical.author == "Penz, Francois"
    assert (canonical.pub_place, canonical.publisher, canonical.pub_year) == (
        "London", "BFI (British Film Institute) Publishing", "1996")
    assert canonical.isbns == ["0851705774"]
    assert canonical.language == "eng"
    assert canonical.items == []
    assert canonical.byte_offset is None


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="public MARC fixtures not available")
def test_items_from_952_in_marcxml_fixture():
    entries = list(read_records(FIXTURES / "marcxml" / "qa-catalogue__wrong-marcxml.xml"))
    items = [item for entry in entries for item in to_canonical(entry, "QA").items]
    assert len(items) == 3
    assert all(item.collection and item.location for item in items)
    assert all(item.collection.isdigit() and item.barcode is None for item in items)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="public MARC fixtures not available")
def test_every_parsed_fixture_record_normalises():
    for path in sorted(FIXTURES.rglob("*")):
        if path.suffix not in {".mrc", ".marc", ".xml"}:
            continue
        for entry in read_records(path):
            if isinstance(entry, ParsedRecord):
                canonical = to_canonical(entry, "ANY")
                assert canonical.record_hash and canonical.local_id, path.name
                for name in ("title", "author", "pub_place", "publisher"):
                    value = getattr(canonical, name)
                    assert value is None or (value and unicodedata.is_normalized("NFC", value)), (path.name, name)
                assert msgspec.structs.asdict(canonical)
