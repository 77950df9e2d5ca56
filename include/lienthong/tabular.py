"""Spreadsheet exports (CSV and XLSX) of school libraries, read as tables and turned into canonical records.

Many school libraries keep their register in Excel, not in a library system: a title row or two
("SỔ ĐĂNG KÝ CÁ BIỆT – THƯ VIỆN …") above a header of Vietnamese column names, one row per copy (each with its
accession number, ĐKCB), and for textbooks (SGK) often one line per title with a quantity instead of ĐKCB.

Two layers:

* :func:`read_table` / :func:`read_tables` — a generic, streaming table reader other stages build on
  (circulation logs come the same way). Format from the content (a ZIP is XLSX), CSV delimiter and encoding
  sniffed (UTF-8 with or without BOM, UTF-16 with BOM, CP1258, TCVN3 and VNI via :mod:`lienthong.vietnamese`),
  banner rows above the header skipped, rows streamed (openpyxl read-only for XLSX, cached values only: a
  formula is never evaluated), hostile files refused with a :class:`~lienthong.parse.ParseError` naming
  the file (ZIP bombs, over-long lines, over-large fields).
* :func:`read_tabular` — the catalogue mapping: header aliases (overridable per library by the registry's
  ``field_mapping``), consecutive rows of one book grouped into one record with one item per copy, SGK
  register lines carrying a quantity. See docs/formats.md.
"""
from __future__ import annotations

import codecs
import csv
import datetime as _dt
import functools
import hashlib
import io
import logging
import os
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lienthong.model import CanonicalRecord, Item
from lienthong.parse import ParseError, Unreadable
from lienthong.registry import SPREADSHEET_FIELDS

__all__ = [
    "DEFAULT_ALIASES",
    "FIELDS",
    "Table",
    "detect_tabular_format",
    "header_key",
    "read_table",
    "read_tables",
    "read_tabular",
]

log = logging.getLogger(__name__)

HEAD_BYTES = 64 * 1024  # what encoding and delimiter sniffing look at
HEADER_SCAN_ROWS = 50  # banner rows above the header: at most this many rows are searched for the header
MAX_LINE_CHARS = 1 << 20  # a CSV line longer than this is not a catalogue line
MAX_FIELD_CHARS = 128 * 1024  # the csv module's own default limit; a field larger than this is refused
MAX_COLUMNS = 1024
# XLSX: refused before openpyxl opens it when the ZIP directory declares more than this ...
MAX_XLSX_UNCOMPRESSED = 512 << 20
# ... or a member larger than XLSX_RATIO_FLOOR expanding more than this many times (real sheets: 5-30×).
MAX_XLSX_RATIO = 200
XLSX_RATIO_FLOOR = 1 << 20
MAX_XLSX_MEMBERS = 10_000
MAX_SHARED_STRINGS = 128 << 20  # openpyxl holds the shared-strings table in memory even in read-only mode
MAX_WAITING_UNREADABLE = 1000  # unreadable rows held back while a record is open (they keep file order)
DELIMITERS = (",", ";", "\t", "|")
LEGACY_ENCODINGS = ("tcvn3", "vni")  # no Python codec: decoded by lienthong.vietnamese


# --------------------------------------------------------------------------------------------------
# header folding


def header_key(text: object) -> str:
    """Fold a column header for matching: NFC, casefold, no punctuation, symbols or whitespace.

    Vietnamese letters stay distinct ("Nhan đề" → "nhanđề", "Nhan de" → "nhande"): aliases list both spellings
    rather than folding diacritics away, so "Số" and "So" never collide with an unrelated header by accident.
    """
    if text is None:
        return ""
    folded = unicodedata.normalize("NFC", str(text)).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LNM")


# --------------------------------------------------------------------------------------------------
# the generic table


@dataclass
class Table:
    """One table of a spreadsheet file: its header and a stream of its data rows.

    ``rows`` yields ``(row number in the file, 1-based; cells)`` for every non-blank row below the header;
    cells are text (NFC, stripped) or None, dates as ISO strings, padded to the header's width. The stream
    closes the file when exhausted; call :meth:`close` (or use ``with``) to stop early.
    """

    path: Path
    format: str  # "csv" or "xlsx"
    header: list[str]
    header_row: int
    encoding: str | None
    delimiter: str | None
    rows: Iterator[tuple[int, list[str | None]]]
    sheet: str | None = None
    matched: int = 0  # how many header cells matched the expected headers
    _closers: list = field(default_factory=list, repr=False)

    def close(self) -> None:
        closer = getattr(self.rows, "close", None)
        if closer is not None:
            closer()
        for close in self._closers:
            close()
        self._closers.clear()

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def detect_tabular_format(head: bytes) -> str | None:
    """'xlsx' for a ZIP container, 'csv' for text that looks like delimited lines, else None (MARC, XML, binary)."""
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = head.decode("utf-16")
        except UnicodeDecodeError:
            text = head[: len(head) // 2 * 2].decode("utf-16", errors="ignore")
        return "csv" if not text.lstrip("\ufeff \r\n\t").startswith("<") else None
    body = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    stripped = body.lstrip(b" \t\r\n")
    if not stripped or stripped.startswith(b"<") or stripped[:5].isdigit() and b"\x1e" in body:
        return None
    if b"\x1d" in body or b"\x1e" in body or b"\x00" in body[:4096]:
        return None
    lines = [line for line in body.split(b"\n")[:20] if line.strip()]
    if any(line.count(d.encode()) for line in lines for d in DELIMITERS):
        return "csv"
    return None


def _check_zip(path: Path) -> None:
    """Refuse a ZIP bomb from the ZIP directory alone, before any member is inflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ParseError(f"{path}: not a readable XLSX (ZIP) file: {exc}") from None
    if len(members) > MAX_XLSX_MEMBERS:
        raise ParseError(f"{path}: refused: {len(members)} members in the XLSX container "
                         f"(limit {MAX_XLSX_MEMBERS})")
    total = sum(m.file_size for m in members)
    if total > MAX_XLSX_UNCOMPRESSED:
        raise ParseError(f"{path}: refused: the XLSX would expand to {total:,} bytes "
                         f"(limit {MAX_XLSX_UNCOMPRESSED:,}); possible ZIP bomb")
    for m in members:
        if m.filename.lower() == "xl/sharedstrings.xml" and m.file_size > MAX_SHARED_STRINGS:
            raise ParseError(f"{path}: refused: the shared-strings table is {m.file_size:,} bytes "
                             f"(limit {MAX_SHARED_STRINGS:,})")
        if m.file_size > XLSX_RATIO_FLOOR and m.file_size > MAX_XLSX_RATIO * max(m.compress_size, 1):
            raise ParseError(f"{path}: refused: member {m.filename!r} expands {m.file_size:,} bytes from "
                             f"{m.compress_size:,} (ratio over {MAX_XLSX_RATIO}); possible ZIP bomb")


def _cell_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, _dt.datetime):
        if value.time() == _dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e17:
            return str(int(value))
        return repr(value)
    text = unicodedata.normalize("NFC", str(value)).strip()
    return text or None


def _nonblank(cells: list[str | None]) -> bool:
    return any(cell is not None for cell in cells)


def _find_header(rows: Iterable[tuple[int, list[str | None]]], expected: set[str], filled_seen: list[int],
                 ) -> tuple[int, list[str | None], int] | None:
    """(row number, header cells, matches) of the first row that looks like the header.

    With expected header keys, the header is the first row where at least min(2, len(expected)) cells fold
    to one of them; without, the first row with two or more filled cells.
    """
    need = min(2, len(expected)) if expected else 2
    for scanned, (number, cells) in enumerate(rows, start=1):
        filled_seen[0] += _nonblank(cells)
        if expected:
            matches = sum(1 for cell in cells if cell is not None and header_key(cell) in expected)
        else:
            matches = sum(1 for cell in cells if cell is not None)
        if matches >= need:
            return number, cells, matches
        if scanned >= HEADER_SCAN_ROWS:
            break
    return None


def _table(path: Path, fmt: str, raw_rows: Iterator[tuple[int, list[str | None]]], expected: set[str],
           encoding: str | None, delimiter: str | None, sheet: str | None, closers: list) -> Table | int:
    """The table, or when no header is found the number of filled rows (all of them, for the report)."""
    filled = [0]
    found = _find_header(raw_rows, expected, filled)
    if found is None:
        return filled[0] + sum(1 for _, cells in raw_rows if _nonblank(cells))
    number, cells, matches = found
    header = [cell or "" for cell in cells]
    while header and not header[-1]:
        header.pop()
    width = len(header)

    def data() -> Iterator[tuple[int, list[str | None]]]:
        try:
            for row_number, row in raw_rows:
                if not _nonblank(row):
                    continue
                if len(row) < width:
                    row = row + [None] * (width - len(row))
                yield row_number, row
        finally:
            for close in closers:
                close()

    return Table(path=path, format=fmt, header=header, header_row=number, encoding=encoding,
                 delimiter=delimiter, rows=data(), sheet=sheet, matched=matches, _closers=closers)


# ------------------------------------------------------------------------------------------------ XLSX


def _xlsx_tables(path: Path, expected: set[str], sheet: str | None) -> Iterator[Table | tuple[str, int]]:
    """Each worksheet with a recognisable header as a Table; a sheet without one as (sheet name, filled rows)."""
    _check_zip(path)
    import openpyxl

    handle = open(path, "rb")  # a file object: openpyxl refuses a path by its extension (landed files have none)
    try:
        workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # openpyxl raises many kinds for a damaged container
        handle.close()
        raise ParseError(f"{path}: not a readable XLSX workbook: {type(exc).__name__}: {exc}") from None
    try:
        names = workbook.sheetnames
        if sheet is not None:
            if sheet not in names:
                raise ParseError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(names)})")
            names = [sheet]
        for name in names:
            worksheet = workbook[name]
            if not hasattr(worksheet, "iter_rows"):  # a chart sheet
                continue
            worksheet.reset_dimensions()  # the stored dimension may lie; read what is there
            rows = ((number, [_cell_text(v) for v in values[:MAX_COLUMNS]])
                    for number, values in enumerate(worksheet.iter_rows(values_only=True), start=1))
            table = _table(path, "xlsx", rows, expected, None, None, name, [])
            if isinstance(table, Table):
                yield table
                table.close()
            else:
                yield name, table
    finally:
        workbook.close()
        handle.close()


# ------------------------------------------------------------------------------------------------- CSV


def _sniff_encoding(head: bytes) -> str:
    """The codec of the file's text: a BOM, valid UTF-8, else the legacy encoding its words read best in."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from lienthong.vietnamese import detect_vietnamese_encoding

    cut = head.rfind(b"\n")
    detected, _confidence = detect_vietnamese_encoding(head[: cut + 1] if cut > 0 else head)
    return _codec_label(detected)


def _codec_label(encoding: str) -> str:
    label = encoding.strip().lower().replace("_", "-")
    if label in ("tcvn3", "tcvn", "tcvn-3", "abc", "tcvn5712", "tcvn5712-1"):
        return "tcvn3"
    if label in ("vni", "vni-windows", "vniwin"):
        return "vni"
    if label in ("utf8", "utf-8", "utf-8-nfd"):
        return "utf-8"
    if label == "marc-8":
        raise LookupError("marc-8 is a MARC encoding, not a spreadsheet one")
    return codecs.lookup(label).name


def _legacy_lines(binary, encoding: str) -> Iterator[str]:
    from lienthong.vietnamese import decode_legacy

    for line in binary:
        yield decode_legacy(line, encoding)


class _Lines:
    """Text lines of the file with a length cap and a count of the physical lines consumed."""

    def __init__(self, path: Path, text: io.TextIOBase | Iterator[str]):
        self.path = path
        self.text = text
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if isinstance(self.text, io.TextIOBase):
            line = self.text.readline(MAX_LINE_CHARS + 1)
            if not line:
                raise StopIteration
        else:
            line = next(self.text)
        self.count += 1
        if len(line) > MAX_LINE_CHARS:
            raise ParseError(f"{self.path}: line {self.count} is longer than {MAX_LINE_CHARS:,} characters; "
                             f"refused (not a catalogue line)")
        return line


def _open_text(path: Path, encoding: str):
    """A text stream of the file in ``encoding`` (a Python codec or tcvn3/vni) and its closer."""
    binary = open(path, "rb")
    if encoding in LEGACY_ENCODINGS:
        return _legacy_lines(_capped_binary_lines(path, binary), encoding), binary.close
    text = io.TextIOWrapper(binary, encoding=encoding, errors="strict", newline="")
    return text, text.close


def _capped_binary_lines(path: Path, binary) -> Iterator[bytes]:
    number = 0
    while True:
        line = binary.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise ParseError(f"{path}: line {number} is longer than {MAX_LINE_CHARS:,} bytes; refused")
        yield line


def _sniff_delimiter(lines: list[str], expected: set[str]) -> str:
    """The delimiter that splits the head into a header matching the expected names, else into the most
    lines of the same (more than one) field count."""
    best, best_score = ",", (-1, -1, -1)
    for delimiter in DELIMITERS:
        counts: dict[int, int] = {}
        header_hits = 0
        try:
            for cells in csv.reader(lines, delimiter=delimiter):
                filled = [c for c in cells if c.strip()]
                if len(cells) > 1:
                    counts[len(cells)] = counts.get(len(cells), 0) + 1
                if expected:
                    header_hits = max(header_hits, sum(1 for c in filled if header_key(c) in expected))
        except csv.Error:
            continue
        consistent = max(counts.values(), default=0)
        score = (header_hits if header_hits >= 2 else 0, consistent, -DELIMITERS.index(delimiter))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _csv_table(path: Path, encoding: str | None, expected: set[str]) -> Table | tuple[str, int]:
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    if encoding is None:
        codec = _sniff_encoding(head)
    else:
        try:
            codec = _codec_label(encoding)
        except LookupError as exc:
            raise ParseError(f"{path}: unsupported encoding {encoding!r} for CSV: {exc}") from None
        if codec == "utf-8" and head.startswith(codecs.BOM_UTF8):
            codec = "utf-8-sig"
    if codec in LEGACY_ENCODINGS:
        from lienthong.vietnamese import decode_legacy

        cut = head.rfind(b"\n")
        head_text = decode_legacy(head[: cut + 1] if cut >= 0 else head, codec)
    else:
        cut = head.rfind(b"\n") if not codec.startswith("utf-16") else len(head)
        try:
            head_text = codecs.getincrementaldecoder(codec)(errors="strict").decode(
                head[: cut + 1] if cut >= 0 else head, final=False)
        except UnicodeDecodeError as exc:
            raise ParseError(f"{path}: the text is not valid {codec}: {exc}") from None
    head_lines = head_text.lstrip("\ufeff").splitlines(keepends=True)
    delimiter = _sniff_delimiter(head_lines[:HEADER_SCAN_ROWS + 20], expected)

    text, close = _open_text(path, codec)
    lines = _Lines(path, text)
    reader = csv.reader(lines, delimiter=delimiter)

    def rows() -> Iterator[tuple[int, list[str | None]]]:
        while True:
            start = lines.count + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ParseError(f"{path}: line {start}: {exc} (fields are limited to {MAX_FIELD_CHARS:,} "
                                 f"characters)") from None
            except UnicodeDecodeError as exc:
                raise ParseError(f"{path}: near line {start}: the text is not valid {codec}: {exc}") from None
            if cells and max(map(len, cells)) > MAX_FIELD_CHARS:  # whatever csv.field_size_limit says
                raise ParseError(f"{path}: line {start}: field larger than {MAX_FIELD_CHARS:,} characters; "
                                 f"refused")
            if len(cells) > MAX_COLUMNS:
                raise ParseError(f"{path}: line {start}: {len(cells)} columns (limit {MAX_COLUMNS}); refused")
            if start == 1 and cells and cells[0].startswith("\ufeff"):
                cells[0] = cells[0][1:]
            yield start, [_cell_text(c) for c in cells]

    stream = rows()
    table = _table(path, "csv", stream, expected, codec, delimiter, None, [close])
    if not isinstance(table, Table):
        close()
        return path.name, table
    return table


# ------------------------------------------------------------------------------------------- entry points


def _resolve_format(path: Path, format: str) -> str:
    if format in ("csv", "xlsx"):
        return format
    if format != "auto":
        raise ParseError(f"{path}: unknown spreadsheet format option {format!r} (use auto, csv or xlsx)")
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    detected = detect_tabular_format(head)
    if detected is None:
        raise ParseError(f"{path}: neither CSV nor XLSX (starts with {head[:16]!r})")
    return detected


def _expected_keys(expected_headers: Iterable[str]) -> set[str]:
    return {key for key in (header_key(h) for h in expected_headers) if key}


def read_tables(path: str | os.PathLike, *, format: str = "auto", encoding: str | None = None,
                expected_headers: Iterable[str] = ()) -> Iterator[Table | tuple[str, int]]:
    """Every table of the file: one for a CSV, one per worksheet for XLSX (in workbook order).

    A sheet (or CSV) where no header is found among its first rows comes as ``(sheet name, filled rows)``
    so the caller can report it; nothing is skipped silently. Consume (or close) each table before asking
    for the next.
    """
    path = Path(path)
    fmt = _resolve_format(path, format)
    expected = _expected_keys(expected_headers)
    if fmt == "xlsx":
        if encoding is not None:
            log.debug("%s: encoding %r ignored for XLSX (always Unicode)", path, encoding)
        yield from _xlsx_tables(path, expected, None)
    else:
        yield _csv_table(path, encoding, expected)


def read_table(path: str | os.PathLike, *, format: str = "auto", encoding: str | None = None,
               expected_headers: Iterable[str] = (), sheet: str | None = None) -> Table:
    """The file's table: for XLSX the named sheet, else the first sheet with a recognisable header.

    Raises ParseError (naming the file) when no header row is found among the first rows, or the file is
    refused (ZIP bomb, over-long line or field, unknown format or encoding).
    """
    path = Path(path)
    fmt = _resolve_format(path, format)
    expected = _expected_keys(expected_headers)
    if fmt == "csv":
        found = _csv_table(path, encoding, expected)
        if isinstance(found, Table):
            return found
        raise ParseError(_no_header_message(path, None, expected))
    tables = _xlsx_tables(path, expected, sheet)
    for found in tables:
        if isinstance(found, Table):
            return _detached(found, tables)
    raise ParseError(_no_header_message(path, sheet, expected))


def _detached(table: Table, tables: Iterator) -> Table:
    """Keep the workbook open while the caller streams the table; close it when the rows run out."""
    rows = table.rows

    def data() -> Iterator[tuple[int, list[str | None]]]:
        try:
            yield from rows
        finally:
            tables.close()

    table.rows = data()
    return table


def _no_header_message(path: Path, sheet: str | None, expected: set[str]) -> str:
    where = f"{path}" + (f", sheet {sheet!r}" if sheet else "")
    wanted = f" (expected some of: {', '.join(sorted(expected)[:12])})" if expected else ""
    return f"{where}: no header row found in the first {HEADER_SCAN_ROWS} rows{wanted}"


# --------------------------------------------------------------------------------------------------
# catalogue mapping

#: Canonical fields a spreadsheet column can map to ("ignore" drops a column); the registry checks against them.
FIELDS = SPREADSHEET_FIELDS
RECORD_FIELDS = ("record_id", "title", "author", "publisher", "pub_place", "pub_year", "isbn", "language",
                 "keywords", "subjects", "classification")
COPY_FIELDS = ("accession_number", "barcode", "collection", "location", "status")  # what makes a row a copy

#: Default header aliases, as written in school registers; both accented and unaccented spellings, since
#: header_key keeps Vietnamese letters distinct. A library's registry ``field_mapping`` overrides them.
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "record_id": ("Mã biểu ghi", "Ma bieu ghi", "Số biểu ghi", "ID biểu ghi", "Mã tài liệu", "Ma tai lieu",
                  "Record ID", "Biblionumber", "001"),
    "title": ("Nhan đề", "Nhan de", "Nhan đề chính", "Tên sách", "Ten sach", "Tên tài liệu", "Ten tai lieu",
              "Tên sách (nhan đề)", "Tựa sách", "Title"),
    "author": ("Tác giả", "Tac gia", "Tác giả chính", "Tên tác giả", "Author"),
    "publisher": ("Nhà xuất bản", "Nha xuat ban", "NXB", "Nhà XB", "Publisher"),
    "pub_place": ("Nơi xuất bản", "Noi xuat ban", "Nơi XB", "Place"),
    "pub_year": ("Năm xuất bản", "Nam xuat ban", "Năm XB", "Năm", "Year"),
    "isbn": ("ISBN", "Mã ISBN", "Số ISBN"),
    "language": ("Ngôn ngữ", "Ngon ngu", "Language"),
    "keywords": ("Từ khóa", "Từ khoá", "Tu khoa", "Keywords"),
    "subjects": ("Chủ đề", "Chu de", "Môn loại", "Mon loai", "Đề mục", "Subject"),
    "call_number": ("Ký hiệu xếp giá", "Kí hiệu xếp giá", "Ky hieu xep gia", "Mã xếp giá", "Ma xep gia",
                    "KHXG", "Số xếp giá", "Call number"),
    "classification": ("Ký hiệu phân loại", "Kí hiệu phân loại", "Ky hieu phan loai", "Phân loại", "DDC"),
    "quantity": ("Số lượng", "So luong", "SL", "Số bản", "Quantity"),
    "accession_number": ("Số ĐKCB", "So DKCB", "ĐKCB", "DKCB", "Số đăng ký cá biệt", "So dang ky ca biet",
                         "Accession number"),
    "barcode": ("Mã vạch", "Ma vach", "Barcode"),
    "collection": ("Kho", "Kho sách", "Kho tài liệu", "Collection"),
    "location": ("Vị trí", "Vi tri", "Vị trí kho", "Phòng", "Location"),
    "item_type": ("Loại sách", "Loai sach", "Loại tài liệu", "Loại ấn phẩm", "Dạng tài liệu", "Item type"),
    "status": ("Tình trạng", "Tinh trang", "Trạng thái", "Status"),
    "ignore": ("STT", "Số thứ tự", "TT", "Ghi chú", "Ghi chu", "Giá tiền", "Gia tien", "Giá", "Ngày vào sổ",
               "Ngày nhập", "Số trang", "Khổ", "Khổ sách"),
}
_STATUS = {"mất": "lost", "mat": "lost", "thanh lý": "withdrawn", "thanh ly": "withdrawn", "hỏng": "damaged",
           "hong": "damaged", "rách": "damaged", "rach": "damaged", "hư hỏng": "damaged"}
_AVAILABLE = {"tốt", "tot", "bình thường", "binh thuong", "sẵn sàng", "san sang", "có", "co"}
_LIST_SPLIT = re.compile(r"\s*[;|\n]\s*")
_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")
_INTEGER = re.compile(r"^\s*(\d{1,7})(?:[.,]0+)?\b")


def _normaliser():
    """lienthong.vietnamese.normalise_text (NFC with the project's tone placement) when present."""
    try:
        from lienthong.vietnamese import normalise_text
    except ImportError:
        def normalise_text(value: str) -> str:
            return unicodedata.normalize("NFC", value)

    @functools.lru_cache(maxsize=1 << 16)  # registers repeat publishers, places, authors, shelves
    def normalised(value: str) -> str | None:
        return " ".join(normalise_text(value).split()) or None

    def clean(value: str | None) -> str | None:
        return None if value is None else normalised(value)

    return clean


def _columns(table: Table, mapping: Mapping[str, str] | None, name: str) -> dict[str, list[int]]:
    """Canonical field → column positions, defaults first overridden by the library's mapping."""
    by_key: dict[str, str] = {}
    for target, aliases in DEFAULT_ALIASES.items():
        for alias in aliases:
            by_key.setdefault(header_key(alias), target)
    for column, target in (mapping or {}).items():
        if target not in FIELDS:
            raise ParseError(f"{name}: field_mapping maps column {column!r} to unknown field {target!r} "
                             f"(known: {', '.join(FIELDS)})")
        by_key[header_key(column)] = target
    columns: dict[str, list[int]] = {}
    for position, text in enumerate(table.header):
        target = by_key.get(header_key(text))
        if target and target != "ignore":
            columns.setdefault(target, []).append(position)
    return columns


def _expected_for(mapping: Mapping[str, str] | None) -> list[str]:
    return [alias for aliases in DEFAULT_ALIASES.values() for alias in aliases] + list(mapping or {})


def _split(values: list[str]) -> list[str]:
    return [part for value in values for part in _LIST_SPLIT.split(value) if part]


def _isbn(value: str) -> str | None:
    number = re.split(r"[(:]", value, maxsplit=1)[0]
    cleaned = "".join(ch for ch in number.upper() if ch in "0123456789X")
    return cleaned or None


def _dedupe(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _fold(value: str | None) -> str:
    return " ".join((value or "").casefold().split())


@dataclass
class _Row:
    number: int
    values: dict[str, list[str]]  # canonical field → non-empty texts of its columns, in column order

    def first(self, name: str) -> str | None:
        found = self.values.get(name)
        return found[0] if found else None

    def has_record_data(self) -> bool:
        return any(self.values.get(name) for name in RECORD_FIELDS)

    def has_copy(self) -> bool:
        return any(self.values.get(name) for name in COPY_FIELDS)


@dataclass
class _Group:
    key: tuple
    first_row: int
    rows: list[_Row]
    sheet: str | None


def _group_key(row: _Row) -> tuple:
    """The record id when the row has one; else title, author, publisher and year, folded."""
    record_id = row.first("record_id")
    if record_id:
        return ("id", record_id)
    return ("work", _fold(row.first("title")), _fold(row.first("author")), _fold(row.first("publisher")),
            _year(row.first("pub_year")) or _fold(row.first("pub_year")))


def _local_id(key: tuple) -> str:
    """The record id itself, else "tab:" + the first 16 hex digits of sha256 over the folded grouping key
    (stable across exports as long as title, author, publisher and year are unchanged)."""
    if key[0] == "id":
        return key[1]
    digest = hashlib.sha256("\x1f".join(key[1:]).encode("utf-8")).hexdigest()
    return f"tab:{digest[:16]}"


def _year(value: str | None) -> str | None:
    if not value:
        return None
    match = _YEAR.search(value)
    return match.group(1) if match else None


def _quantity(value: str | None) -> int | None:
    if not value:
        return None
    match = _INTEGER.match(value)
    return int(match.group(1)) if match else None


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    folded = _fold(value)
    if folded in _AVAILABLE:
        return None
    return _STATUS.get(folded, value)


def _record(group: _Group, index: int, library_code: str, encoding: str, repairs: list[str]) -> CanonicalRecord:
    def first(name: str) -> str | None:
        return next((row.first(name) for row in group.rows if row.first(name)), None)

    def every(name: str) -> list[str]:
        return [value for row in group.rows for value in row.values.get(name, ())]

    items: list[Item] = []
    quantity = 0
    has_quantity = False
    for row in group.rows:
        copy = row.has_copy()
        count = _quantity(row.first("quantity"))
        if not copy and count is not None:  # a textbook (SGK) register line: a count, no ĐKCB
            quantity += count
            has_quantity = True
            continue
        if copy:
            items.append(Item(
                accession_number=row.first("accession_number"), call_number=row.first("call_number"),
                barcode=row.first("barcode"), collection=row.first("collection"),
                item_type=row.first("item_type"), location=row.first("location"),
                status=_status(row.first("status")),
            ))
    record = CanonicalRecord(
        library_code=library_code,
        local_id=_local_id(group.key),
        record_index=index,
        byte_offset=None,
        title=first("title"),
        author=first("author"),
        pub_place=first("pub_place"),
        publisher=first("publisher"),
        pub_year=_year(first("pub_year")),
        isbns=_dedupe(_isbn(v) for v in _split(every("isbn"))),
        language=first("language"),
        keywords=_dedupe(_split(every("keywords"))),
        subjects=_dedupe(_split(every("subjects"))),
        call_number=first("call_number") or first("classification"),
        quantity=quantity if has_quantity else None,
        encoding=encoding,
        repairs=list(repairs) + (["grouped-rows"] if len(group.rows) > 1 else []),
        items=items,
    )
    record.compute_hash()
    return record


def read_tabular(path: str | os.PathLike, *, format: str = "auto", encoding: str | None = None,
                 mapping: Mapping[str, str] | None = None, library_code: str,
                 ) -> Iterator[CanonicalRecord | Unreadable]:
    """Canonical records of a CSV or XLSX catalogue export, streaming; whole-file problems raise ParseError.

    Consecutive rows with the same grouping key (record id column, else title + author + publisher + year)
    are one record, each row with a copy field (ĐKCB, barcode, Kho, Vị trí, Tình trạng) one item; a row
    with only copy fields continues the record above it (merged cells). A row without a copy field but with
    a quantity is a textbook (SGK) register line: the record's quantity. ``record_index`` counts records
    and unreadable rows together, in file order.
    """
    path = Path(path)
    name = path.name
    clean = _normaliser()
    index = 0
    for table in read_tables(path, format=format, encoding=encoding, expected_headers=_expected_for(mapping)):
        if not isinstance(table, Table):
            sheet, filled = table
            if filled:
                yield Unreadable(index, None, f"{name}: sheet {sheet!r}: no header row recognised in the first "
                                              f"{HEADER_SCAN_ROWS} rows; {filled} filled rows not read")
                index += 1
            continue
        where = f"{name}" + (f", sheet {table.sheet!r}" if table.format == "xlsx" else "")
        columns = _columns(table, mapping, where)
        if "title" not in columns:
            table.close()
            raise ParseError(f"{where}: the header on row {table.header_row} has no title column "
                             f"(found: {', '.join(h for h in table.header if h)}); map one with field_mapping")
        record_encoding = "utf-8" if table.format == "xlsx" else (table.encoding or "utf-8")
        record_encoding = {"utf-8-sig": "utf-8"}.get(record_encoding, record_encoding)
        repairs = [] if record_encoding in ("utf-8", "utf-16") else [f"decoded-{record_encoding}"]
        title_column = table.header[columns["title"][0]]
        group: _Group | None = None
        waiting: list[tuple[int, str]] = []  # unreadable rows met while a record is still open

        def flush() -> Iterator[CanonicalRecord | Unreadable]:
            """The open record, then the unreadable rows met inside it: indexes follow the file's order."""
            nonlocal index, group
            if group is not None:
                yield _record(group, index, library_code, record_encoding, repairs)
                index += 1
                group = None
            for _number, reason in waiting:
                yield Unreadable(index, None, reason)
                index += 1
            waiting.clear()

        try:
            for number, cells in table.rows:
                values = {}
                for target, positions in columns.items():
                    found = [clean(cells[p]) for p in positions if p < len(cells)]
                    found = [v for v in found if v]
                    if found:
                        values[target] = found
                row = _Row(number, values)
                if not row.has_record_data():
                    if group is not None and (row.has_copy() or _quantity(row.first("quantity")) is not None):
                        group.rows.append(row)  # a copy line under merged cells: same record
                        continue
                    filled = [table.header[i] or f"column {i + 1}" for i, c in enumerate(cells) if c is not None]
                    waiting.append((number, (
                        f"{where}, row {number}: no title (column {title_column!r}) and no other catalogue data"
                        + (f" (only {', '.join(filled[:5])})" if filled else ""))))
                    if group is None or len(waiting) >= MAX_WAITING_UNREADABLE:
                        yield from flush()
                    continue
                key = _group_key(row)
                if group is not None and key == group.key:
                    group.rows.append(row)
                    continue
                yield from flush()
                group = _Group(key, number, [row], table.sheet)
        finally:
            table.close()
        yield from flush()
