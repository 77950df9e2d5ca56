"""Circulation exports: loans, inter-library loan (ILL) requests, reader cards, collection rotation.

The same pattern as catalogue exports: landing (raw bytes, sha256) → parse (:func:`lienthong.tabular.read_table`,
CSV or XLSX with Vietnamese headers, or Koha's statistics columns) → validate (a Great Expectations suite per
kind, ``expectations/circulation_<kind>.json``, over chunk DataFrames) → load (staging, then one transaction);
every row read ends loaded, quarantined or unreadable; an export with half the rows of what it replaces is held.

Privacy happens at parse: only the columns named in :data:`FIELDS` are kept; the reader identifier becomes an
HMAC pseudonym (:mod:`lienthong.privacy`) in the same step, and names, phones, addresses and birth dates are
never read into a frame. An export replaces the library's rows of that kind between its earliest and latest
date (its window), so a monthly Koha report and a full-year register both work. Policy flags (overdue,
over the limit, access level) follow the owning library's lending policy in the registry (§III.3).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlalchemy as sa

from lienthong import landing, sources, warehouse
from lienthong.privacy import Pseudonymiser
from lienthong.registry import Registry, load_registry

log = logging.getLogger(__name__)

KINDS = ("loans", "ill", "cards", "rotation")
CHUNK_SIZE = 20_000
DEFAULT_HOLD_DROP = 0.5
MAX_REASONS = 20
LOCK_NAMESPACE = 7427  # catalogue runs use 7426: a library's circulation and catalogue runs do not wait on each other
CIRCULATION_FOLDER = "circulation"
EXPORT_SUFFIXES = {".csv", ".xlsx", ".txt", ".tsv"}

CATEGORIES = ("pupil", "teacher", "staff", "other")
CHANNELS = ("home_library", "at_owner", "post", "online")
#: Access levels of §III.2b as the registry names them (Library.access, per library, collection or item).
ACCESS_LEVELS = ("metadata_only", "read_on_site", "defined_use", "paid_service")
#: The ILL delivery channels an access level rules out: a metadata-only item is not lent at all, a
#: read-on-site item only to a reader who comes to the owning library.
FORBIDDEN_CHANNELS = {"metadata_only": set(CHANNELS), "read_on_site": {"home_library", "post", "online"}}
#: For a registry without access levels (files older than the access section): lending allowed.
DEFAULT_ACCESS_LEVEL = "defined_use"


class CirculationError(RuntimeError):
    """A circulation run failed as a whole; the message names the library and the file, never a reader."""


# ------------------------------------------------------------------------------------------ the columns
#: Kept fields per kind and the headers that mean them (Vietnamese register headers and Koha's columns).
FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "loans": {
        "library": ("Thư viện", "Mã thư viện", "branch", "branchcode"),
        "owner_library": ("Thư viện sở hữu", "Thư viện chủ quản", "homebranch"),
        "event_type": ("Loại giao dịch", "Giao dịch", "type"),
        "event_at": ("Ngày giao dịch", "Thời gian giao dịch", "datetime"),
        "checkout_at": ("Ngày mượn",),
        "renewed_at": ("Ngày gia hạn",),
        "returned_at": ("Ngày trả", "Ngày trả thực tế"),
        "item_ref": ("Số ĐKCB", "ĐKCB", "Mã ĐKCB", "Mã vạch", "barcode", "itemnumber"),
        "patron": ("Mã bạn đọc", "Số thẻ", "Mã thẻ", "cardnumber", "borrowernumber"),
        "patron_category": ("Đối tượng", "Loại bạn đọc", "categorycode"),
    },
    "ill": {
        "request_ref": ("Mã yêu cầu", "Số phiếu", "illrequest_id"),
        "requesting_library": ("Thư viện yêu cầu", "Thư viện đề nghị", "Thư viện cấp thẻ"),
        "owning_library": ("Thư viện sở hữu", "Thư viện cho mượn", "Thư viện có tài liệu"),
        "item_ref": ("Số ĐKCB", "ĐKCB", "Mã vạch", "barcode"),
        "record_ref": ("Mã biểu ghi", "Số kiểm soát", "biblionumber"),
        "patron": ("Mã bạn đọc", "Số thẻ", "Mã thẻ", "cardnumber", "borrowernumber"),
        "patron_category": ("Đối tượng", "Loại bạn đọc", "categorycode"),
        "requested_at": ("Ngày yêu cầu",),
        "approved_at": ("Ngày duyệt", "Ngày chấp nhận"),
        "shipped_at": ("Ngày gửi", "Ngày chuyển"),
        "received_at": ("Ngày nhận",),
        "returned_at": ("Ngày trả", "Ngày hoàn trả"),
        "closed_at": ("Ngày hủy/từ chối", "Ngày hủy", "Ngày từ chối"),
        "status": ("Trạng thái", "status"),
        "reason": ("Lý do", "Lý do hủy/từ chối"),
        "channel": ("Hình thức nhận", "Kênh nhận", "Phương thức nhận"),
    },
    "cards": {
        "patron": ("Số thẻ", "Mã thẻ", "Mã bạn đọc", "cardnumber"),
        "library": ("Thư viện cấp thẻ", "Thư viện", "branchcode"),
        "patron_category": ("Đối tượng", "Loại bạn đọc", "categorycode"),
        "issued_on": ("Ngày cấp", "Ngày cấp thẻ", "dateenrolled"),
        "expires_on": ("Ngày hết hạn", "Hạn thẻ", "dateexpiry"),
        "valid_at": ("Nơi sử dụng", "Phạm vi sử dụng", "Thư viện/nhóm sử dụng"),
    },
    "rotation": {
        "rotation_ref": ("Mã đợt", "Đợt luân chuyển", "Số phiếu luân chuyển"),
        "from_library": ("Thư viện gửi", "Từ thư viện"),
        "to_library": ("Thư viện nhận", "Đến thư viện"),
        "item_ref": ("Số ĐKCB", "ĐKCB", "Mã vạch", "barcode"),
        "sent_on": ("Ngày gửi", "Ngày chuyển đi"),
        "received_on": ("Ngày nhận",),
        "returned_on": ("Ngày trả", "Ngày hoàn trả", "Ngày thu hồi"),
    },
}
#: Fields a header must have for a file to be of that kind.
SIGNATURE = {
    "loans": ({"item_ref", "patron", "event_type", "event_at"}, {"item_ref", "patron", "checkout_at"}),
    "ill": ({"owning_library", "requested_at"},),
    "cards": ({"patron", "issued_on"},),
    "rotation": ({"to_library", "item_ref", "sent_on"},),
}
#: Personal data recognised by name, dropped at parse and reported by label only (every other unknown
#: column is dropped too: the kept fields are an allow-list).
PERSONAL_HEADERS = {
    "name": ("Họ và tên", "Họ tên", "Tên bạn đọc", "Tên", "surname", "firstname", "othernames"),
    "birth_date": ("Ngày sinh", "Năm sinh", "dateofbirth"),
    "phone": ("Điện thoại", "Số điện thoại", "SĐT", "phone", "mobile"),
    "address": ("Địa chỉ", "Nơi ở", "address", "city"),
    "email": ("Email", "Thư điện tử"),
    "class": ("Lớp",),
}
KEY_DATE = {"loans": "event_at", "ill": "requested_at", "cards": "issued_on", "rotation": "sent_on"}
TARGET = {"loans": "circulation.loan_event", "ill": "circulation.ill_request", "cards": "circulation.reader_card",
          "rotation": "circulation.rotation_item"}
SUITE = {kind: f"circulation_{kind}" for kind in KINDS}


def _fold(text: str) -> str:
    from lienthong.tabular import header_key

    return header_key(text)


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)).casefold()


# header key → (field, rank): when two columns mean one field, the alias listed first wins (cardnumber, the
# shared card, over Koha's internal borrowernumber; barcode over itemnumber).
_ALIASES = {kind: {_fold(alias): (name, rank) for name, aliases in fields.items()
                   for rank, alias in enumerate(aliases)} for kind, fields in FIELDS.items()}
_PERSONAL = {_fold(alias): label for label, aliases in PERSONAL_HEADERS.items() for alias in aliases}
ALL_HEADERS = sorted({a for fields in FIELDS.values() for aliases in fields.values() for a in aliases})


# ------------------------------------------------------------------------------------------ value parsing
_DMY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_YMD = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?)?$")
ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$"


def parse_timestamp(text: str | None) -> str | None:
    """'YYYY-MM-DDTHH:MM:SS' from the date spellings of exports (ISO, dd/mm/yyyy [hh:mm]); other text is
    returned unchanged so the suite reports it, None for an empty cell."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    match = _YMD.match(value)
    if match:
        y, m, d, hh, mm, ss = match.groups()
    else:
        match = _DMY.match(value)
        if not match:
            return value
        d, m, y, hh, mm, ss = match.groups()
    try:
        moment = _dt.datetime(int(y), int(m), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
    except ValueError:
        return value
    return moment.isoformat(timespec="seconds")


_EVENT_TYPES = {"issue": "checkout", "checkout": "checkout", "muon": "checkout", "cho muon": "checkout",
                "renew": "renewal", "renewal": "renewal", "gia han": "renewal",
                "return": "return", "tra": "return", "nhan tra": "return"}
_CATEGORIES = {"hoc sinh": "pupil", "hs": "pupil", "pupil": "pupil", "student": "pupil", "st": "pupil",
               "giao vien": "teacher", "gv": "teacher", "teacher": "teacher", "t": "teacher",
               "nhan vien": "staff", "can bo": "staff", "cb": "staff", "nv": "staff", "staff": "staff",
               "s": "staff", "kh": "other", "khac": "other", "other": "other", "ban doc khac": "other"}
_CHANNELS = {"qua thu vien cap the": "home_library", "thu vien cap the": "home_library",
             "home_library": "home_library", "via home library": "home_library",
             "tai thu vien so huu": "at_owner", "truc tiep": "at_owner", "at_owner": "at_owner",
             "at the owner": "at_owner", "buu dien": "post", "qua buu dien": "post", "post": "post",
             "truc tuyen": "online", "online": "online", "khong gian mang": "online"}
_STATUSES = {"tu choi": "refused", "refused": "refused", "huy": "cancelled", "da huy": "cancelled",
             "cancelled": "cancelled", "canceled": "cancelled"}


def _mapped(table: dict[str, str], value: str | None) -> str | None:
    """The canonical value of a coded cell, or the cell itself (the suite reports it) when unknown."""
    if value is None:
        return None
    return table.get(" ".join(_ascii(value).split()), value)


def _category(value: str | None) -> str | None:
    if value is None:
        return None
    return _CATEGORIES.get(" ".join(_ascii(value).split()), "other")


# ------------------------------------------------------------------------------------------ rows → frames
@dataclass
class Header:
    """How a file's header maps to the kept fields; what was dropped is reported by label, never by value."""

    kind: str
    layout: str
    columns: dict[str, int]
    width: int
    dropped_personal: list[str]
    dropped_other: int


def classify(header: list[str]) -> str | None:
    """The kind whose signature the header carries best (None when it matches none)."""
    keys = [_fold(h) for h in header]
    best, best_score = None, 0
    for kind in KINDS:
        present = {_ALIASES[kind][k][0] for k in keys if k in _ALIASES[kind]}
        if any(sig <= present for sig in SIGNATURE[kind]):
            score = len(present)
            if score > best_score:
                best, best_score = kind, score
    return best


def map_header(header: list[str], kind: str) -> Header:
    chosen: dict[str, tuple[int, int]] = {}
    personal: list[str] = []
    other = 0
    for position, text in enumerate(header):
        key = _fold(text)
        if key in _ALIASES[kind]:
            name, rank = _ALIASES[kind][key]
            if name not in chosen or rank < chosen[name][0]:
                if name in chosen:
                    other += 1
                chosen[name] = (rank, position)
            else:
                other += 1
        elif key in _PERSONAL:
            personal.append(_PERSONAL[key])
        elif key:
            other += 1
    koha = {"datetime", "type"} <= {_fold(h) for h in header}
    columns = {name: position for name, (_, position) in chosen.items()}
    return Header(kind, "koha" if koha else "vi", columns, len(header), sorted(set(personal)), other)


@dataclass
class Row:
    """One export row reduced to its kept fields; ``values`` never holds a raw reader identifier."""

    row_number: int
    values: dict[str, Any] | None = None  # None: unreadable
    reason: str | None = None


def read_rows(path: Path, kind: str | None, pseudonymiser: Pseudonymiser,
              encoding: str | None = None) -> tuple[Header, Iterator[Row]]:
    """The file's header mapping and a stream of its rows with personal data already gone."""
    from lienthong.tabular import read_table

    table = read_table(path, format="auto", encoding=encoding, expected_headers=ALL_HEADERS)
    detected = kind or classify(table.header)
    if detected is None:
        table.close()
        raise CirculationError(
            f"{path.name}: không nhận ra loại tệp lưu thông (mượn trả, mượn liên thư viện, thẻ bạn đọc, luân "
            f"chuyển) từ dòng tiêu đề ở dòng {table.header_row}; give --kind or use the documented headers")
    header = map_header(table.header, detected)

    def rows() -> Iterator[Row]:
        with table:
            for number, cells in table.rows:
                extra = [c for c in cells[header.width:] if c is not None]
                if extra:
                    yield Row(number, reason=f"dòng {number}: {len(cells)} ô nhưng tiêu đề chỉ có {header.width} "
                                             f"cột; dữ liệu bị lệch cột, không đọc được")
                    continue
                raw = {name: cells[pos] for name, pos in header.columns.items()}
                yield Row(number, _reduce(detected, raw, pseudonymiser))
    return header, rows()


def _reduce(kind: str, raw: dict[str, str | None], pseudonymiser: Pseudonymiser) -> dict[str, Any]:
    """Kept values of one row: the reader pseudonymised, dates normalised, codes mapped."""
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "patron":
            continue
        values[name] = value
    values["patron_hash"] = pseudonymiser.pseudonym(raw.get("patron"))
    for name in list(values):
        if name.endswith(("_at", "_on")):
            values[name] = parse_timestamp(values[name])
    if "patron_category" in values:
        values["patron_category"] = _category(values["patron_category"])
    if kind == "loans":
        values["event_type"] = _mapped(_EVENT_TYPES, values.get("event_type"))
    elif kind == "ill":
        values["channel"] = _mapped(_CHANNELS, values.get("channel"))
        values["status"] = _mapped(_STATUSES, values.get("status"))
    elif kind == "cards":
        codes = re.split(r"[;,\n]+", values.get("valid_at") or "")
        values["valid_at"] = [c.strip().upper() for c in codes if c.strip()]
    return values


# ------------------------------------------------------------------------------------------ validation
FRAME_COLUMNS = {
    # a loan-register line is checked as its checkout: event_at holds Ngày mượn
    "loans": ("library", "owner_library", "event_type", "event_at", "renewed_at", "returned_at",
              "item_ref", "patron_hash", "patron_category"),
    "ill": ("request_ref", "requesting_library", "owning_library", "item_ref", "record_ref", "item_or_record",
            "patron_hash", "patron_category", "requested_at", "approved_at", "shipped_at", "received_at",
            "returned_at", "closed_at", "status", "reason", "channel"),
    "cards": ("library", "patron_hash", "patron_category", "issued_on", "expires_on", "valid_at",
              "unknown_valid_at"),
    "rotation": ("rotation_ref", "from_library", "to_library", "item_ref", "sent_on", "received_on",
                 "returned_on"),
}


@dataclass
class RowFailure:
    row_number: int
    rule: str
    field: str
    value: str | None
    severity: str
    message_vi: str
    fix_vi: str


def frame(kind: str, rows: list[Row], library_code: str, registry: Registry):
    """One DataFrame row per readable row, text columns as object dtype (None, never NaN)."""
    import pandas as pd

    groups = set(registry.groups)
    data: dict[str, list] = {name: [] for name in ("row_key", *FRAME_COLUMNS[kind])}
    for row in rows:
        v = dict(row.values)
        if kind == "loans":
            v["library"] = v.get("library") or library_code
            v["owner_library"] = v.get("owner_library") or library_code
            if v.get("event_type") is None and v.get("checkout_at") is not None and "event_at" not in v:
                v["event_type"], v["event_at"] = "checkout", v["checkout_at"]
        elif kind == "ill":
            v["requesting_library"] = v.get("requesting_library") or library_code
            v["item_or_record"] = v.get("item_ref") or v.get("record_ref")
        elif kind == "cards":
            v["library"] = v.get("library") or library_code
            unknown = [c for c in v.get("valid_at") or [] if c not in registry.libraries and c not in groups]
            v["unknown_valid_at"] = ", ".join(unknown) or None
            v["valid_at"] = "; ".join(v.get("valid_at") or []) or None
        elif kind == "rotation":
            v["from_library"] = v.get("from_library") or library_code
        data["row_key"].append(str(row.row_number))
        for name in FRAME_COLUMNS[kind]:
            data[name].append(v.get(name))
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in data.items()})


_batch_definitions: dict[str, Any] = {}


def _batch_definition(kind: str):
    """One pandas data source for circulation, one dataframe asset per kind, on the project's GX context."""
    from lienthong import validate

    with validate._lock:
        if kind not in _batch_definitions:
            context = validate.get_context()
            try:
                source = context.data_sources.get("lienthong_circulation")
            except Exception:  # GX raises its own not-found error type
                source = context.data_sources.add_pandas(name="lienthong_circulation")
            asset = source.add_dataframe_asset(name=f"circulation_{kind}")
            _batch_definitions[kind] = asset.add_batch_definition_whole_dataframe("whole_dataframe")
        return _batch_definitions[kind]


_suites: dict[tuple, Any] = {}


def _suite_for(kind: str, df):
    """The kind's suite without the expectations that cannot fail on this chunk: those on columns that are
    empty in every row (they ignore missing values). ``expect_column_values_to_not_be_null`` always runs."""
    from lienthong import validate

    name = SUITE[kind]
    if name not in _suites:
        validate.load_suite(name)  # checks the file and the meta contract once per process
        with (validate.expectations_dir() / f"{name}.json").open(encoding="utf-8") as handle:
            _suites[name] = json.load(handle)
    data = _suites[name]
    empty = {column for column in df.columns if df[column].isna().all()}
    kept = tuple(position for position, e in enumerate(data["expectations"])
                 if e["type"] == "expect_column_values_to_not_be_null"
                 or not {e["kwargs"].get(k) for k in ("column", "column_A", "column_B")} - {None} <= empty)
    key = (name, kept)
    if key not in _suites:
        import great_expectations as gx

        _suites[key] = gx.ExpectationSuite(**dict(data, expectations=[data["expectations"][p] for p in kept]))
    return _suites[key]


def validate_frame(kind: str, df, library_code: str, registry: Registry) -> list[RowFailure]:
    """Run ``expectations/circulation_<kind>.json`` on the chunk; one RowFailure per failing (row, rule)."""
    from lienthong import validate

    suite = _suite_for(kind, df)
    parameters = {"library_codes": sorted(registry.libraries), "this_library": [library_code]}
    result = validate.run_suite_on(_batch_definition(kind), df, suite, parameters)
    row_keys = df["row_key"].tolist()
    failures: list[RowFailure] = []
    problems: list[str] = []
    for outcome in result.results:
        meta = outcome.expectation_config.meta
        raised = validate._raised(outcome.exception_info)
        if raised:
            problems.append(f"{meta['rule']}: {'; '.join(raised)}")
            continue
        kwargs = outcome.expectation_config.kwargs
        column = kwargs.get("column") or kwargs.get("column_A") or meta["field"]
        for position, value in validate.unexpected_rows(df, (outcome.result or {}).get("unexpected_index_list") or [],
                                                        column):
            failures.append(RowFailure(int(row_keys[position]), meta["rule"], meta["field"],
                                       None if value is None else str(value), meta["severity"],
                                       meta["message_vi"], meta["fix_vi"]))
    if problems:
        raise validate.ValidationRunError(f"suite {SUITE[kind]!r} could not be evaluated: " + " | ".join(problems))
    return failures


# ------------------------------------------------------------------------------------------ warehouse rows
def _ts(value: str | None) -> str | None:
    return value if value and re.match(ISO_TIMESTAMP, value) else None


def _day(value: str | None) -> str | None:
    return value[:10] if _ts(value) else None


def access_level(registry: Registry, owner: str, item_ref: str | None, collection: str | None) -> str:
    """The owning library's access level for the copy: item, else collection, else library (registry)."""
    policy = getattr(registry.libraries.get(owner), "access", None)
    if policy is None:
        return DEFAULT_ACCESS_LEVEL
    return policy.level_of(collection, item_ref)


def lending_forbidden(level: str, channel: str | None) -> bool:
    return (channel or "home_library") in FORBIDDEN_CHANNELS.get(level, ())


def item_collections(engine: sa.Engine, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """(owning library, ĐKCB) → collection (952$8) of the copy in the current catalogue, where it is loaded."""
    if not pairs:
        return {}
    owners = sorted({owner for owner, _ in pairs})
    items = sorted({item for _, item in pairs})
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            """SELECT i.library_code, i.accession_number, min(i.collection) AS collection
               FROM core.item i JOIN core.record r ON r.record_id = i.record_id AND r.valid_to IS NULL
               WHERE i.library_code = ANY(:owners) AND i.accession_number = ANY(:items)
               GROUP BY i.library_code, i.accession_number"""), {"owners": owners, "items": items}).all()
    return {(row.library_code, row.accession_number): row.collection for row in rows}


def warehouse_rows(kind: str, row: Row, batch_id: int, library_code: str, registry: Registry,
                   collections: dict | None = None) -> list[dict]:
    """The target-table rows of one loadable export row (a loan-register line gives up to three events)."""
    v = row.values
    base = {"batch_id": batch_id, "row_number": row.row_number}
    if kind == "loans":
        owner = v.get("owner_library") or library_code
        common = dict(base, library_code=library_code, owner_library=owner, item_ref=v["item_ref"],
                      patron_hash=v.get("patron_hash"), patron_category=v.get("patron_category"))
        if v.get("event_type") and v.get("event_at"):
            events = [(v["event_type"], v["event_at"])]
        else:
            events = [("checkout", v.get("checkout_at"))]
            events += [("renewal", v["renewed_at"])] if _ts(v.get("renewed_at")) else []
            events += [("return", v["returned_at"])] if _ts(v.get("returned_at")) else []
        return [dict(common, event_type=kind_, event_at=at) for kind_, at in events]
    if kind == "ill":
        status = v.get("status")
        outcome = status if status in ("refused", "cancelled") else next(
            (name for name, column in (("returned", "returned_at"), ("received", "received_at"),
                                       ("shipped", "shipped_at"), ("approved", "approved_at"))
             if _ts(v.get(column))), "requested")
        if outcome == "requested" and _ts(v.get("closed_at")):
            outcome = "cancelled"
        collection = (collections or {}).get((v["owning_library"], v.get("item_ref")))
        level = access_level(registry, v["owning_library"], v.get("item_ref"), collection)
        return [dict(base, library_code=library_code, request_ref=v.get("request_ref"),
                     requesting_library=v.get("requesting_library") or library_code,
                     owning_library=v["owning_library"], item_ref=v.get("item_ref"), record_ref=v.get("record_ref"),
                     patron_hash=v.get("patron_hash"), patron_category=v.get("patron_category"),
                     channel=v.get("channel"), requested_at=v["requested_at"], approved_at=_ts(v.get("approved_at")),
                     shipped_at=_ts(v.get("shipped_at")), received_at=_ts(v.get("received_at")),
                     returned_at=_ts(v.get("returned_at")), closed_at=_ts(v.get("closed_at")), outcome=outcome,
                     reason=v.get("reason"), access_level=level,
                     access_forbidden=outcome not in ("refused", "cancelled")
                     and lending_forbidden(level, v.get("channel")),
                     overdue=False, over_limit=False)]
    if kind == "cards":
        valid_at = list(v.get("valid_at") or [])
        libraries = {library_code}
        for code in valid_at:
            if code in registry.groups:
                libraries.update(m.library for m in registry.groups[code].members)
            elif code in registry.libraries:
                libraries.add(code)
        return [dict(base, library_code=library_code, card_hash=v["patron_hash"],
                     patron_category=v["patron_category"], issued_on=_day(v["issued_on"]),
                     expires_on=_day(v.get("expires_on")), valid_at=valid_at, valid_libraries=sorted(libraries))]
    return [dict(base, library_code=library_code, rotation_ref=v["rotation_ref"],
                 from_library=v.get("from_library") or library_code, to_library=v["to_library"],
                 item_ref=v["item_ref"], sent_on=_day(v["sent_on"]), received_on=_day(v.get("received_on")),
                 returned_on=_day(v.get("returned_on")))]


def _key_dates(kind: str, row: Row) -> list[str]:
    v = row.values
    if kind == "loans":
        candidates = [v.get("event_at"), v.get("checkout_at"), v.get("renewed_at"), v.get("returned_at")]
    else:
        candidates = [v.get(KEY_DATE[kind])]
    return [c for c in candidates if _ts(c)]


# ------------------------------------------------------------------------------------------ the run
@dataclass
class CirculationResult:
    library: str
    kind: str | None
    status: str  # applied | held | unchanged | no_export | failed
    batch_id: int | None = None
    file: str | None = None
    sha256: str | None = None
    layout: str | None = None
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    unreadable: int = 0
    message: str | None = None
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    warning_reasons: dict[str, int] = field(default_factory=dict)
    dropped_personal_columns: list[str] = field(default_factory=list)

    @property
    def conserved(self) -> bool:
        return self.read == self.loaded + self.quarantined + self.unreadable

    def to_dict(self) -> dict:
        return dict(asdict(self), conserved=self.conserved)


def circulation_folder(library_code: str, location: str | None = None) -> Path:
    return sources.drop_folder(library_code, location) / CIRCULATION_FOLDER


def find_exports(library_code: str, location: str | None = None) -> dict[str, Path]:
    """The newest export of each kind in the library's ``circulation/`` drop folder (kind read from the header)."""
    folder = circulation_folder(library_code, location)
    if not folder.is_dir():
        return {}
    from lienthong.parse import ParseError
    from lienthong.tabular import read_table

    newest: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in EXPORT_SUFFIXES:
            continue
        try:
            with read_table(path, expected_headers=ALL_HEADERS) as table:
                kind = classify(table.header)
        except ParseError:
            kind = None
        if kind is None:
            log.warning("library %s: %s is not a recognised circulation export; skipped", library_code, path.name)
            continue
        current = newest.get(kind)
        if current is None or (path.stat().st_mtime_ns, path.name) > (current.stat().st_mtime_ns, current.name):
            newest[kind] = path
    return newest


def ingest_circulation(library_code: str, file: str | Path | None = None, kind: str | None = None, *,
                       registry: Registry | None = None, engine: sa.Engine | None = None,
                       pseudonymiser: Pseudonymiser | None = None,
                       chunk_size: int = CHUNK_SIZE) -> list[CirculationResult]:
    """Ingest the library's newest export of each kind (or ``file``); one result per export."""
    if kind is not None and kind not in KINDS:
        raise CirculationError(f"unknown circulation kind {kind!r} (one of {', '.join(KINDS)})")
    pseudonymiser = pseudonymiser or Pseudonymiser()  # refuses before anything is read without a key
    registry = registry or load_registry()
    library = registry.libraries.get(library_code)
    if library is None:
        raise CirculationError(f"library {library_code!r} is not in the registry {registry.path}")
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise CirculationError(f"library {library_code}: circulation export {path} does not exist")
        exports = {kind: path}
    else:
        exports = find_exports(library_code, library.source.location)
        if kind is not None:
            exports = {k: p for k, p in exports.items() if k == kind}
        if not exports:
            folder = circulation_folder(library_code, library.source.location)
            return [CirculationResult(library_code, kind, "no_export", message=f"no circulation export in {folder}")]
    engine = engine or warehouse.engine()
    order = sorted(exports.items(), key=lambda item: KINDS.index(item[0]) if item[0] else -1)
    return [_ingest_file(engine, registry, library, k, path, pseudonymiser, chunk_size) for k, path in order]


def _ingest_file(engine, registry, library, kind, path: Path, pseudonymiser, chunk_size) -> CirculationResult:
    code = library.code
    delivery = landing.land(engine, code, path, f"{library.source.transport}:{CIRCULATION_FOLDER}/{code}")
    os.chmod(delivery.stored_path, 0o400)  # raw exports hold personal data: owner-readable only
    result = CirculationResult(code, kind, "failed", file=str(path), sha256=delivery.sha256)
    with engine.connect() as lock_conn:
        lock_conn.execute(sa.text("SELECT pg_advisory_lock(:ns, hashtext(:l))"), {"ns": LOCK_NAMESPACE, "l": code})
        try:
            return _ingest_locked(engine, registry, library, kind, path, delivery, pseudonymiser, result,
                                  chunk_size)
        finally:
            lock_conn.execute(sa.text("SELECT pg_advisory_unlock(:ns, hashtext(:l))"),
                              {"ns": LOCK_NAMESPACE, "l": code})
            lock_conn.commit()


def _ingest_locked(engine, registry, library, kind, path, delivery, pseudonymiser, result, chunk_size):
    from lienthong.parse import ParseError

    code = library.code
    try:
        header, rows = read_rows(delivery.stored_path, kind, pseudonymiser, library.source.encoding)
    except (ParseError, CirculationError) as exc:
        result.message = _without_content(f"library {code}, file {path.name}: {exc}", delivery, path)
        return result
    kind = result.kind = header.kind
    result.layout = header.layout
    result.dropped_personal_columns = header.dropped_personal
    with engine.begin() as conn:
        last = conn.execute(sa.text(
            """SELECT batch_id, sha256, status, rows_read, rows_loaded, rows_quarantined, rows_unreadable
               FROM circulation.batch WHERE library_code = :l AND kind = :k AND status IN ('applied', 'held')
               ORDER BY batch_id DESC LIMIT 1"""), {"l": code, "k": kind}).mappings().first()
        if last is not None and last["sha256"] == delivery.sha256:
            rows.close()
            result.status, result.batch_id = "unchanged", last["batch_id"]
            result.read, result.loaded = last["rows_read"], last["rows_loaded"]
            result.quarantined, result.unreadable = last["rows_quarantined"], last["rows_unreadable"]
            result.message = f"same export as batch {last['batch_id']} ({last['status']}); nothing changed"
            return result
        batch_id = conn.execute(sa.text(
            """INSERT INTO circulation.batch (library_code, kind, delivery_id, sha256, file_name, layout, key_id,
                                              dropped_columns)
               VALUES (:l, :k, :d, :s, :n, :layout, :key, :dropped) RETURNING batch_id"""),
            {"l": code, "k": kind, "d": delivery.delivery_id, "s": delivery.sha256, "n": delivery.original_name,
             "layout": header.layout, "key": pseudonymiser.key_id,
             "dropped": header.dropped_personal + ([f"{header.dropped_other} other"] if header.dropped_other else [])}
        ).scalar_one()
    result.batch_id = batch_id
    try:
        counts, reasons, warnings, window = _stage(engine, registry, code, kind, batch_id, rows, chunk_size)
    except ParseError as exc:  # a file that breaks off or turns hostile midway: this export fails, cleanly
        _fail(engine, result, _without_content(f"library {code}, file {path.name}: {exc}", delivery, path))
        return result
    except Exception as exc:
        _fail(engine, result, f"library {code}, file {path.name}: {type(exc).__name__}: {str(exc)[:500]}")
        raise CirculationError(result.message) from exc
    result.read, result.loaded = counts["read"], counts["loaded"]
    result.quarantined, result.unreadable = counts["quarantined"], counts["unreadable"]
    result.quarantine_reasons, result.warning_reasons = dict(reasons.most_common()), dict(warnings.most_common())
    try:
        _apply(engine, library, kind, batch_id, window, result)
    except Exception as exc:
        _fail(engine, result, f"library {code}, file {path.name}: {type(exc).__name__}: {str(exc)[:500]}")
        raise CirculationError(result.message) from exc
    if not result.conserved:
        raise CirculationError(f"library {code}: conservation broken: {result.to_dict()}")
    log.info("library %s %s: %s read=%d loaded=%d quarantined=%d unreadable=%d", code, kind, result.status,
             result.read, result.loaded, result.quarantined, result.unreadable)
    return result


def _without_content(message: str, delivery, path: Path) -> str:
    """A reader's message names the stored file by its original name and never quotes the file's bytes."""
    message = message.replace(str(delivery.stored_path), path.name)
    return re.sub(r"\(starts with b?(['\"]).*?\1\)", "(unrecognised content)", message)


def _chunks(stream: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for entry in stream:
        chunk.append(entry)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _stage(engine, registry, code, kind, batch_id, rows, chunk_size):
    counts: Counter = Counter()
    reasons: Counter = Counter()
    warnings: Counter = Counter()
    low = high = None
    for chunk in _chunks(rows, chunk_size):
        unreadable = [r for r in chunk if r.values is None]
        readable = [r for r in chunk if r.values is not None]
        counts["read"] += len(chunk)
        counts["unreadable"] += len(unreadable)
        failures = validate_frame(kind, frame(kind, readable, code, registry), code, registry) if readable else []
        errors: dict[int, list[str]] = {}
        for failure in failures:
            if failure.severity == "error":
                errors.setdefault(failure.row_number, []).append(failure.rule)
        for failure in failures:
            if failure.severity == "warning" and failure.row_number not in errors:
                warnings[failure.rule] += 1
        staged, quarantined = [], []
        wanted = {(r.values.get("owning_library"), r.values.get("item_ref")) for r in readable
                  if kind == "ill" and r.values.get("item_ref") and r.values.get("owning_library")}
        collections = item_collections(engine, wanted)
        for row in readable:
            for date in _key_dates(kind, row):
                low = date if low is None or date < low else low
                high = date if high is None or date > high else high
            if row.row_number in errors:
                quarantined.append(row)
                reasons.update(set(errors[row.row_number]))
            else:
                staged.extend(warehouse_rows(kind, row, batch_id, code, registry, collections))
        with engine.begin() as conn:
            if staged:
                conn.execute(sa.text("INSERT INTO circulation.staged_row (batch_id, data) VALUES (:b, :d)"),
                             [{"b": batch_id, "d": json.dumps(s, ensure_ascii=False)} for s in staged])
            if quarantined:
                conn.execute(sa.text(
                    """INSERT INTO circulation.quarantine (batch_id, library_code, kind, row_number, reasons, row)
                       VALUES (:b, :l, :k, :n, :r, :row)"""),
                    [{"b": batch_id, "l": code, "k": kind, "n": r.row_number, "r": sorted(set(errors[r.row_number])),
                      "row": json.dumps(r.values, ensure_ascii=False)} for r in quarantined])
            if failures:
                conn.execute(sa.text(
                    """INSERT INTO circulation.row_failure (batch_id, library_code, kind, row_number, rule, field,
                                                            value, severity, message_vi, fix_vi)
                       VALUES (:b, :l, :k, :n, :rule, :field, :value, :sev, :msg, :fix)"""),
                    [{"b": batch_id, "l": code, "k": kind, "n": f.row_number, "rule": f.rule, "field": f.field,
                      "value": f.value, "sev": f.severity, "msg": f.message_vi, "fix": f.fix_vi} for f in failures])
            if unreadable:
                conn.execute(sa.text(
                    """INSERT INTO circulation.unreadable (batch_id, library_code, kind, row_number, reason)
                       VALUES (:b, :l, :k, :n, :reason)"""),
                    [{"b": batch_id, "l": code, "k": kind, "n": r.row_number, "reason": r.reason}
                     for r in unreadable])
        counts["loaded"] += len(readable) - len(quarantined)
        counts["quarantined"] += len(quarantined)
    return counts, reasons, warnings, (low, high)


def _apply(engine, library, kind, batch_id, window, result: CirculationResult) -> None:
    """Replace the library's rows of this kind inside the file's window, unless that drops too much."""
    code, target, key = library.code, TARGET[kind], KEY_DATE[kind]
    low, high = window
    with engine.begin() as conn:
        current = 0
        if low is not None:
            current = conn.execute(sa.text(
                f"SELECT count(DISTINCT (batch_id, row_number)) FROM {target} "
                f"WHERE library_code = :l AND {key} BETWEEN :lo AND :hi"),
                {"l": code, "lo": low, "hi": high}).scalar_one()
        incoming = result.loaded + result.quarantined
        threshold = getattr(library.source, "hold_drop", None) or DEFAULT_HOLD_DROP
        if current and incoming < current * (1 - threshold):
            result.status = "held"
            result.message = (f"held: the export has {incoming} rows against {current} already loaded for "
                              f"{low[:10]}..{high[:10]} (a drop over {threshold:.0%}); the last good data stays")
        else:
            if low is not None:
                conn.execute(sa.text(f"DELETE FROM {target} WHERE library_code = :l AND {key} BETWEEN :lo AND :hi"),
                             {"l": code, "lo": low, "hi": high})
            conn.execute(sa.text(
                f"INSERT INTO {target} SELECT (jsonb_populate_record(NULL::{target}, data)).* "
                f"FROM circulation.staged_row WHERE batch_id = :b ORDER BY staged_id"), {"b": batch_id})
            if kind in ("loans", "ill"):
                conn.execute(sa.text("SELECT circulation.refresh_policy(:l)"), {"l": code})
            result.status = "applied"
        conn.execute(sa.text("DELETE FROM circulation.staged_row WHERE batch_id = :b"), {"b": batch_id})
        conn.execute(sa.text(
            """UPDATE circulation.batch SET status = :s, status_reason = :m, finished_at = now(), rows_read = :r,
                      rows_loaded = :lo, rows_quarantined = :q, rows_unreadable = :u, window_start = :ws,
                      window_end = :we WHERE batch_id = :b"""),
            {"s": result.status, "m": result.message, "r": result.read, "lo": result.loaded, "q": result.quarantined,
             "u": result.unreadable, "ws": low, "we": high, "b": batch_id})


def _fail(engine, result: CirculationResult, message: str) -> None:
    result.status, result.message = "failed", message
    result.read = result.loaded = result.quarantined = result.unreadable = 0
    with engine.begin() as conn:
        for table in ("circulation.staged_row", "circulation.row_failure", "circulation.quarantine",
                      "circulation.unreadable"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE batch_id = :b"), {"b": result.batch_id})
        conn.execute(sa.text("UPDATE circulation.batch SET status = 'failed', status_reason = :m, finished_at = now() "
                             "WHERE batch_id = :b"), {"m": message, "b": result.batch_id})


# ------------------------------------------------------------------------------------------ summaries
def province_summary(engine: sa.Engine, period_start: _dt.date | None = None,
                     period_end: _dt.date | None = None) -> dict:
    """Totals and per-library rows of ``marts.circulation_summary`` (whole history when no period is given)."""
    start = period_start or _dt.date(1900, 1, 1)
    end = period_end or _dt.date(2999, 12, 31)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM marts.circulation_summary(:s, :e)"), {"s": start, "e": end}).mappings()]
        channels = [dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM marts.ill_by_channel ORDER BY channel")).mappings()]
        flags = conn.execute(sa.text(
            """SELECT coalesce(sum(overdue) FILTER (WHERE kind = 'loan'), 0) AS overdue_loans,
                      coalesce(sum(over_limit) FILTER (WHERE kind = 'loan'), 0) AS over_limit_loans,
                      coalesce(sum(overdue) FILTER (WHERE kind = 'ill'), 0) AS overdue_ill,
                      coalesce(sum(over_limit) FILTER (WHERE kind = 'ill'), 0) AS over_limit_ill,
                      coalesce(sum(access_forbidden), 0) AS ill_access_forbidden
               FROM marts.circulation_policy_flags""")).mappings().one()
    active = [r for r in rows if any(r[k] for k in ("loans", "ill_requests", "cards_issued", "rotated_items"))]
    totals = {k: sum(r[k] for r in rows) for k in ("loans", "active_readers", "ill_requests", "ill_filled",
                                                    "cards_issued", "rotated_items")}
    requests = totals["ill_requests"]
    totals["ill_fill_rate"] = round(totals["ill_filled"] / requests, 4) if requests else None
    return {"period_start": start.isoformat(), "period_end": end.isoformat(), "totals": totals,
            "policy_flags": {k: int(v) for k, v in flags.items()},
            "ill_by_channel": [{k: _plain(v) for k, v in c.items()} for c in channels],
            "libraries": [{k: _plain(v) for k, v in r.items()} for r in active]}


def _plain(value):
    """Decimal → float for JSON; everything else as is."""
    from decimal import Decimal

    return float(value) if isinstance(value, Decimal) else value


def format_summary(summary: dict) -> str:
    t, f = summary["totals"], summary["policy_flags"]
    rate = f"{t['ill_fill_rate']:.0%}" if t["ill_fill_rate"] is not None else "–"
    lines = [f"Circulation: {t['loans']} loans by {t['active_readers']} readers; ILL {t['ill_requests']} requests, "
             f"{t['ill_filled']} filled ({rate}); {t['cards_issued']} reader cards issued; "
             f"{t['rotated_items']} rotated items received",
             f"Policy flags: {f['overdue_loans']} overdue and {f['over_limit_loans']} over-limit loans; "
             f"{f['overdue_ill']} overdue and {f['over_limit_ill']} over-limit ILL; "
             f"{f['ill_access_forbidden']} ILL against the access level"]
    for channel in summary["ill_by_channel"]:
        median = channel["median_turnaround_days"]
        lines.append(f"  ILL {channel['channel'] or '?':<13} {channel['requests']:>5} requests, fill rate "
                     f"{float(channel['fill_rate']):.0%}, median turnaround "
                     + (f"{median:.2f} days" if median is not None else "–"))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ Airflow tasks
def ingest_one(library_code: str) -> list[dict]:
    """The DAG's mapped task: small JSON-safe summaries; a failed export fails this library's task only."""
    results = ingest_circulation(library_code)
    summaries = [{k: v for k, v in r.to_dict().items() if k not in ("file", "warning_reasons")} for r in results]
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise CirculationError("; ".join(r.message or f"{r.kind} failed" for r in failed))
    return summaries


def summarise_province() -> dict:
    summary = province_summary(warehouse.engine())
    log.info("circulation: %s", summary["totals"])
    return {"totals": summary["totals"], "policy_flags": summary["policy_flags"]}
