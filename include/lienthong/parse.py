"""Read MARC exports record by record: salvage every record that can be read, account for every one that can't.

pymarc's own readers are too trusting for real exports (see docs/architecture.md and the pitfalls notes):
they believe the leader's record length, leader/09 and the directory, and one bad record ends the file.
Here ISO 2709 is framed on the 0x1D record terminator while streaming, the directory is cross-checked
against the 0x1E field terminators, and the encoding is decided from the bytes (docs/encodings.md): per file
from the head of the record set, per record, and checked per field, never from leader/09 alone, so TCVN3,
VNI, Windows-1258 and decomposed UTF-8 come out as the same NFC text as clean UTF-8.  MARCXML is read
element by element with a parser that refuses entities.  Every framed record yields exactly one
`ParsedRecord` or `Unreadable`, so nothing disappears silently.
"""
from __future__ import annotations

import bisect
import codecs
import io
import os
import re
import unicodedata
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import pymarc
import rmarc
from lxml import etree
from pymarc import marc8_mapping
from pymarc.field import Indicators, Subfield
from pymarc.leader import Leader

from lienthong.vietnamese import LEGACY_ENCODINGS, decode_legacy, is_vietnamese_syllable, vietnamese_score

__all__ = ["FrameBatch", "ParseError", "ParsedRecord", "Unreadable", "decode_batch", "detect_format",
           "iso2709_batches", "read_records"]

RECORD_TERMINATOR = b"\x1d"
FIELD_TERMINATOR = b"\x1e"
SUBFIELD_DELIMITER = b"\x1f"
LEADER_LEN = 24
DIRECTORY_ENTRY_LEN = 12
MAX_ISO_LENGTH = 99999  # the largest length the 5-digit leader can state

CHUNK_SIZE = 1 << 20
HEAD_SIZE = 4096
# A run of bytes this long without a record terminator is not a record; framing skips to the next 0x1D
# instead of buffering without bound.
MAX_RECORD_BYTES = 16 << 20
# Bytes that may separate records (line-separated exports) or pad the end of a file.
SEPARATORS = b"\r\n\x00"
IGNORABLE_TAIL = b" \t\r\n\x00\x1a\x0b\x0c"
UTF8_BOM = b"\xef\xbb\xbf"

ENCODINGS = {
    "utf-8": "utf-8", "utf8": "utf-8", "marc-8": "marc-8", "marc8": "marc-8",
    "tcvn3": "tcvn3", "tcvn": "tcvn3", "abc": "tcvn3", "tcvn5712": "tcvn3", "tcvn5712-1": "tcvn3",
    "vni": "vni", "vni-windows": "vni", "cp1258": "cp1258", "windows-1258": "cp1258",
}
TABULAR_FORMATS = ("csv", "xlsx")
# The head of the record set the per-file encoding is decided from.
HEAD_RECORDS = 200
HEAD_BYTES = 256 << 10
MIN_VIETNAMESE_WORDS = 2
THIN_EVIDENCE = 5

# Valid UTF-8 multibyte sequences (RFC 3629): their presence shows a record is UTF-8, not MARC-8.
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
# ANSEL's spacing symbols never sit inside a word in real MARC-8 text; they do when the bytes are really
# ISO 5426/6937 or Latin-1 ("g\xc2en\xc2erale" → "g℗en℗erale").
_IMPLAUSIBLE_MARC8 = re.compile(r"[^\W\d_][℗©®♯♭£°±€ℓ¿¡·][^\W\d_]")
# LC's lossless-conversion convention writes characters MARC-8 lacks as "&#x" + hex digits + ";".
_NCR = re.compile(r"&#x([0-9A-Fa-f]{4,6});")


class ParseError(ValueError):
    """A whole-file problem (unknown format, unsupported option); the message names the file."""


@dataclass
class ParsedRecord:
    """A record that could be read, with the repairs it needed."""

    index: int  # 0-based position in the file
    offset: int | None  # byte offset of the record in the file (ISO 2709), None for XML
    record: pymarc.Record | rmarc.Record | LightRecord  # rmarc (pymarc's API) or light: no repair needed
    encoding: str  # how the bytes were decoded: utf-8, marc-8, tcvn3, vni, cp1258 or the registry's codec
    repairs: list[str] = field(default_factory=list)


@dataclass
class Unreadable:
    """A record (or a stretch of the file) that could not be read, and why."""

    index: int
    offset: int | None
    reason: str


class _Bad(Exception):
    """Internal: this record cannot be read; the message is the reason."""


# --------------------------------------------------------------------------------------------------
# format detection and sources


def detect_format(head: bytes) -> str:
    """"marc21", "marcxml", "csv" or "xlsx", by content, since file names and extensions lie.

    CSV is delimited text: a delimiter (, ; tab |) in the first line and no MARC terminator. Spreadsheets
    are read by lienthong.tabular, not here.
    """
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 BOM: XML, or Excel's "Unicode text"
        text = head[2:len(head) - len(head) % 2].decode("utf-16-le" if head[0] == 0xFF else "utf-16-be", "replace")
        if text.lstrip().startswith("<"):
            return "marcxml"
        return "csv" if _delimited(text.encode("utf-8")) else "marcxml"
    body = head[len(UTF8_BOM):] if head.startswith(UTF8_BOM) else head
    body = body.lstrip(b" \t\r\n\x00")
    if body.startswith(b"<"):
        return "marcxml"
    if RECORD_TERMINATOR in body or FIELD_TERMINATOR in body or _leader_shaped(body):
        return "marc21"
    if body.startswith(b"\x1f\x8b"):
        raise ParseError("unknown format: the data is gzip-compressed; decompress it first")
    if _delimited(body):
        return "csv"
    if body[:5].isdigit():
        return "marc21"
    raise ParseError(f"unknown format: neither ISO 2709, MARCXML, CSV nor XLSX (starts with {body[:16]!r})")


def _leader_shaped(body: bytes) -> bool:
    """The start of an ISO 2709 leader: a 5-digit length, and "22" counts or the "4500" entry map."""
    return len(body) >= LEADER_LEN and body[:5].isdigit() and (body[10:12] == b"22" or body[20:24] == b"4500")


def _delimited(body: bytes) -> bool:
    """Text (no NUL or MARC separators) whose first line holds a CSV delimiter."""
    if b"\x00" in body or SUBFIELD_DELIMITER in body:
        return False
    first = body.split(b"\n", 1)[0]
    return any(delimiter in first for delimiter in (b",", b";", b"\t", b"|"))


class _Source:
    """A path or an open binary file: its head for format detection, then streams over all of it.

    A path is opened only when records are asked for; XML recovery needs a second pass, which a caller's
    file allows only when it can seek.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO):
        self.head = b""
        self._head_served = False
        if hasattr(source, "read"):
            self.path, self.handle = None, source
            self.name = str(getattr(source, "name", "<stream>"))
            try:
                self.start = source.tell()
            except (AttributeError, OSError, io.UnsupportedOperation):
                self.start = None
        else:
            self.path, self.handle = os.fspath(source), None
            self.name = self.path

    def read_head(self) -> bytes:
        if self.path is not None:
            with open(self.path, "rb") as handle:
                self.head = handle.read(HEAD_SIZE)
        else:
            self.head = self.handle.read(HEAD_SIZE)
        return self.head

    def stream(self) -> BinaryIO:
        """The data from the start (a caller's file continues after the head already read)."""
        if self.path is not None:
            return open(self.path, "rb")
        if not self._head_served:
            self._head_served = True
            return _Prefixed(self.head, _Unclosable(self.handle))
        return self.reopen() or _Prefixed(b"", _Unclosable(self.handle))

    def reopen(self) -> BinaryIO | None:
        """A fresh stream from the start, or None for a stream that cannot be rewound."""
        if self.path is not None:
            return open(self.path, "rb")
        if self.start is None:
            return None
        try:
            self.handle.seek(self.start)
        except (AttributeError, OSError, io.UnsupportedOperation):
            return None
        return _Unclosable(self.handle)


class _Unclosable(io.RawIOBase):
    """Wrap a caller's file so our `with` blocks do not close it."""

    def __init__(self, handle: BinaryIO):
        super().__init__()
        self._handle = handle

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._handle.read(size)

    def readinto(self, buffer) -> int:
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Prefixed(io.RawIOBase):
    """A stream that replays the bytes already read for format detection, then continues."""

    def __init__(self, head: bytes, rest: BinaryIO):
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._rest.close()
        super().close()


def read_records(
    path: str | os.PathLike | BinaryIO, *, format: str = "auto", encoding: str | None = None, light: bool = False
) -> Iterator[ParsedRecord | Unreadable]:
    """Yield one ParsedRecord or Unreadable per record, streaming; whole-file problems raise ParseError.

    Arguments are checked (and the format detected) before the first record is asked for, so a bad call
    fails at once rather than at the first `next()`. With ``light`` an ISO 2709 record that needs no repair
    comes as a :class:`LightRecord` (what normalise reads, at a fraction of the cost) instead of rmarc's.
    """
    source, fmt, forced = _open(path, format, encoding)
    if fmt == "marc21":
        return _read_iso2709(source, forced, light)
    return _read_marcxml(source)


def iso2709_batches(path: str | os.PathLike, *, format: str = "auto", encoding: str | None = None,
                    size: int = 2000) -> Iterator[FrameBatch] | None:
    """The records of an ISO 2709 file framed (not decoded) in batches of ``size``, or None for MARCXML.

    Framing is cheap and sequential; `decode_batch` does the rest anywhere, e.g. in a worker process, with
    the same results as :func:`read_records`.
    """
    source, fmt, forced = _open(path, format, encoding)
    if fmt != "marc21":
        return None
    return _batched_frames(source, forced, size)


def _batched_frames(source: _Source, forced: str | None, size: int) -> Iterator[FrameBatch]:
    batch: list[tuple[int, _Frame]] = []
    file_encoding = None
    for index, frame, file_encoding in _iso2709_frames(source, forced):
        batch.append((index, frame))
        if len(batch) >= size:
            yield FrameBatch(batch, file_encoding, forced is not None)
            batch = []
    if batch:
        yield FrameBatch(batch, file_encoding, forced is not None)


def decode_batch(batch: FrameBatch, *, light: bool = False) -> Iterator[ParsedRecord | Unreadable]:
    """One record at a time: a decoded record is garbage once normalised, so few objects live at once."""
    for index, frame in batch.frames:
        yield _decode_frame(index, frame, batch.file_encoding, batch.forced, light)


def _open(path: str | os.PathLike | BinaryIO, format: str, encoding: str | None
          ) -> tuple[_Source, str, str | None]:
    """The source, its format (marc21 or marcxml) and the forced encoding, checked before any record is read."""
    source = _Source(path)
    forced = None if encoding is None else _encoding_option(encoding, source.name)
    if format in TABULAR_FORMATS:
        raise ParseError(f"{source.name}: {format} is a spreadsheet format: read it with lienthong.tabular")
    if format not in ("auto", "marc21", "marcxml", "iso2709"):
        raise ParseError(f"{source.name}: unknown format option {format!r}")
    head = source.read_head()
    if format != "auto":
        fmt = "marc21" if format == "iso2709" else format
    elif not (head[len(UTF8_BOM):] if head.startswith(UTF8_BOM) else head).strip(IGNORABLE_TAIL):
        fmt = "marc21"  # empty or blank so far: the framer yields nothing, or reasons for what follows
    else:
        try:
            fmt = detect_format(head)
        except ParseError as exc:
            raise ParseError(f"{source.name}: {exc}") from None
        if fmt in TABULAR_FORMATS:
            raise ParseError(f"{source.name}: the content is {fmt.upper()}, a spreadsheet: read it with "
                             f"lienthong.tabular")
    return source, fmt, forced


def _encoding_option(encoding: str, name: str) -> str:
    """The registry's encoding override: utf-8, marc-8, cp1258, tcvn3, vni, or any Python codec."""
    key = encoding.strip().lower().replace("_", "-")
    if key in ENCODINGS:
        return ENCODINGS[key]
    try:
        return codecs.lookup(key).name
    except LookupError:
        raise ParseError(f"{name}: unsupported encoding {encoding!r} (use utf-8, marc-8, cp1258, tcvn3, vni "
                         f"or a Python codec name)") from None


# --------------------------------------------------------------------------------------------------
# ISO 2709


@dataclass
class _Frame:
    offset: int
    data: bytes | None  # the record's bytes including its terminator; None when framing failed
    repairs: list[str]
    problem: str | None = None


@dataclass
class FrameBatch:
    """Framed records of one file with what decoding them needs; small and picklable."""

    frames: list[tuple[int, _Frame]]  # (index in the file, frame)
    file_encoding: str | None
    forced: bool

    def __reduce__(self):
        """Pickle the records' bytes as one string and their offsets as one array, not a thousand dataclasses.

        A batch crosses to a decode worker for every thousand records; this takes about 0.7 µs of CPU per record
        off pickling each `_Frame` on its own (300,000 records through two workers, measured): small, but on
        every record of every large export.
        """
        plain: list[bytes] = []
        sizes, offsets, indexes = array("q"), array("q"), array("q")
        others = []  # (position, frame) of the frames with repairs or without data, pickled as they are
        for position, (index, frame) in enumerate(self.frames):
            indexes.append(index)
            offsets.append(frame.offset)
            if frame.data is not None and not frame.repairs:
                plain.append(frame.data)
                sizes.append(len(frame.data))
            else:
                others.append((position, frame))
        return _unpickled_batch, (b"".join(plain), sizes.tobytes(), offsets.tobytes(), indexes.tobytes(), others,
                                  self.file_encoding, self.forced)


def _unpickled_batch(blob: bytes, sizes: bytes, offsets: bytes, indexes: bytes, others: list[tuple[int, _Frame]],
                     file_encoding: str | None, forced: bool) -> FrameBatch:
    size_of, offset_of, index_of = array("q"), array("q"), array("q")
    size_of.frombytes(sizes)
    offset_of.frombytes(offsets)
    index_of.frombytes(indexes)
    special = dict(others)
    frames: list[tuple[int, _Frame]] = []
    start = taken = 0
    for position, (index, offset) in enumerate(zip(index_of, offset_of)):
        frame = special.get(position)
        if frame is None:
            stop = start + size_of[taken]
            frame = _Frame(offset, blob[start:stop], [])
            start, taken = stop, taken + 1
        frames.append((index, frame))
    return FrameBatch(frames, file_encoding, forced)


def _frames(stream: BinaryIO) -> Iterator[_Frame]:
    """Cut the stream on 0x1D, dropping CR/LF/NUL between records, without holding the file in memory."""
    buf = bytearray(stream.read(CHUNK_SIZE))
    base = 0  # file offset of buf[0]
    pos = len(UTF8_BOM) if buf.startswith(UTF8_BOM) else 0  # start of the unframed rest of buf
    first_repairs = ["stripped-bom"] if pos else []
    scanned = pos  # no terminator before this point
    runaway: int | None = None  # offset of an over-long stretch without a terminator, being skipped
    while True:
        while True:
            start = pos
            while start < len(buf) and buf[start] in SEPARATORS:
                start += 1
            end = buf.find(RECORD_TERMINATOR, max(start, scanned))
            if end < 0:
                scanned = len(buf)
                break
            if runaway is not None:
                yield _Frame(runaway, None, [], f"no record terminator within {MAX_RECORD_BYTES} bytes")
                runaway = None
            else:
                repairs = first_repairs + (["stripped-line-separator"] if start > pos else [])
                yield _Frame(base + start, bytes(buf[start:end + 1]), repairs)
            first_repairs = []
            pos = scanned = end + 1
        if runaway is None and len(buf) - pos > MAX_RECORD_BYTES:
            runaway = base + pos
        drop = len(buf) if runaway is not None else pos  # a runaway's bytes are not kept
        del buf[:drop]
        base, pos, scanned = base + drop, 0, scanned - drop if runaway is None else 0
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            break
        buf += chunk
    if runaway is not None:
        yield _Frame(runaway, None, [], f"no record terminator within {MAX_RECORD_BYTES} bytes")
        return
    rest = bytes(buf[pos:])
    stripped = rest.lstrip(IGNORABLE_TAIL)
    offset = base + pos + len(rest) - len(stripped)
    stripped = stripped.rstrip(IGNORABLE_TAIL)
    if not stripped:
        return
    if len(stripped) >= LEADER_LEN and stripped[:5].isdigit():
        problem = (f"truncated last record (no 0x1D terminator): {len(stripped)} bytes, "
                   f"leader declares {int(stripped[:5])}")
    else:
        problem = (f"{len(stripped)} bytes after the last record without a 0x1D terminator "
                   f"(starts {stripped[:12]!r}): garbage or a truncated record")
    yield _Frame(offset, None, [], problem)


def _read_iso2709(source: _Source, forced: str | None, light: bool) -> Iterator[ParsedRecord | Unreadable]:
    for index, frame, file_encoding in _iso2709_frames(source, forced):
        yield _decode_frame(index, frame, file_encoding, forced is not None, light)


def _iso2709_frames(source: _Source, forced: str | None) -> Iterator[tuple[int, _Frame, str | None]]:
    """Each framed record with its position and the file's encoding (decided on the head of the file)."""
    with source.stream() as stream:
        frames = _frames(stream)
        head: list[_Frame] = []
        size = 0
        for frame in frames:
            head.append(frame)
            size += len(frame.data or b"")
            if len(head) >= HEAD_RECORDS or size >= HEAD_BYTES:
                break
        file_encoding = forced or _file_encoding(head)
        for index, frame in enumerate(_chain(head, frames)):
            yield index, frame, file_encoding


def _decode_frame(index: int, frame: _Frame, file_encoding: str | None, forced: bool, light: bool = False
                  ) -> ParsedRecord | Unreadable:
    where = f"record {index} at byte {frame.offset}"
    if frame.data is None:
        return Unreadable(index, frame.offset, f"{where}: {frame.problem}")
    try:
        record, used, repairs = _decode_iso_record(frame.data, file_encoding, forced, light=light)
    except _Bad as exc:
        return Unreadable(index, frame.offset, f"{where}: {exc}")
    except Exception as exc:  # one record's surprise must not cost the rest of the file
        return Unreadable(index, frame.offset, f"{where}: unexpected {type(exc).__name__}: {exc}")
    return ParsedRecord(index, frame.offset, record, used, frame.repairs + repairs)


def _chain(head: list[_Frame], rest: Iterator[_Frame]) -> Iterator[_Frame]:
    yield from head
    yield from rest


def _decode_iso_record(raw: bytes, file_encoding: str | None, forced: bool = False, *, fast: bool = True,
                       light: bool = False) -> tuple[pymarc.Record | rmarc.Record | LightRecord, str, list[str]]:
    """Build a Record from one framed record, trusting terminators over the numbers the record states.

    `file_encoding` is the override or the legacy encoding decided for the whole file; without one the
    record's own bytes decide between UTF-8, MARC-8 and the legacy encodings. A record that needs no repair
    at all goes to rmarc (`fast`), pymarc's API with a Rust core, which gives the same fields 2-3× faster, or
    with ``light`` to a :class:`LightRecord`.
    """
    if fast and file_encoding in (None, "utf-8"):
        clean = _clean_utf8_record(raw, declared=file_encoding is None, light=light)
        if clean is not None:
            return clean, "utf-8", []
    repairs: list[str] = []
    size = len(raw)
    if size - 1 < LEADER_LEN:
        raise _Bad(f"{size} bytes, too short to hold a leader")
    leader_bytes = raw[:LEADER_LEN]
    if FIELD_TERMINATOR in leader_bytes:
        raise _Bad(f"leader contains a field terminator: {leader_bytes!r}")
    if _PRINTABLE_LEADER.fullmatch(leader_bytes):
        leader = leader_bytes.decode("ascii")
    else:
        leader = "".join(chr(b) if 0x20 <= b < 0x7F else " " for b in leader_bytes)
        repairs.append("leader-bad-bytes")

    stated = leader[:5]
    if not stated.isdigit():
        repairs.append("framed-on-terminator")
    elif int(stated) != size and not (int(stated) == MAX_ISO_LENGTH and size > MAX_ISO_LENGTH):
        repairs.append("framed-on-terminator")
    if size > MAX_ISO_LENGTH:
        repairs.append("oversize-record")

    directory_end = raw.find(FIELD_TERMINATOR, LEADER_LEN)
    if directory_end < 0:
        raise _Bad("bad directory: no field terminator after the leader")
    base_address = directory_end + 1
    stated_base = leader[12:17]
    if not (stated_base.isdigit() and (int(stated_base) == base_address
                                      or (int(stated_base) == MAX_ISO_LENGTH and base_address > MAX_ISO_LENGTH))):
        repairs.append("base-address-from-terminator")
    directory = raw[LEADER_LEN:directory_end]
    body = raw[base_address:-1]

    tagged, how = _fields_from_directory(directory, body)
    if how:
        repairs.append(how)

    data_fields = [data for tag, data in tagged if not (tag < "010" and tag.isdigit())]
    if data_fields and not any(SUBFIELD_DELIMITER in data for data in data_fields):
        raise _Bad("no data field has a subfield delimiter (0x1F): not MARC 21/UNIMARC field structure")
    if file_encoding is None:
        used = _choose_encoding(leader, [data for _, data in tagged], repairs)
    else:
        used = file_encoding
        if not forced and used in LEGACY_ENCODINGS and not all(data.isascii() for _, data in tagged):
            repairs.append(f"leader09-said-{'utf8' if leader[9] == 'a' else 'marc8'}-but-{used}")
    context = _Decoding(used, forced, repairs)

    record = pymarc.Record()
    fixed = (f"{size:05d}" if size <= MAX_ISO_LENGTH else "99999") + leader[5:12] + (
        f"{base_address:05d}" if base_address <= MAX_ISO_LENGTH else "99999") + leader[17:]
    record.leader = Leader(fixed)
    for tag, data in tagged:
        record.add_field(_decode_field(tag, data, context))
    if not record.fields:
        raise _Bad("no fields")
    return record, used, _dedupe(repairs)


_PRINTABLE_LEADER = re.compile(rb"[\x20-\x7e]{24}")
# A data field that needs nothing: two printable indicators, then subfields with printable codes.
_PLAIN_DATA_FIELD = re.compile(rb"[\x20-\x7e]{2}(?:\x1f[\x21-\x7e][^\x1f]*|\x1f)+")


def _clean_utf8_record(raw: bytes, *, declared: bool, light: bool = False) -> rmarc.Record | LightRecord | None:
    """rmarc's Record (or a LightRecord) when the record is exactly what the careful path would read without
    a repair, else None.

    That is: the leader states the true length and base address (and leader/09 says UTF-8 when the file's
    encoding is not settled), the directory gives each field's true length and offset, every byte is UTF-8
    already in NFC, control fields are ASCII, and every data field has plain indicators and subfield codes.
    """
    size = len(raw)
    if size <= LEADER_LEN or not _PRINTABLE_LEADER.fullmatch(raw, 0, LEADER_LEN) or raw[:5] != b"%05d" % size:
        return None
    if declared and raw[9] != 0x61:  # leader/09 "a"
        return None
    directory_end = raw.find(FIELD_TERMINATOR, LEADER_LEN)
    if directory_end < 0 or raw[12:17] != b"%05d" % (directory_end + 1):
        return None
    segments = raw[directory_end + 1:-1].split(FIELD_TERMINATOR)
    if segments[-1]:
        return None
    tagged = _directory_in_order(raw[LEADER_LEN:directory_end], segments[:-1])
    if not tagged:
        return None
    for tag, data in tagged:
        if tag < "010" and tag.isdigit():
            if not data.isascii():
                return None
        elif not _PLAIN_DATA_FIELD.fullmatch(data):
            return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not (text.isascii() or unicodedata.is_normalized("NFC", text)):
        return None
    if light:
        # The checks above make the text's 0x1E pieces the directory's fields, one for one, in order.
        pieces = text[directory_end + 1:-1].split("\x1e")
        return LightRecord(text[:LEADER_LEN], [LightField(tag, piece) for (tag, _), piece in zip(tagged, pieces)])
    return rmarc.Record(data=raw, to_unicode=True, force_utf8=True)


class LightField:
    """One field of a record that needed no repair: the part of pymarc's Field API that normalise reads.

    Subfields are split only when asked for, and are plain (code, value) tuples; most fields of a record are
    never looked at.
    """

    __slots__ = ("tag", "data", "indicator1", "indicator2", "_text", "_subfields")

    def __init__(self, tag: str, text: str) -> None:
        self.tag = tag
        if tag < "010" and tag.isdigit():
            self.data, self.indicator1, self.indicator2, self._subfields = text, None, None, []
        else:
            self.data, self.indicator1, self.indicator2, self._subfields = None, text[0], text[1], None
        self._text = text

    def is_control_field(self) -> bool:
        return self.data is not None

    @property
    def subfields(self) -> list[tuple[str, str]]:
        if self._subfields is None:
            # pymarc skips an empty piece (a 0x1F with no code)
            self._subfields = [(piece[0], piece[1:]) for piece in self._text[3:].split("\x1f") if piece]
        return self._subfields

    def get_subfields(self, *codes: str) -> list[str]:
        subfields = self._subfields if self._subfields is not None else self.subfields
        return [value for code, value in subfields if code in codes]


class LightRecord:
    """A record that needed no repair, as :class:`LightField` objects: what normalise reads, and the leader."""

    __slots__ = ("leader", "fields")

    def __init__(self, leader: str, fields: list[LightField]) -> None:
        self.leader = leader
        self.fields = fields


def _fields_from_directory(directory: bytes, body: bytes) -> tuple[list[tuple[str, bytes]], str | None]:
    """Pair directory tags with field data: by the stated offsets when they hold, else by 0x1E framing."""
    segments = body.split(FIELD_TERMINATOR)
    framed = segments[:-1]  # bytes after the last 0x1E are not a terminated field
    in_order = _directory_in_order(directory, framed)
    if in_order is not None:
        return in_order, None
    entries = None
    if len(directory) % DIRECTORY_ENTRY_LEN == 0:
        entries = [directory[i:i + DIRECTORY_ENTRY_LEN] for i in range(0, len(directory), DIRECTORY_ENTRY_LEN)]
    if entries is not None and all(_valid_tag(e[:3]) for e in entries):
        numeric = all(e[3:].isdigit() for e in entries)
        if numeric:
            sliced = []
            for e in entries:
                length, start = int(e[3:7]), int(e[7:12])
                stop = start + length - 1
                if length < 1 or stop >= len(body) or body[stop:stop + 1] != FIELD_TERMINATOR \
                        or FIELD_TERMINATOR in body[start:stop]:
                    break
                sliced.append((e[:3].decode("ascii"), body[start:stop]))
            else:
                return sliced, None
        if len(entries) == len(framed):
            order = range(len(entries))
            if numeric:  # saturated or shifted offsets still give the order of the fields
                order = sorted(order, key=lambda i: int(entries[i][7:12]))
            tags = [entries[i][:3].decode("ascii") for i in order]
            return list(zip(tags, framed)), "fields-framed-on-terminator"
    wide = _wide_directory(directory, framed)
    if wide is not None:
        return wide, "directory-wide-entries"
    if entries is None:
        raise _Bad(f"bad directory: {len(directory)} bytes is not a multiple of {DIRECTORY_ENTRY_LEN} "
                   f"({len(framed)} fields found)")
    for k, e in enumerate(entries):
        if not _valid_tag(e[:3]) or not e[3:].isdigit():
            raise _Bad(f"bad directory: entry {k} {e!r} is malformed")
    raise _Bad(f"bad directory: {len(entries)} entries but {len(framed)} fields terminated by 0x1E")


def _wide_directory(directory: bytes, framed: list[bytes]) -> list[tuple[str, bytes]] | None:
    """Accept a directory whose writer let lengths/offsets overflow their 4/5 digits (oversize records).

    Every entry must match the framed field's real length and offset, so nothing is guessed.
    """
    pos, offset, tagged = 0, 0, []
    for data in framed:
        tag = directory[pos:pos + 3]
        if not _valid_tag(tag):
            return None
        pos += 3
        for value, width in ((len(data) + 1, 4), (offset, 5)):
            text = str(value).zfill(width).encode("ascii")
            if directory[pos:pos + len(text)] != text:
                return None
            pos += len(text)
        tagged.append((tag.decode("ascii"), data))
        offset += len(data) + 1
    return tagged if pos == len(directory) and tagged else None


def _valid_tag(tag: bytes) -> bool:
    return _VALID_TAG.fullmatch(tag) is not None


_VALID_TAG = re.compile(rb"[\x21-\x7e]{3}")
_WELL_FORMED_DIRECTORY = re.compile(rb"(?:[\x21-\x7e]{3}[0-9]{9})+")


def _directory_in_order(directory: bytes, framed: list[bytes]) -> list[tuple[str, bytes]] | None:
    """The usual case, checked in one pass: entry k states exactly the length and offset of the k-th field.

    Gives what the offset-by-offset check would; anything else (None) takes the careful path.
    """
    if len(directory) != DIRECTORY_ENTRY_LEN * len(framed) or not _WELL_FORMED_DIRECTORY.fullmatch(directory):
        return None
    offset, position = 0, 3
    for data in framed:
        length = len(data) + 1
        if int(directory[position:position + 4]) != length or int(directory[position + 4:position + 9]) != offset:
            return None
        offset += length
        position += DIRECTORY_ENTRY_LEN
    tags = directory.decode("ascii")
    return [(tags[i:i + 3], data) for i, data in zip(range(0, len(directory), DIRECTORY_ENTRY_LEN), framed)]


def _choose_encoding(leader: str, fields: list[bytes], repairs: list[str]) -> str:
    """Decide from the bytes, using leader/09 only as the tie-breaker it is in real exports.

    Bytes that are not UTF-8 and read as Vietnamese in TCVN3, VNI or Windows-1258 better than in MARC-8 are
    taken for that legacy encoding, whatever leader/09 says (pymarc would turn "Hà Nội" into "Hæ Nǐ").
    """
    data = b"".join(fields)
    declared = "utf-8" if leader[9] == "a" else "marc-8"
    if not data.isascii() and b"\x1b" not in data and not _is_utf8(data):
        legacy = _legacy_reading(data)
        if legacy:
            repairs.append(f"leader09-said-{declared.replace('-', '')}-but-{legacy}")
            return legacy
    if declared == "utf-8":
        try:
            data.decode("utf-8")
            return "utf-8"
        except UnicodeDecodeError:
            pass
        if not _UTF8_MULTIBYTE.search(data) and _clean_marc8(fields):
            repairs.append("leader09-said-utf8-but-marc8")
            return "marc-8"
        return "utf-8"  # decoding will name the field with the bad bytes
    if b"\x1b" not in data and _UTF8_MULTIBYTE.search(data):
        try:
            data.decode("utf-8")
            repairs.append("leader09-said-marc8-but-utf8")
            return "utf-8"
        except UnicodeDecodeError:
            pass
    return "marc-8"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


_SUBFIELD_MARK = re.compile(rb"\x1f[\x00-\xff]")


def _text_bytes(fields: Iterable[bytes]) -> bytes:
    """The subfield values of some fields, separated by spaces: what reads as words for detection."""
    return b" ".join(_SUBFIELD_MARK.sub(b" ", data) for data in fields)


def _legacy_reading(data: bytes) -> str | None:
    """The legacy encoding in which these (non-UTF-8) field bytes read as Vietnamese, if one clearly does.

    It must read better than MARC-8 and than UTF-8 with its bad bytes replaced, at least half of its
    non-ASCII words must be Vietnamese syllables, with at least MIN_VIETNAMESE_WORDS different ones (one "ạ"
    is a Vietnamese word, and also what TCVN3 makes of a Latin-1 "£"). On thin evidence (a few words) the
    ASCII words must look Vietnamese too, so an English record with two stray bytes is not taken for TCVN3.
    """
    text = _SUBFIELD_MARK.sub(b" ", data)
    best, best_score, best_share, best_text = None, 0.0, 0.0, ""
    for name in LEGACY_ENCODINGS:
        try:
            decoded = decode_legacy(text, name)
        except UnicodeDecodeError:
            continue
        score, valid, evidence = vietnamese_score(decoded)
        if score > best_score:
            best, best_score, best_share, best_text = name, score, valid / max(evidence, 1), decoded
    if best is None or best_share < 0.5:
        return None
    words = _WORDS.findall(best_text)
    distinct = {word.lower() for word in words if not word.isascii() and is_vietnamese_syllable(word)}
    if len(distinct) < MIN_VIETNAMESE_WORDS:
        return None
    if len(distinct) < THIN_EVIDENCE and sum(map(is_vietnamese_syllable, words)) < len(words) / 3:
        return None
    marc8_text, problems = _marc8_decode(text)
    if not [p for p in problems if not p.startswith("soft:")] and vietnamese_score(marc8_text)[0] >= best_score:
        return None
    if vietnamese_score(text.decode("utf-8", "replace"))[0] >= best_score:
        return None
    return best


_WORDS = re.compile(r"[^\W\d_]+")


def _file_encoding(head: list[_Frame]) -> str | None:
    """The legacy encoding of the whole file, decided from the head of the record set; None when the head is
    UTF-8, MARC-8 (escape sequences) or plain ASCII, and each record decides for itself."""
    fields = []
    for frame in head:
        if frame.data is None:
            continue
        start = frame.data.find(FIELD_TERMINATOR, LEADER_LEN)
        if start > 0:
            fields.append(frame.data[start + 1:-1].replace(FIELD_TERMINATOR, b" "))
    data = _text_bytes(fields)
    if data.isascii() or b"\x1b" in data or _is_utf8(data):
        return None
    return _legacy_reading(data)


def _clean_marc8(fields: list[bytes]) -> bool:
    """True when every subfield decodes as MARC-8 without a doubtful byte or an implausible result."""
    for data in fields:
        for part in data.split(SUBFIELD_DELIMITER)[1:]:
            text, problems = _marc8_decode(part[1:])
            if problems or _IMPLAUSIBLE_MARC8.search(text):
                return False
    return True


@dataclass
class _Decoding:
    """How one record's values are decoded, and where the repairs it needs are noted."""

    encoding: str  # utf-8, marc-8, a legacy encoding or a Python codec
    forced: bool  # the registry said so: no per-field second guessing of UTF-8
    repairs: list[str]


def _new_field(tag: str, indicators: Indicators | None, subfields: list[Subfield], data: str | None
               ) -> pymarc.Field:
    """pymarc.Field as its constructor builds it for a 3-character tag, without re-checking what we checked."""
    built = _FIELD_NEW(pymarc.Field)
    built.tag = tag
    built.subfields = subfields
    built._indicators = indicators
    built.data = data
    built.control_field = indicators is None
    return built


_FIELD_NEW = pymarc.Field.__new__
_tuple_new = tuple.__new__  # Subfield and Indicators are named tuples
_PLAIN_INDICATORS = frozenset(chr(a) + chr(b) for a in range(0x20, 0x7F) for b in range(0x20, 0x7F))
# A delimiter followed by neither a printable code nor another delimiter (an empty subfield is skipped).
_ODD_SUBFIELD_CODE = re.compile("\x1f[^\x1f\x21-\x7e]")


def _decode_field(tag: str, data: bytes, context: _Decoding) -> pymarc.Field:
    repairs = context.repairs
    if tag < "010" and tag.isdigit():
        return _new_field(tag, None, [], _decode_control(tag, data, context.encoding, repairs))
    if context.encoding == "utf-8":
        field = _utf8_data_field(tag, data, repairs)
        if field is not None:
            return field
    parts = data.split(SUBFIELD_DELIMITER)
    indicators = parts[0]
    ind = [chr(b) if 0x20 <= b < 0x7F else " " for b in indicators[:2]]
    if len(indicators) < 2:
        repairs.append(f"missing-indicators:{tag}")
    elif len(indicators) > 2:  # pymarc drops these bytes too; say so, it is lost text
        repairs.append(f"text-outside-subfields:{tag}")
    elif ind != [chr(b) for b in indicators]:
        repairs.append(f"indicators-repaired:{tag}")
    ind += [" "] * (2 - len(ind))
    subfields = []
    for part in parts[1:]:
        if not part:
            continue
        code_byte = part[0]
        if 0x21 <= code_byte < 0x7F:
            code, value = chr(code_byte), part[1:]
        else:
            # A stray diacritic or control byte sits where the code belongs; keep its bytes with the
            # value and take the first ASCII character after it as the code.
            repairs.append(f"bad-subfield-code:{tag}")
            match = re.search(rb"[\x21-\x7e]", part)
            if match is None:
                code, value = "?", part
            else:
                code, value = chr(part[match.start()]), part[:match.start()] + part[match.start() + 1:]
        subfields.append(Subfield(code=code, value=_decode_value(tag, code, value, context)))
    return _new_field(tag, Indicators(*ind), subfields, None)


def _utf8_data_field(tag: str, data: bytes, repairs: list[str]) -> pymarc.Field | None:
    """The common case in one decode: valid UTF-8, two plain indicators, printable subfield codes.

    Gives exactly what the subfield-by-subfield path gives (UTF-8 splits cleanly on the ASCII delimiter, and
    NFC text stays NFC cut at a delimiter); None sends anything unusual down that path.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = text.split("\x1f")
    indicators = parts[0]
    if indicators not in _PLAIN_INDICATORS or _ODD_SUBFIELD_CODE.search(text):
        return None
    subfields = [_tuple_new(Subfield, (part[0], part[1:])) for part in parts[1:] if part]
    if not (text.isascii() or unicodedata.is_normalized("NFC", text)):
        changed = False
        for position, (code, value) in enumerate(subfields):
            nfc = unicodedata.normalize("NFC", value)
            if nfc != value:
                changed = True
                subfields[position] = Subfield(code, nfc)
        if changed:
            repairs.append("nfd→nfc")
    return _new_field(tag, _tuple_new(Indicators, indicators), subfields, None)


def _decode_control(tag: str, data: bytes, encoding: str, repairs: list[str]) -> str:
    """Control fields should be ASCII; bad bytes become U+FFFD instead of costing the record (pymarc drops it)."""
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        if encoding in LEGACY_ENCODINGS:
            return decode_legacy(data, encoding)
        if encoding != "marc-8":
            return data.decode(encoding)
    except UnicodeDecodeError:
        pass
    repairs.append(f"control-field-bad-bytes:{tag}")
    return data.decode("ascii", errors="replace")


def _decode_value(tag: str, code: str, value: bytes, context: _Decoding) -> str:
    encoding, repairs = context.encoding, context.repairs
    if encoding != "marc-8" and value.isascii():  # MARC-8 escapes and "&#x...;" are ASCII bytes too
        return value.decode("ascii")
    if encoding == "utf-8":
        try:
            return _utf8(value, repairs)
        except UnicodeDecodeError as exc:
            legacy = None if context.forced else _legacy_reading(value)
            if legacy:  # a legacy field in a UTF-8 record (mixed exports)
                repairs.extend((f"encoding:{legacy}", f"field-encoding:{legacy}:{tag}"))
                return decode_legacy(value, legacy)
            bad = value[max(exc.start - 8, 0):exc.end + 8]
            raise _Bad(f"invalid UTF-8 in field {tag} ${code} at byte {exc.start} of the subfield "
                       f"(around {bad!r})") from None
    if encoding in LEGACY_ENCODINGS:
        if _is_utf8(value) and not _reads_better_in(value, encoding):
            repairs.append(f"field-utf-8:{tag}")  # a UTF-8 field in a legacy file stays UTF-8
            return _utf8(value, repairs)
        try:
            text = decode_legacy(value, encoding)
        except UnicodeDecodeError as exc:
            raise _Bad(f"not decodable as {encoding} in field {tag} ${code}: byte {value[exc.start]:#04x} at "
                       f"{exc.start} is undefined (around {value[:24]!r})") from None
        repairs.append(f"encoding:{encoding}")
        return text
    if encoding != "marc-8":
        try:
            return unicodedata.normalize("NFC", value.decode(encoding))
        except UnicodeDecodeError as exc:
            raise _Bad(f"not decodable as {encoding} in field {tag} ${code} at byte {exc.start} "
                       f"(around {value[:24]!r})") from None
    text, problems = _marc8_decode(value)
    hard = [p for p in problems if not p.startswith("soft:")]
    if hard:
        raise _Bad(f"not decodable as MARC-8 in field {tag} ${code}: {hard[0]} "
                   f"(around {value[:24]!r}); another 8-bit encoding (CP866, TCVN3, ISO 5426...)?")
    if problems:
        repairs.append(f"marc8-missing-escape:{tag}")
    if "&#x" in text:
        decoded = _NCR.sub(_ncr_char, text)
        if decoded != text:
            repairs.append("marc8-ncr-decoded")
            text = unicodedata.normalize("NFC", decoded)
    return text


def _utf8(value: bytes, repairs: list[str]) -> str:
    """UTF-8 → NFC; decomposed text (macOS, some web forms) is composed and the repair noted."""
    text = value.decode("utf-8")
    nfc = unicodedata.normalize("NFC", text)
    if nfc != text:
        repairs.append("nfd→nfc")
    return nfc


def _reads_better_in(value: bytes, legacy: str) -> bool:
    """True when bytes that happen to be valid UTF-8 read as Vietnamese better in the legacy encoding."""
    try:
        legacy_score = vietnamese_score(decode_legacy(value, legacy))[0]
    except UnicodeDecodeError:
        return False
    return legacy_score > vietnamese_score(value.decode("utf-8"))[0]


def _ncr_char(match: re.Match) -> str:
    point = int(match.group(1), 16)
    return match.group(0) if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF else chr(point)


def _marc8_decode(data: bytes) -> tuple[str, list[str]]:
    """MARC-8 → Unicode with pymarc's tables and output, but reporting what pymarc silently blanks.

    Differences from pymarc: space (0x20) is a space in every G0 set; an ASCII byte unmapped in a non-Latin
    G0 set is read as ASCII (a missing escape back, reported "soft:"); unknown bytes, C1 controls and broken
    escapes or multibyte characters are reported (hard), and trailing combining marks are kept.
    """
    problems: list[str] = []
    g0, g1 = 0x42, 0x45
    out: list[str] = []
    combining: list[str] = []
    pos, size = 0, len(data)
    while pos < size:
        if data[pos] == 0x1B:
            nxt = data[pos + 1:pos + 2]
            if nxt in (b"(", b",", b"$"):
                if nxt == b"$" and data[pos + 2:pos + 3] == b",":
                    pos += 1
                final = data[pos + 2:pos + 3]
                if not final:
                    problems.append(f"incomplete escape sequence at byte {pos}")
                    break
                g0, pos = final[0], pos + 3
                continue
            if nxt in (b")", b"-"):
                final = data[pos + 2:pos + 3]
                if not final:
                    problems.append(f"incomplete escape sequence at byte {pos}")
                    break
                g1, pos = final[0], pos + 3
                continue
            if nxt and nxt[0] in marc8_mapping.CODESETS:
                g0, pos = nxt[0], pos + 2
                continue
            if nxt == b"s":
                g0, pos = 0x42, pos + 2
                continue
            problems.append(f"unknown escape sequence {data[pos:pos + 3]!r} at byte {pos}")
            pos += 1
            continue
        multibyte = g0 == 0x31
        start = pos
        if multibyte:
            if pos + 3 > size:
                problems.append(f"incomplete multibyte character at byte {pos}")
                break
            point = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
            pos += 3
        else:
            point = data[pos]
            pos += 1
        if point < 0x20 or point in (0x88, 0x89, 0x8D, 0x8E):
            continue  # controls and non-sort/joiner marks: dropped, as pymarc does
        if 0x80 <= point < 0xA0 and not multibyte:
            problems.append(f"byte 0x{point:02x} at {start} is a C1 control, not MARC-8 text")
            continue
        if point == 0x20 and not multibyte:
            out.append(" ")
            out.extend(combining)
            combining = []
            continue
        table = marc8_mapping.CODESETS.get(g1 if (point > 0x80 and not multibyte) else g0, {})
        hit = table.get(point)
        if hit is None:
            odd = marc8_mapping.ODD_MAP.get(point)
            if odd is not None:
                out.append(chr(odd))
                continue
            if not multibyte and point < 0x7F and g0 != 0x42:
                problems.append(f"soft:byte 0x{point:02x} at {start} read as ASCII")
                hit = (point, 0)
            else:
                problems.append(f"byte 0x{point:0{6 if multibyte else 2}x} at {start} has no MARC-8 mapping")
                continue
        char, is_combining = hit
        if is_combining:
            combining.append(chr(char))
        else:
            out.append(chr(char))
            out.extend(combining)
            combining = []
    out.extend(combining)
    return unicodedata.normalize("NFC", "".join(out)), problems


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------------------------------
# MARCXML


_XML_OPTIONS = dict(
    events=("start", "end"),
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def _localname(element) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _marc_records(stream: BinaryIO, *, recover: bool) -> Iterator[tuple[str, object]]:
    """Yield ("record", element) for each innermost <record>, and ("entities", names) if the DTD declares any.

    Innermost, so an OAI-PMH <record> wrapping a MARC <record> is not taken for one.  Finished records are
    cleared from the tree so memory does not grow with the file.
    """
    parser = etree.iterparse(stream, recover=recover, **_XML_OPTIONS)
    nested: list[bool] = []
    checked_dtd = False
    for event, element in parser:
        if not checked_dtd:
            checked_dtd = True
            dtd = element.getroottree().docinfo.internalDTD
            names = [entity.name for entity in dtd.iterentities()] if dtd is not None else []
            if names:
                yield "entities", names
                return
        if _localname(element) != "record":
            continue
        if event == "start":
            nested.append(False)
            continue
        had_inner = nested.pop() if nested else False
        if nested:
            nested[-1] = True
        if not had_inner:
            yield "record", element
        if not nested:
            element.clear(keep_tail=False)
            parent = element.getparent()
            while parent is not None and element.getprevious() is not None:
                del parent[0]


def _read_marcxml(source: _Source) -> Iterator[ParsedRecord | Unreadable]:
    index = 0
    error: etree.XMLSyntaxError | None = None
    with source.stream() as stream:
        try:
            for kind, item in _marc_records(stream, recover=False):
                if kind == "entities":
                    yield _entities_refused(index, source, item)
                    return
                yield _xml_result(index, item, [])
                index += 1
        except etree.XMLSyntaxError as exc:
            error = exc
    if error is None:
        return
    line, column = error.position if error.position else (error.lineno or 0, 0)
    yield Unreadable(index, None, f"record {index}: XML not well-formed at line {line}, column {column}: "
                                  f"{error.msg}; the record there is lost, later records are recovered "
                                  f"where possible")
    yield from _recover_after(source, line, index + 1)


def _entities_refused(index: int, source: _Source, names: list[str]) -> Unreadable:
    return Unreadable(index, None, f"{source.name}: the DOCTYPE declares entities ({', '.join(names[:5])}); "
                                   f"entities are refused (XXE, entity expansion), file not read")


def _recover_after(source: _Source, error_line: int, index: int) -> Iterator[ParsedRecord | Unreadable]:
    """Re-read in recover mode and yield the records that start after the first damaged spot.

    A record starting on or before a line the parser complained about is the damaged one (or was read
    already) and is not trusted.  Two passes: first find where records start and where the errors are.
    """
    scan = source.reopen()
    if scan is None:
        return
    starts: list[int] = []
    try:
        with scan:
            error_lines = _scan_recovered(scan, starts)
    except etree.XMLSyntaxError:
        return
    damaged: dict[int, int] = {}  # start line of a damaged record -> line of its error
    for line in sorted(set(error_lines)):
        position = bisect.bisect_right(starts, line)
        if line > error_line and position:
            damaged.setdefault(starts[position - 1], line)
    again = source.reopen()
    if again is None:
        return
    with again:
        try:
            for kind, element in _marc_records(again, recover=True):
                if kind == "entities":
                    yield _entities_refused(index, source, element)
                    return
                start = element.sourceline or 0
                if start <= error_line:
                    continue
                if start in damaged:
                    yield Unreadable(index, None, f"record {index} (line {start}): XML not well-formed at "
                                                  f"line {damaged[start]}; the record is lost")
                else:
                    yield _xml_result(index, element, ["xml-recovered-after-error"])
                index += 1
        except etree.XMLSyntaxError:
            return


def _scan_recovered(stream: BinaryIO, starts: list[int]) -> list[int]:
    """Start lines of the innermost records and the lines of all parser errors, in recover mode."""
    parser = etree.iterparse(stream, recover=True, **_XML_OPTIONS)
    nested: list[bool] = []
    for event, element in parser:
        if _localname(element) != "record":
            continue
        if event == "start":
            nested.append(False)
            continue
        had_inner = nested.pop() if nested else False
        if nested:
            nested[-1] = True
        if not had_inner:
            starts.append(element.sourceline or 0)
        if not nested:
            element.clear(keep_tail=False)
    return [entry.line for entry in parser.error_log]


def _xml_result(index: int, element, repairs: list[str]) -> ParsedRecord | Unreadable:
    line = element.sourceline
    try:
        record, more = _xml_record(element)
    except _Bad as exc:
        return Unreadable(index, None, f"record {index} (line {line}): {exc}")
    except Exception as exc:  # one record's surprise must not cost the rest of the file
        return Unreadable(index, None, f"record {index} (line {line}): unexpected {type(exc).__name__}: {exc}")
    return ParsedRecord(index, None, record, "utf-8", _dedupe(repairs + more))


def _xml_record(element) -> tuple[pymarc.Record, list[str]]:
    """Build a Record from a <record> element; structural defects of one record stay with that record."""
    for node in element.iter():
        if isinstance(node, etree._Entity):
            raise _Bad(f"entity reference {node.text} refused")
    repairs: list[str] = []
    record = pymarc.Record()
    leader_seen = False
    for child in element:
        name = _localname(child)
        if name == "leader":
            leader_seen = True
            record.leader = Leader(_xml_leader("".join(child.itertext()), repairs))
        elif name == "controlfield":
            tag = _xml_tag(child, repairs)
            value = "".join(child.itertext())
            control = pymarc.Field(tag=tag, data=value)
            if not control.control_field:  # e.g. Aleph "FMT": keep the value rather than lose it
                control.control_field, control.data = True, value
                repairs.append(f"controlfield-tag-not-control:{tag}")
            record.add_field(control)
        elif name == "datafield":
            record.add_field(_xml_datafield(child, repairs))
        elif name:
            repairs.append(f"ignored-element:{name}")
    if not leader_seen:
        repairs.append("missing-leader")
    if not record.fields:
        raise _Bad("no fields")
    return record, repairs


def _xml_tag(element, repairs: list[str]) -> str:
    tag = element.get("tag")
    if tag is None:
        raise _Bad(f"{_localname(element)} without a tag attribute at line {element.sourceline}")
    tag = tag.strip()
    if not tag:
        raise _Bad(f"{_localname(element)} with an empty tag at line {element.sourceline}")
    if tag.isdigit() and len(tag) < 3:
        repairs.append("tag-zero-padded")
        tag = tag.zfill(3)
    return tag


def _xml_datafield(element, repairs: list[str]) -> pymarc.Field:
    tag = _xml_tag(element, repairs)
    indicators = []
    for name in ("ind1", "ind2"):
        value = element.get(name)
        if value is None or len(value) != 1:
            repairs.append(f"indicators-repaired:{tag}")
            value = value[0] if value and value.strip() else " "
        indicators.append(value)
    subfields = []
    for child in element:
        name = _localname(child)
        if name != "subfield":
            if name:
                repairs.append(f"ignored-element:{name}")
            continue
        code = child.get("code")
        if code is None:
            raise _Bad(f"subfield without a code attribute in field {tag} at line {child.sourceline}")
        if len(code) != 1 or not code.isprintable() or code.isspace():
            if not code.strip():
                raise _Bad(f"subfield with an empty or blank code in field {tag} at line {child.sourceline}")
            repairs.append(f"bad-subfield-code:{tag}")
            code = code.strip()[0]
        subfields.append(Subfield(code=code, value="".join(child.itertext())))
    field = pymarc.Field(tag=tag, indicators=Indicators(*indicators), subfields=subfields)
    if field.control_field:  # a datafield that claims a control tag: keep the subfields as written
        field.control_field, field._indicators, field.subfields = False, Indicators(*indicators), subfields
        repairs.append(f"datafield-with-control-tag:{tag}")
    return field


def _xml_leader(text: str, repairs: list[str]) -> str:
    """pymarc refuses a leader that is not 24 characters; keep positions 0-19 and restore '4500'."""
    if len(text) == LEADER_LEN:
        return text
    repairs.append("leader-resized")
    body = text
    while body.endswith("4500"):
        body = body[:-4]
    return body[:20].ljust(20) + "4500"
