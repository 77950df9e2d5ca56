"""Sample spreadsheet exports for the demo: the generated MARC records of a library written as a school's register.

Libraries whose registry source says ``format: csv`` or ``format: xlsx`` export a spreadsheet instead of MARC
(:func:`export_format`). The writer takes the same pymarc records the MARC writer would have written, so the
records, their local ids and their injected defects (the ground truth) are unchanged:

* **CSV**: semicolon-delimited, CRLF, a banner "SỔ ĐĂNG KÝ CÁ BIỆT – THƯ VIỆN …" and a date line above the
  header, one row per copy with the book's columns repeated. A THCS register is written in Windows-1258, any
  other in VNI-Windows (the encodings school PCs still produce); neither says so in the file.
* **XLSX**: banner rows, a bold header, one row per copy with the book's columns on its first copy only (how a
  register with merged cells reads back), accession dates as real date cells. A school holding textbooks gets
  a second sheet "Sách giáo khoa": one line per textbook title with a quantity (Số lượng) and no ĐKCB — except
  textbooks whose copies matter to the ground truth (a missing or reused ĐKCB stays on the copy register).

The XLSX bytes are made deterministic (fixed ZIP timestamps and document properties), like the MARC files.
"""
from __future__ import annotations

import csv
import datetime as _dt
import functools
import io
import re
import zipfile
from collections import Counter
from pathlib import Path

from pymarc import Record

__all__ = ["CSV_COLUMNS", "SGK_COLUMNS", "TabularWriter", "export_format"]

CSV_COLUMNS = (
    "STT", "Mã biểu ghi", "Số ĐKCB", "Nhan đề", "Tác giả", "Nơi xuất bản", "Nhà xuất bản", "Năm xuất bản", "ISBN",
    "Ký hiệu xếp giá", "Từ khóa", "Chủ đề", "Kho", "Vị trí", "Tình trạng", "Loại sách", "Ngày vào sổ", "Giá tiền",
)
SGK_COLUMNS = (
    "STT", "Mã biểu ghi", "Tên sách", "Tác giả", "Nơi xuất bản", "Nhà xuất bản", "Năm xuất bản", "ISBN",
    "Mã xếp giá", "Từ khóa", "Chủ đề", "Số lượng", "Ghi chú",
)
_STATUS = (("1", "Mất"), ("4", "Hỏng"), ("0", "Thanh lý"))
_ISBD_TAIL = re.compile(r"\s*[/:;=,]\s*$|(?<![A-ZĐ.])\.\s*$")


@functools.lru_cache(maxsize=8)
def _registry_formats(path: str) -> dict[str, str]:
    from lienthong.registry import load_registry

    registry = load_registry(Path(path)) if path else load_registry()
    return {code: lib.source.format for code, lib in registry.libraries.items()
            if lib.source.format in ("csv", "xlsx")}


def export_format(code: str) -> str:
    """"csv" or "xlsx" when the registry says this library exports a spreadsheet, else "marc21"."""
    import os

    try:
        formats = _registry_formats(os.environ.get("LIENTHONG_REGISTRY", ""))
    except Exception:  # a demo for libraries outside any loadable registry writes MARC
        return "marc21"
    return formats.get(code, "marc21")


def _clean(value: str | None) -> str:
    return _ISBD_TAIL.sub("", value or "").strip()


def _first(record: Record, tags: tuple[str, ...], code: str) -> str:
    for field in record.get_fields(*tags):
        for value in field.get_subfields(code):
            if value.strip():
                return _clean(value)
    return ""


def _book(record: Record) -> dict[str, str]:
    """The columns of a book in a register, read off the MARC record."""
    title = ""
    for field in record.get_fields("245"):
        parts = [_clean(v) for v in field.get_subfields("a")]
        parts += [", " + _clean(v) for v in field.get_subfields("n")]
        parts += [": " + _clean(v) for v in field.get_subfields("b")]
        title = "".join(parts)
    call = record.get_fields("082")
    call_number = " ".join(call[0].get_subfields("a", "b")) if call else ""
    year = _first(record, ("264", "260"), "c")
    return {
        "Mã biểu ghi": record["001"].data,
        "Nhan đề": title,
        "Tác giả": _first(record, ("100", "110"), "a") or _first(record, ("700", "710"), "a"),
        "Nơi xuất bản": _first(record, ("264", "260"), "a"),
        "Nhà xuất bản": _first(record, ("264", "260"), "b"),
        "Năm xuất bản": year,
        "ISBN": _first(record, ("020",), "a"),
        "Ký hiệu xếp giá": call_number,
        "Từ khóa": "; ".join(_clean(v) for f in record.get_fields("653") for v in f.get_subfields("a")),
        "Chủ đề": "; ".join(_clean(v) for f in record.get_fields("650") for v in f.get_subfields("a")),
    }


def _copies(record: Record) -> list[dict[str, str]]:
    copies = []
    for field in record.get_fields("952"):
        status = next((text for code, text in _STATUS if field.get_subfields(code)), "")
        copies.append({
            "Số ĐKCB": (field.get_subfields("p") or [""])[0],
            "Kho": (field.get_subfields("8") or [""])[0],
            "Vị trí": (field.get_subfields("c") or [""])[0],
            "Tình trạng": status,
            "Loại sách": (field.get_subfields("y") or [""])[0],
            "Ngày vào sổ": (field.get_subfields("d") or [""])[0],
            "Giá tiền": (field.get_subfields("g") or [""])[0],
        })
    return copies


class TabularWriter:
    """Collects a library's MARC records and writes them as its spreadsheet register on close.

    ``items`` is the number of copies written as register rows (textbook lines carry a quantity instead);
    ``encoding`` the encoding of the file's text.
    """

    def __init__(self, sink, *, fmt: str, library_name: str, library_type: str, exported: _dt.date):
        if fmt not in ("csv", "xlsx"):
            raise ValueError(f"unknown spreadsheet format {fmt!r}")
        self.sink = sink
        self.fmt = fmt
        self.name = library_name
        self.exported = exported
        self.records: list[Record] = []
        self.items = 0
        # how the file's text is encoded (for the manifest): XLSX is always UTF-8 inside
        self.encoding = "utf-8" if fmt == "xlsx" else ("cp1258" if library_type == "THCS" else "vni")

    def write(self, record: Record) -> None:
        self.records.append(record)

    def close(self, close_fh: bool = True) -> None:
        register, textbooks = self._split()
        self.items = sum(len(_copies(r)) for r in register)
        data = self._csv(register) if self.fmt == "csv" else self._xlsx(register, textbooks)
        self.sink.write(data)
        if close_fh:
            self.sink.close()

    def _split(self) -> tuple[list[Record], list[Record]]:
        """Textbooks whose copies all have their own ĐKCB go to the SGK sheet (XLSX of schools with SGK)."""
        if self.fmt != "xlsx":
            return self.records, []
        used = Counter(c["Số ĐKCB"] for r in self.records for c in _copies(r))
        register, textbooks = [], []
        for record in self.records:
            copies = _copies(record)
            plain = copies and all(c["Số ĐKCB"] and used[c["Số ĐKCB"]] == 1 for c in copies)
            if plain and all(c["Loại sách"] == "SGK" for c in copies):
                textbooks.append(record)
            else:
                register.append(record)
        return register, textbooks

    def _banner(self) -> str:
        return f"SỔ ĐĂNG KÝ CÁ BIỆT – THƯ VIỆN {self.name.upper()}"

    def _rows(self, register: list[Record], repeat: bool) -> list[list]:
        rows, number = [], 0
        for record in register:
            book = _book(record)
            for k, copy in enumerate(_copies(record) or [{}]):
                number += 1
                shown = book if (repeat or k == 0) else {}
                rows.append([number] + [shown.get(c) or copy.get(c) or "" for c in CSV_COLUMNS[1:]])
        return rows

    def _csv(self, register: list[Record]) -> bytes:
        from lienthong.vietnamese import encode_legacy

        text = io.StringIO()
        writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
        width = len(CSV_COLUMNS)
        writer.writerow([self._banner()] + [""] * (width - 1))
        writer.writerow([f"Ngày xuất: {self.exported:%d/%m/%Y}"] + [""] * (width - 1))
        writer.writerow([""] * width)
        writer.writerow(CSV_COLUMNS)
        for row in self._rows(register, repeat=True):
            date = row[CSV_COLUMNS.index("Ngày vào sổ")]
            if date:
                row[CSV_COLUMNS.index("Ngày vào sổ")] = _dt.date.fromisoformat(date).strftime("%d/%m/%Y")
            writer.writerow(row)
        return encode_legacy(text.getvalue(), self.encoding)

    def _xlsx(self, register: list[Record], textbooks: list[Record]) -> bytes:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Alignment, Font, PatternFill

        workbook = Workbook(write_only=True)
        bold = Font(bold=True)
        fill = PatternFill("solid", fgColor="DDEBF7")

        def header(sheet, columns) -> None:
            cells = []
            for text in columns:
                cell = WriteOnlyCell(sheet, value=text)
                cell.font, cell.fill = bold, fill
                cell.alignment = Alignment(horizontal="center", wrap_text=True)
                cells.append(cell)
            sheet.append(cells)

        def banner(sheet, title: str) -> None:
            cell = WriteOnlyCell(sheet, value=title)
            cell.font = Font(bold=True, size=14)
            sheet.append([cell])
            sheet.append([f"Trường: {self.name}"])
            sheet.append([f"Ngày xuất: {self.exported:%d/%m/%Y}"])
            sheet.append([])

        sheet = workbook.create_sheet("Sổ đăng ký cá biệt")
        banner(sheet, self._banner())
        header(sheet, CSV_COLUMNS)
        date_at, price_at, year_at = (CSV_COLUMNS.index(c) for c in ("Ngày vào sổ", "Giá tiền", "Năm xuất bản"))
        for row in self._rows(register, repeat=False):
            if row[date_at]:
                row[date_at] = _dt.date.fromisoformat(row[date_at])
            for at in (price_at, year_at):
                if str(row[at]).isdigit():
                    row[at] = int(row[at])
            sheet.append(row)
        if textbooks:
            sgk = workbook.create_sheet("Sách giáo khoa")
            banner(sgk, f"SỔ ĐĂNG KÝ SÁCH GIÁO KHOA – THƯ VIỆN {self.name.upper()}")
            header(sgk, SGK_COLUMNS)
            for number, record in enumerate(textbooks, start=1):
                book = _book(record)
                book["Tên sách"], book["Mã xếp giá"] = book["Nhan đề"], book["Ký hiệu xếp giá"]
                book["Số lượng"] = len(_copies(record))
                row = [number] + [book.get(c, "") for c in SGK_COLUMNS[1:]]
                year_at = SGK_COLUMNS.index("Năm xuất bản")
                if str(row[year_at]).isdigit():
                    row[year_at] = int(row[year_at])
                sgk.append(row)
        buffer = io.BytesIO()
        workbook.save(buffer)
        return _deterministic_zip(buffer.getvalue(), self.exported)


def _deterministic_zip(data: bytes, day: _dt.date) -> bytes:
    """The same workbook bytes on every run: fixed member timestamps and document dates."""
    stamp = f"{day:%Y-%m-%d}T08:30:00Z"
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(),
                                 content)
            member = zipfile.ZipInfo(info.filename, date_time=(day.year, day.month, day.day, 8, 30, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = info.external_attr
            target.writestr(member, content)
    return out.getvalue()
