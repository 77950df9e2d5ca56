"""tabular.py: real CSV and XLSX registers written here, read back as tables and canonical records, and ingested."""
from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from lienthong.ingest import ingest_library
from lienthong.model import CanonicalRecord
from lienthong.parse import ParseError, Unreadable
from lienthong.registry import load_registry
from lienthong.tabular import (
    MAX_FIELD_CHARS,
    MAX_LINE_CHARS,
    Table,
    detect_tabular_format,
    header_key,
    read_table,
    read_tables,
    read_tabular,
)
from lienthong.vietnamese import encode_legacy

HEADER = ["STT", "Mã biểu ghi", "Số ĐKCB", "Nhan đề", "Tác giả", "Nơi xuất bản", "Nhà xuất bản", "Năm xuất bản",
          "ISBN", "Ký hiệu xếp giá", "Từ khóa", "Chủ đề", "Kho"]
BANNER = ["SỔ ĐĂNG KÝ CÁ BIỆT – THƯ VIỆN TRƯỜNG THCS HỮU NGHỊ"]


def copy_row(number, record_id, accession, title="Dế mèn phiêu lưu ký", author="Tô Hoài", year="2019"):
    return [str(number), record_id, accession, title, author, "H.", "Nxb. Kim Đồng", year, "978-604-2-12345-6",
            "895.9223 T450H", "Truyện; Thiếu nhi", "Văn học Việt Nam", "Kho sách thiếu nhi"]


def write_csv(path: Path, rows, *, encoding="utf-8", delimiter=";") -> Path:
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    data = text.getvalue()
    if encoding in ("tcvn3", "vni", "cp1258"):
        path.write_bytes(encode_legacy(data, encoding))
    else:
        path.write_bytes(data.encode(encoding))
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


def records(path, **kwargs) -> list:
    return list(read_tabular(path, format=kwargs.pop("format", "auto"), encoding=kwargs.pop("encoding", None),
                             mapping=kwargs.pop("mapping", None), library_code="X", **kwargs))


# ------------------------------------------------------------------------------------------ the table reader


def test_header_key_folds_case_space_punctuation_but_keeps_vietnamese_letters():
    assert header_key(" NHAN ĐỀ: ") == header_key("Nhan đề") == header_key("nhan\u0020đe\u0302\u0300") == "nhanđề"
    assert header_key("Nhan de") == "nhande" != header_key("Nhan đề")
    assert header_key("Số ĐKCB") == header_key("số đkcb") == "sốđkcb"
    assert header_key("Ký hiệu xếp giá (KHXG)") == "kýhiệuxếpgiákhxg"
    assert header_key(None) == ""


def test_csv_header_found_under_banner_rows(tmp_path):
    path = write_csv(tmp_path / "so.csv", [BANNER + [""] * 12, ["Ngày xuất: 25/11/2026"], [],
                                           HEADER, copy_row(1, "R1", "TN.000001"), [""] * 13,
                                           copy_row(2, "R1", "TN.000002")])
    with read_table(path, expected_headers=HEADER) as table:
        assert (table.format, table.header_row, table.delimiter, table.encoding) == ("csv", 4, ";", "utf-8")
        assert table.header == HEADER
        rows = list(table.rows)
    assert [number for number, _ in rows] == [5, 7]  # the blank line 6 is skipped, numbers stay the file's
    assert rows[0][1][HEADER.index("Nhan đề")] == "Dế mèn phiêu lưu ký"


def test_xlsx_header_under_banners_dates_numbers_and_cached_formula_values(tmp_path):
    import datetime as dt

    path = write_xlsx(tmp_path / "so.xlsx", {"Sổ": [BANNER, [], ["Năm học 2026-2027"],
                                                   ["STT", "Nhan đề", "Năm xuất bản", "Ngày vào sổ", "Giá"],
                                                   [1, "Toán 10", 2022, dt.datetime(2024, 1, 2), 12000.0],
                                                   [2, "Ngữ văn 10", 2022.0, dt.date(2024, 1, 3), "=1+1"]]})
    # Give the formula a cached value as Excel would; openpyxl itself never writes one.
    with zipfile.ZipFile(path) as source:
        members = {name: source.read(name) for name in source.namelist()}
    sheet = next(name for name in members if name.startswith("xl/worksheets/sheet"))
    members[sheet] = re.sub(rb'<c r="E6"([^>]*)><f>([^<]*)</f><v\s*/?>(</v>)?',
                            rb'<c r="E6" t="str"><f>\2</f><v>18000</v>', members[sheet])
    assert b"<v>18000</v>" in members[sheet]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in members.items():
            target.writestr(name, data)

    with read_table(path, expected_headers=["Nhan đề", "Năm xuất bản"]) as table:
        assert (table.format, table.sheet, table.header_row, table.delimiter) == ("xlsx", "Sổ", 4, None)
        rows = list(table.rows)
    assert rows == [(5, ["1", "Toán 10", "2022", "2024-01-02", "12000"]),
                    (6, ["2", "Ngữ văn 10", "2022", "2024-01-03", "18000"])]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path, delimiter):
    path = write_csv(tmp_path / "d.csv", [BANNER, HEADER, copy_row(1, "R1", "TN.1")], delimiter=delimiter)
    table = read_table(path, expected_headers=HEADER)
    assert table.delimiter == delimiter and table.header == HEADER
    assert [cells[HEADER.index("Từ khóa")] for _, cells in table.rows] == ["Truyện; Thiếu nhi"]


@pytest.mark.parametrize("encoding, expected", [
    ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16"), ("cp1258", "cp1258"), ("tcvn3", "tcvn3"), ("vni", "vni"),
])
def test_encodings_are_detected_and_text_comes_out_nfc(tmp_path, encoding, expected):
    titles = ["Tôi thấy hoa vàng trên cỏ xanh", "Mắt biếc", "Cho tôi xin một vé đi tuổi thơ"]
    rows = [["SỔ ĐĂNG KÝ CÁ BIỆT - THƯ VIỆN TRƯỜNG THCS HỮU NGHỊ"], HEADER]  # TCVN3 has no en dash
    rows += [copy_row(i, f"R{i}", f"TN.{i}", title=title, author="Nguyễn Nhật Ánh")
             for i, title in enumerate(titles, start=1)]
    path = write_csv(tmp_path / f"{encoding}.csv", rows, encoding=encoding)
    table = read_table(path, expected_headers=HEADER)
    assert table.encoding == expected
    got = list(read_tabular(path, format="csv", encoding=None, mapping=None, library_code="X"))
    assert [r.title for r in got] == ["Tôi thấy hoa vàng trên cỏ xanh", "Mắt biếc", "Cho tôi xin một vé đi tuổi thơ"]
    assert {r.author for r in got} == {"Nguyễn Nhật Ánh"}
    assert got[0].publisher == "Nxb. Kim Đồng" and got[0].pub_place == "H."
    legacy = expected in ("cp1258", "tcvn3", "vni")
    assert all((f"decoded-{expected}" in r.repairs) == legacy for r in got)


def test_declared_encoding_wins_and_a_wrong_one_is_a_clear_error(tmp_path):
    path = write_csv(tmp_path / "t.csv", [HEADER, copy_row(1, "R1", "TN.1")], encoding="tcvn3")  # no "–" in TCVN3
    assert records(path, encoding="tcvn3")[0].title == "Dế mèn phiêu lưu ký"
    with pytest.raises(ParseError, match=r"t\.csv.*marc-8"):
        records(path, encoding="marc-8")
    latin = write_csv(tmp_path / "u.csv", [HEADER, copy_row(1, "R1", "TN.1")], encoding="cp1258")
    with pytest.raises(ParseError, match=r"u\.csv.*not valid utf-8"):
        records(latin, encoding="utf-8")


def test_format_is_detected_from_content_not_name(tmp_path):
    xlsx = write_xlsx(tmp_path / "export.csv", {"S": [HEADER, copy_row(1, "R1", "TN.1")]})
    text = write_csv(tmp_path / "export.xlsx", [HEADER, copy_row(1, "R1", "TN.1")])
    assert detect_tabular_format(xlsx.read_bytes()[:4096]) == "xlsx"
    assert detect_tabular_format(text.read_bytes()[:4096]) == "csv"
    assert detect_tabular_format(b"00714cam a2200205 a 4500\x1e001\x1e") is None
    assert detect_tabular_format(b"<?xml version='1.0'?><collection/>") is None
    assert records(xlsx)[0].title == records(text)[0].title == "Dế mèn phiêu lưu ký"
    with pytest.raises(ParseError, match="neither CSV nor XLSX"):
        records(write_marc_like(tmp_path / "m.dat"))


def write_marc_like(path: Path) -> Path:
    path.write_bytes(b"00026nam a2200025 a 4500\x1e\x1d")
    return path


def test_no_header_is_a_clear_error_naming_the_file(tmp_path):
    path = write_csv(tmp_path / "lung-tung.csv", [["a", "b"], ["1", "2"]])
    with pytest.raises(ParseError, match=r"lung-tung\.csv: no header row found in the first 50 rows"):
        read_table(path, expected_headers=HEADER)


# ------------------------------------------------------------------------------------------ hostile input


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bom.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"<sheetData>" + b" " * (40 << 20) + b"</sheetData>")
    assert path.stat().st_size < 200_000
    with pytest.raises(ParseError, match=r"bom\.xlsx: refused: member 'xl/worksheets/sheet1\.xml'.*ZIP bomb"):
        records(path)
    with pytest.raises(ParseError, match="ZIP bomb"):
        read_table(path)


def test_huge_field_and_long_line_are_refused(tmp_path):
    field = write_csv(tmp_path / "field.csv", [HEADER, copy_row(1, "R1", "TN.1"),
                                                ['"' + "x" * (MAX_FIELD_CHARS + 10)], copy_row(3, "R3", "TN.3")])
    # a quoted field spanning many short lines: no line is long, the field is
    field.write_bytes(field.read_bytes().replace(b'"""' + b"x" * 10, b'"' + b"x\n" * (MAX_FIELD_CHARS // 2 + 10), 1))
    with pytest.raises(ParseError, match=r"field\.csv: line 3: field larger than field limit"):
        records(field)
    line = write_csv(tmp_path / "line.csv", [HEADER, copy_row(1, "R1", "TN.1"), ["y" * (MAX_LINE_CHARS + 5)]])
    with pytest.raises(ParseError, match=r"line\.csv: line 3 is longer than"):
        records(line)


def test_damaged_xlsx_is_a_clear_error(tmp_path):
    path = tmp_path / "hong.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    with pytest.raises(ParseError, match=r"hong\.xlsx: not a readable XLSX"):
        records(path)


# ------------------------------------------------------------------------------------------ catalogue mapping


def test_header_variants_map_to_the_same_record(tmp_path):
    variants = [
        ["STT", "Mã biểu ghi", "Số ĐKCB", "Nhan đề", "Tác giả", "Nhà xuất bản", "Năm xuất bản", "Mã xếp giá"],
        ["stt", "MA BIEU GHI", "So DKCB", "Nhan de", "Tac gia", "NXB", "Năm XB", "Ký hiệu xếp giá"],
        ["TT", "Mã tài liệu", "ĐKCB", "Tên sách", "Tác giả chính", "Nhà XB", "Nam xuat ban", "Kí hiệu xếp giá"],
        ["STT.", "Mã biểu ghi:", "Số đăng ký cá biệt", "TÊN SÁCH", "Tác giả", "Nhà xuất bản", "Năm", "KHXG"],
    ]
    results = []
    for k, header in enumerate(variants):
        path = write_csv(tmp_path / f"v{k}.csv", [header, ["1", "R1", "SGK.000007", "Toán 6", "Hà Huy Khoái",
                                                            "Nxb. Giáo dục Việt Nam", "2021", "510 T406"]])
        (record,) = records(path)
        results.append((record.local_id, record.title, record.author, record.publisher, record.pub_year,
                        record.call_number, [i.accession_number for i in record.items]))
    assert results == [("R1", "Toán 6", "Hà Huy Khoái", "Nxb. Giáo dục Việt Nam", "2021", "510 T406",
                        ["SGK.000007"])] * 4


def test_registry_mapping_overrides_the_defaults(tmp_path):
    header = ["Tên ấn phẩm", "Người viết", "Mã cá biệt", "Kho", "Ghi chú"]
    path = write_csv(tmp_path / "m.csv", [header, ["Số đỏ", "Vũ Trọng Phụng", "STK.1", "Kho mở", "cũ"],
                                          ["Số đỏ", "Vũ Trọng Phụng", "STK.2", "Kho mở", ""]])
    mapping = {"Tên ấn phẩm": "title", "Người viết": "author", "Mã cá biệt": "accession_number", "Kho": "location"}
    (record,) = records(path, mapping=mapping)
    assert (record.title, record.author) == ("Số đỏ", "Vũ Trọng Phụng")
    assert [(i.accession_number, i.location, i.collection) for i in record.items] == [
        ("STK.1", "Kho mở", None), ("STK.2", "Kho mở", None)]
    with pytest.raises(ParseError, match=r"m\.csv: field_mapping maps column 'Kho' to unknown field 'shelf'"):
        records(path, mapping={**mapping, "Kho": "shelf"})
    with pytest.raises(ParseError, match=r"no title column"):
        records(path, mapping={"Người viết": "author", "Mã cá biệt": "accession_number"})


def test_copies_are_grouped_into_one_record_with_items(tmp_path):
    rows = [HEADER, copy_row(1, "R1", "TN.1"), copy_row(2, "R1", "TN.2"), copy_row(3, "R1", "TN.3"),
            copy_row(4, "R2", "TN.4", title="Mắt biếc", author="Nguyễn Nhật Ánh"),
            ["5", "", "TN.5"] + [""] * 10,  # a copy line under merged cells
            copy_row(6, "R1", "TN.6")]  # the same id again, not adjacent: a second record (a duplicate id)
    got = records(write_csv(tmp_path / "g.csv", rows))
    assert [(r.local_id, r.record_index, [i.accession_number for i in r.items]) for r in got] == [
        ("R1", 0, ["TN.1", "TN.2", "TN.3"]), ("R2", 1, ["TN.4", "TN.5"]), ("R1", 2, ["TN.6"])]
    first = got[0]
    assert first.isbns == ["9786042123456"] and first.keywords == ["Truyện", "Thiếu nhi"]
    assert first.subjects == ["Văn học Việt Nam"] and first.call_number == "895.9223 T450H"
    assert first.items[0].collection == "Kho sách thiếu nhi" and first.items[0].call_number == "895.9223 T450H"
    assert first.byte_offset is None and first.record_hash == first.compute_hash() and len(first.record_hash) == 64
    assert "grouped-rows" in first.repairs


def test_without_a_record_id_the_work_groups_and_the_local_id_is_a_stable_hash(tmp_path):
    header = [h for h in HEADER if h != "Mã biểu ghi"]
    rows = [header] + [[c for k, c in enumerate(copy_row(i, "-", f"TN.{i}")) if k != 1] for i in (1, 2)]
    rows.append([c for k, c in enumerate(copy_row(3, "-", "TN.3", year="2021")) if k != 1])  # another edition
    first = records(write_csv(tmp_path / "a.csv", rows))
    again = records(write_xlsx(tmp_path / "b.xlsx", {"Sheet": [BANNER] + rows}))
    assert [len(r.items) for r in first] == [2, 1]
    assert [r.local_id for r in first] == [r.local_id for r in again]
    assert all(re.fullmatch(r"tab:[0-9a-f]{16}", r.local_id) for r in first)
    assert first[0].local_id != first[1].local_id
    assert [r.record_hash for r in first] == [r.record_hash for r in again]


def test_sgk_register_lines_carry_a_quantity_and_pass_validation(tmp_path):
    from lienthong.validate import validate_batch

    sgk = [["SỔ ĐĂNG KÝ SÁCH GIÁO KHOA"], [],
           ["STT", "Tên sách", "Tác giả", "Nơi xuất bản", "Nhà xuất bản", "Năm xuất bản", "Mã xếp giá", "Từ khóa",
            "Chủ đề", "Số lượng"],
           [1, "Toán 1", "Hà Huy Khoái", "H.", "Nxb. Giáo dục Việt Nam", 2020, "510 T406", "Toán", "Toán học", 35],
           [2, "Tiếng Việt 1", "Bùi Mạnh Hùng", "H.", "Nxb. Giáo dục Việt Nam", 2020, "495.922 T306V", "Tiếng Việt",
            "Tiếng Việt", "12 cuốn"],
           [3, "Tiếng Việt 1", "Bùi Mạnh Hùng", "H.", "Nxb. Giáo dục Việt Nam", 2020, "495.922 T306V", "Tiếng Việt",
            "Tiếng Việt", 8]]
    register = [HEADER, copy_row(1, "R1", "TN.1")]
    got = records(write_xlsx(tmp_path / "sgk.xlsx", {"Sổ ĐKCB": [BANNER] + register, "SGK": sgk}))
    assert [(r.title, r.quantity, len(r.items)) for r in got] == [
        ("Dế mèn phiêu lưu ký", None, 1), ("Toán 1", 35, 0), ("Tiếng Việt 1", 20, 0)]
    assert [r.record_index for r in got] == [0, 1, 2]
    failures = validate_batch(got).failures
    assert not [f for f in failures if f.rule == "missing_accession_number"]
    assert not [f for f in failures if f.severity == "error"]


def test_unreadable_rows_name_file_row_and_column(tmp_path):
    rows = [BANNER, HEADER, ["1"] + [""] * 12, copy_row(2, "R2", "TN.2"), ["3", "", "", "", "", "", "", "", "", "",
                                                                            "", "", ""], ["", "", "", "", "Tô Hoài"]]
    got = records(write_csv(tmp_path / "hong.csv", rows))
    unreadable = [r for r in got if isinstance(r, Unreadable)]
    assert [u.reason for u in unreadable] == [
        "hong.csv, row 3: no title (column 'Nhan đề') and no other catalogue data (only STT)",
        "hong.csv, row 5: no title (column 'Nhan đề') and no other catalogue data (only STT)",
    ]
    assert [(type(r).__name__, getattr(r, "record_index", getattr(r, "index", None))) for r in got] == [
        ("Unreadable", 0), ("CanonicalRecord", 1), ("Unreadable", 2), ("CanonicalRecord", 3)]
    assert got[3].title is None and got[3].author == "Tô Hoài"  # a record without title: quarantined later


def test_sheet_without_header_is_reported_not_dropped(tmp_path):
    path = write_xlsx(tmp_path / "s.xlsx", {"Hướng dẫn": [["Ghi chép"], ["Nhập mỗi bản một dòng"]],
                                            "Sổ": [HEADER, copy_row(1, "R1", "TN.1")], "Trống": []})
    got = records(path)
    assert isinstance(got[0], Unreadable) and "sheet 'Hướng dẫn'" in got[0].reason and "2 filled rows" in got[0].reason
    assert isinstance(got[1], CanonicalRecord) and len(got) == 2
    tables = list(read_tables(path, expected_headers=HEADER))
    assert [t.sheet if isinstance(t, Table) else t for t in tables] == [("Hướng dẫn", 2), "Sổ", ("Trống", 0)]


def test_text_is_normalised_to_the_project_tone_placement(tmp_path):
    path = write_csv(tmp_path / "n.csv", [HEADER, copy_row(1, "R1", "TN.1", title="Hoà bình và khoẻ mạnh",
                                                           author="Nguye\u0302\u0303n  Du")])
    (record,) = records(path)
    assert record.title == "Hòa bình và khỏe mạnh" and record.author == "Nguyễn Du"


# ------------------------------------------------------------------------------------------ the pipeline


@pytest.fixture
def spreadsheet_exports(tmp_path):
    """The demo's CSV and XLSX registers of the libraries whose registry source says so, with their truth."""
    from lienthong.demo import generate_province
    from lienthong.demo_run import library_specs

    registry = load_registry()
    chosen = {code for code, lib in registry.libraries.items() if lib.source.format in ("csv", "xlsx")}
    specs = [spec for spec in library_specs(registry) if spec.code in chosen]
    specs = [type(spec)(spec.code, spec.type, spec.name, tmp_path / "drop" / spec.code) for spec in specs]
    return tmp_path, generate_province(specs, tmp_path, scale=1.0, seed=20261125)


def test_demo_writes_registers_with_the_ground_truth(spreadsheet_exports, tmp_path):
    root, truth = spreadsheet_exports
    files = {code: entry["file"] for code, entry in truth["libraries"].items()}
    assert {Path(f).suffix for f in files.values()} == {".csv", ".xlsx"} and len(files) >= 4
    for code, entry in truth["libraries"].items():
        path = root / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        got = records(path)
        assert all(isinstance(r, CanonicalRecord) for r in got)
        assert len(got) == entry["records"]
        assert sum(len(r.items) for r in got) == entry["items"]
        defects = {i for ids in entry["defects"].values() for i in ids}
        assert defects <= {r.local_id for r in got}
        assert not [r for r in got if r.title is None and r.local_id not in entry["defects"]["missing_title"]]
    encodings = {Path(e["file"]).name: {r.encoding for r in records(root / e["file"])}
                 for e in truth["libraries"].values()}
    assert {"cp1258"} in encodings.values() and {"vni"} in encodings.values()
    sgk = [r for e in truth["libraries"].values() for r in records(root / e["file"]) if r.quantity]
    assert sgk and all(not r.items for r in sgk)
    again = spreadsheet_exports_again(tmp_path / "again")
    assert {code: e["sha256"] for code, e in again["libraries"].items()} == {
        code: e["sha256"] for code, e in truth["libraries"].items()}


def spreadsheet_exports_again(root: Path) -> dict:
    from lienthong.demo import generate_province
    from lienthong.demo_run import library_specs

    registry = load_registry()
    specs = [type(s)(s.code, s.type, s.name, root / "drop" / s.code) for s in library_specs(registry)
             if registry.libraries[s.code].source.format in ("csv", "xlsx")]
    return generate_province(specs, root, scale=1.0, seed=20261125)


def test_ingest_conserves_every_row_of_csv_and_xlsx(clean_warehouse, spreadsheet_exports):
    root, truth = spreadsheet_exports
    for code, entry in truth["libraries"].items():
        result = ingest_library(code, root / entry["file"], engine=clean_warehouse)
        assert result.status == "applied", result.message
        assert result.conserved and result.read == result.loaded + result.quarantined + result.unreadable
        assert (result.read, result.unreadable) == (entry["records"], 0)
        with clean_warehouse.connect() as conn:
            quarantined_ids = {row.local_id for row in conn.execute(sa.text(
                "SELECT local_id FROM quality.quarantine WHERE batch_id = :b"), {"b": result.batch_id})}
            loaded_items = conn.execute(sa.text(
                "SELECT count(*) FROM core.item i JOIN core.record r USING (record_id) "
                "WHERE r.library_code = :l AND r.valid_to IS NULL"), {"l": code}).scalar_one()
        defects = {i for ids in entry["defects"].values() for i in ids}
        assert quarantined_ids <= defects and len(quarantined_ids) == result.quarantined
        assert loaded_items == result.items <= entry["items"]

    # A hand-written register with an unreadable row: read = loaded + quarantined + unreadable still holds.
    path = write_csv(root / "tay.csv", [BANNER, HEADER, copy_row(1, "T1", "TN.1"), ["2"] + [""] * 12,
                                        copy_row(3, "T2", "TN.3", title="")])
    result = ingest_library("THCS-HUUNGHI-HB", path, engine=clean_warehouse)
    assert (result.read, result.loaded, result.quarantined, result.unreadable) == (3, 1, 1, 1)
    # ingest reads the landed copy (named by its sha256), but the reason names the file the library sent
    (reason,) = result.unreadable_reasons
    assert reason == "tay.csv, row 4: no title (column 'Nhan đề') and no other catalogue data (only STT)"
    with clean_warehouse.connect() as conn:
        stored = conn.execute(sa.text("SELECT reason FROM quality.unreadable WHERE batch_id = :b"),
                              {"b": result.batch_id}).scalar_one()
    assert stored == reason
    assert result.quarantine_reasons == {"missing_title": 1}


def test_registry_refuses_a_mapping_to_an_unknown_field(tmp_path):
    from lienthong.registry import PACKAGED_REGISTRY, RegistryError

    text = PACKAGED_REGISTRY.read_text(encoding="utf-8")
    line = "    source: {format: csv}  # a CSV register saved on a Windows-1258 PC\n"
    assert line in text
    number = text[: text.index(line)].count("\n") + 1
    path = tmp_path / "registry.yaml"
    path.write_text(text.replace(line, '    source: {format: csv, field_mapping: {"Tên": titel, "Mã cá biệt": '
                                      'accession_number}}\n'), encoding="utf-8")
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"registry.yaml:{number}:") and "source.field_mapping['Tên']" in problem
    assert "unknown field 'titel'" in problem and "did you mean 'title'?" in problem


def test_ingest_detects_a_spreadsheet_when_the_registry_says_auto(clean_warehouse, tmp_path):
    registry = load_registry()
    code = "TH-DONGTIEN-HB"
    assert registry.libraries[code].source.format == "auto"
    rows = [BANNER, [], HEADER, copy_row(1, "A1", "TN.1"), copy_row(2, "A1", "TN.2"),
            copy_row(3, "A2", "TN.3", "Mắt biếc")]
    path = write_xlsx(tmp_path / "export.bin", {"Sổ": rows})
    result = ingest_library(code, path, engine=clean_warehouse)
    assert (result.status, result.read, result.loaded, result.items) == ("applied", 2, 2, 3)
    with clean_warehouse.connect() as conn:
        format_used = conn.execute(sa.text("SELECT file_format FROM core.batch WHERE batch_id = :b"),
                                   {"b": result.batch_id}).scalar_one()
    assert format_used in ("auto", "xlsx")
