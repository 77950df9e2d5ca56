"""Turn a parsed MARC record into the canonical record (docs/architecture.md, "Canonical record").

Later stages never see MARC: this module is the one place that knows which tag and subfield carries what,
how ISBD punctuation is trimmed, and how Koha (952) or MARC holdings (852) describe copies. Every text value
goes through `lienthong.vietnamese.normalise_text`: NFC with the traditional tone placement ("hòa", "thủy").
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import msgspec
import pymarc

from lienthong.model import CanonicalRecord, Item
from lienthong.parse import ParsedRecord
from lienthong.vietnamese import normalise_text

__all__ = ["to_canonical"]

_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
# ISBD separators that end a cataloguing element: " /", " :", " ;", " =", ",", "."
_TRAILING_ISBD = re.compile(r"(?:\s*[/:;=,]|\.)\s*$")
# "[S.l.]", "[s.n.]" and their Vietnamese forms say "unknown"; they are not a place or a publisher.
_UNKNOWN = {"s.l.", "s.n.", "n.p.", "k.đ.", "k.nxb.", "knxb"}
# Words whose final period belongs to them (Vietnamese and English cataloguing abbreviations).
_ABBREVIATIONS = {"nxb", "tp", "tx", "cty", "xb", "tr", "co", "inc", "ltd", "jr", "sr", "st", "dr", "mr", "mrs",
                  "ms", "etc", "ed", "eds", "bros", "corp", "dept", "univ"}
_KOHA_STATUS = (("1", "lost"), ("0", "withdrawn"), ("4", "damaged"))


class _Text:
    """Normalise text the one way the contract demands, remembering which repairs that took (for audit)."""

    __slots__ = ("nfc_changed", "tones_moved")

    def __init__(self) -> None:
        self.nfc_changed = False
        self.tones_moved = False

    def __call__(self, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned, nfc_changed, tones_moved = _normalised(value)
        if nfc_changed or tones_moved:
            self.nfc_changed |= nfc_changed
            self.tones_moved |= tones_moved
        return cleaned


@lru_cache(maxsize=1 << 16)
def _normalised(value: str) -> tuple[str | None, bool, bool]:
    """(clean text or None, NFC changed it, tones moved); cached, since places, publishers and branches repeat."""
    nfc = unicodedata.normalize("NFC", value)
    spelled = normalise_text(nfc)
    cleaned = " ".join(spelled.split())
    return cleaned or None, nfc != value, spelled != nfc


def to_canonical(parsed: ParsedRecord, library_code: str, *, item_field: str = "952") -> CanonicalRecord:
    """Map one record to the contract; the hash is computed last, over content only."""
    if item_field not in _ITEM_MAPPERS:
        raise ValueError(f"unsupported item field {item_field!r} (use one of {sorted(_ITEM_MAPPERS)})")
    record = _Fields(parsed.record)
    text = _Text()

    control_001 = _control(record, "001")
    local_id = text(control_001) or f"idx:{parsed.index}"
    place, publisher, year = _publication(record, text)

    canonical = CanonicalRecord(
        library_code=library_code,
        local_id=local_id,
        record_index=parsed.index,
        byte_offset=parsed.offset,
        title=_title(record, text),
        author=_author(record, text),
        pub_place=place,
        publisher=publisher,
        pub_year=year,
        isbns=_dedupe(_isbn(value) for value in _values(record, ["020"], "a", text)),
        language=_language(record, text),
        keywords=_dedupe(_trim_heading(v) for v in _values(record, ["653"], "a", text)),
        subjects=_dedupe(_trim_heading(v) for v in _values(record, ["650", "651", "600", "610"], "a", text)),
        call_number=_call_number(record, text),
        quantity=None,  # MARC carries copies as item fields, never as a count
        encoding=parsed.encoding,
        repairs=list(parsed.repairs),
        items=_ITEM_MAPPERS[item_field](record.get_fields(item_field), text),
    )
    if text.nfc_changed:
        canonical.repairs.append("nfd→nfc")
    if text.tones_moved:
        canonical.repairs.append("tone-placement")
    canonical.repairs = _dedupe(canonical.repairs)
    canonical.compute_hash()
    return canonical


# --------------------------------------------------------------------------------------------------
# bibliographic fields


def _title(record: _Fields, text: _Text) -> str | None:
    for field in record.get_fields("245"):
        parts = [text(value) for value in field.get_subfields("a", "b", "n", "p")]
        joined = " ".join(part for part in parts if part)
        return _trim_isbd(joined)
    return None


def _author(record: _Fields, text: _Text) -> str | None:
    for tags in (("100", "110", "111"), ("700", "710")):
        for field in record.get_fields(*tags):
            for value in field.get_subfields("a"):
                name = _trim_name(text(value))
                if name:
                    return name
    return None


def _publication(record: _Fields, text: _Text) -> tuple[str | None, str | None, str | None]:
    """264 (publication, second indicator 1) first, then 260, then any other 264 (e.g. copyright ©2019)."""
    fields_264 = record.get_fields("264")
    candidates = [f for f in fields_264 if f.indicator2 == "1"] + record.get_fields("260") + [
        f for f in fields_264 if f.indicator2 != "1"]
    place = publisher = year = None
    if candidates:
        chosen = candidates[0]
        place = _clean_imprint(text(_first(chosen.get_subfields("a"))))
        publisher = _clean_imprint(text(_first(chosen.get_subfields("b"))))
    for field in candidates:
        for value in field.get_subfields("c"):
            match = _YEAR.search(text(value) or "")
            if match:
                year = match.group()
                break
        if year:
            break
    if year is None:
        fixed = _control(record, "008") or ""
        if fixed[7:11].isdigit():
            year = fixed[7:11]
    return place, publisher, year


def _language(record: _Fields, text: _Text) -> str | None:
    for value in _values(record, ["041"], "a", text):
        return value
    fixed = _control(record, "008") or ""
    code = fixed[35:38].strip()
    if not code or set(code) <= {"|"}:
        return None
    return text(code)


def _call_number(record: _Fields, text: _Text) -> str | None:
    for tag, codes in (("082", ("a", "b")), ("090", ("a", "b")), ("084", ("a",))):
        for field in record.get_fields(tag):
            parts = [text(_first(field.get_subfields(code))) for code in codes]
            if parts[0]:
                return " ".join(part for part in parts if part)
    return None


# --------------------------------------------------------------------------------------------------
# items


def _koha_items(fields: list[pymarc.Field], text: _Text) -> list[Item]:
    """Koha 952: $p barcode (the ĐKCB in Vietnamese school exports), $o call number, $8 collection, $y type,
    $a/$b home/holding branch and $c shelving location, $1 lost / $0 withdrawn / $4 damaged."""
    items = []
    for field in fields:
        sub = _subfields(field, text, _KOHA_CODES)
        barcode = sub.get("p")
        branch = sub.get("a") or sub.get("b")
        status = [name for code, name in _KOHA_STATUS if sub.get(code) not in (None, "0")]
        item = Item(
            accession_number=barcode or sub.get("i"),  # 952$i stock number when there is no barcode
            call_number=sub.get("o"),
            barcode=barcode,
            collection=sub.get("8"),
            item_type=sub.get("y"),
            location=" / ".join(part for part in (branch, sub.get("c")) if part) or None,
            status="; ".join(status) or None,
        )
        if any(msgspec.structs.astuple(item)):
            items.append(item)
    return items


def _holdings_items(fields: list[pymarc.Field], text: _Text) -> list[Item]:
    """MARC holdings 852: $p piece designation (barcode, ĐKCB), $h classification + $i item part, $b location."""
    items = []
    for field in fields:
        sub = _subfields(field, text, _HOLDINGS_CODES)
        call = " ".join(part for part in (sub.get("h"), sub.get("i")) if part) or None
        item = Item(accession_number=sub.get("p"), call_number=call, barcode=sub.get("p"), location=sub.get("b"))
        if any(msgspec.structs.astuple(item)):
            items.append(item)
    return items


_KOHA_CODES = frozenset("pio8yabc104")
_HOLDINGS_CODES = frozenset("phib")
_ITEM_MAPPERS = {"952": _koha_items, "852": _holdings_items}


# --------------------------------------------------------------------------------------------------
# helpers


class _Fields:
    """A record's fields by tag, indexed once: pymarc's get_fields scans every field on each of a dozen calls."""

    __slots__ = ("_fields", "_by_tag")

    def __init__(self, record: pymarc.Record) -> None:
        fields = record.fields
        by_tag: dict[str, list[pymarc.Field]] = {}
        for field in fields:
            tag = field.tag
            same = by_tag.get(tag)
            if same is None:
                by_tag[tag] = [field]
            else:
                same.append(field)
        self._fields, self._by_tag = fields, by_tag

    def get_fields(self, *tags: str) -> list[pymarc.Field]:
        """Fields with any of the tags, in record order (as pymarc.Record.get_fields); callers do not modify it."""
        if len(tags) == 1:
            return self._by_tag.get(tags[0], _NO_FIELDS)
        present = [tag for tag in tags if tag in self._by_tag]
        if len(present) == 1:
            return list(self._by_tag[present[0]])
        if not present:
            return []
        return [field for field in self._fields if field.tag in present]


_NO_FIELDS: list = []


def _control(record: _Fields, tag: str) -> str | None:
    for field in record.get_fields(tag):
        if field.is_control_field() and field.data:
            return field.data
    return None


def _values(record: _Fields, tags: list[str], code: str, text: _Text) -> list[str]:
    values = []
    for field in record.get_fields(*tags):
        if field.is_control_field():
            continue
        for value in field.get_subfields(code):
            cleaned = text(value)
            if cleaned:
                values.append(cleaned)
    return values


def _subfields(field: pymarc.Field, text: _Text, codes: frozenset[str]) -> dict[str, str]:
    """First non-empty value of each of ``codes``; other subfields (a copy's price, dates) are not normalised."""
    found: dict[str, str] = {}
    for code, value in field.subfields:  # pymarc's Subfield is a (code, value) named tuple
        if code in codes and code not in found:
            value = text(value)
            if value:
                found[code] = value
    return found


def _first(values: Iterable[str]) -> str | None:
    return next(iter(values), None)


def _trim_isbd(value: str | None) -> str | None:
    """Drop trailing ISBD punctuation ("Toán 10 /" → "Toán 10"); internal separators stay."""
    if value is None:
        return None
    previous = None
    while value != previous:
        previous = value
        value = value.strip()
        if value.endswith("...") or _ends_in_abbreviation(value):
            break
        value = _TRAILING_ISBD.sub("", value)
    return value.strip() or None


def _ends_in_abbreviation(value: str) -> bool:
    """"H." (Hà Nội), "Nxb.", "John F.", "N.Y.": their period is part of the word, not punctuation."""
    if not value.endswith("."):
        return False
    stem = value.rsplit(None, 1)[-1].lstrip("[(")[:-1]
    return len(stem) == 1 and stem.isalpha() or "." in stem or stem.lower() in _ABBREVIATIONS


def _trim_name(value: str | None) -> str | None:
    """"Nguyễn, Nhật Ánh," → "Nguyễn, Nhật Ánh"; the period of an initial ("Palmer, John F.") stays."""
    if value is None:
        return None
    value = value.rstrip(" ,;:/")
    if value.endswith(".") and not _ends_in_abbreviation(value):
        value = value[:-1]
    return value.strip(" ,") or None


@lru_cache(maxsize=1 << 14)
def _trim_heading(value: str | None) -> str | None:
    return _trim_name(_trim_isbd(value)) if value else None


@lru_cache(maxsize=1 << 14)
def _clean_imprint(value: str | None) -> str | None:
    """Place or publisher without brackets and trailing ISBD punctuation; "[S.l.]"/"[K.đ.]" mean unknown."""
    if value is None:
        return None
    value = _trim_isbd(value.replace("[", "").replace("]", ""))
    if value is None or value.lower() in _UNKNOWN:
        return None
    return value


def _isbn(value: str) -> str | None:
    """"0471875694 (pbk.) :" → "0471875694": qualifiers after the number are dropped before cleaning."""
    number = re.split(r"[(:;,]", value, maxsplit=1)[0]
    cleaned = "".join(ch for ch in number.upper() if ch in "0123456789X")
    return cleaned or None


def _dedupe(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))
