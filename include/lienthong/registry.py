"""The province's registry of libraries, groups and administrative units: YAML data, validated on load.

The registry is data rather than code because it changes over time (groups are re-formed, schools merge, and in
2025 the districts were abolished and Hòa Bình became part of Phú Thọ), so every entry carries a validity period.
Loading checks the whole file and reports every problem with its line and key path, so whoever edits it can fix
everything in one pass instead of one error per run.
"""
from __future__ import annotations

import codecs
import difflib
import functools
import json
import os
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Mapping

import yaml

REGISTRY_ENV = "LIENTHONG_REGISTRY"
PACKAGED_REGISTRY = Path(__file__).resolve().parent / "data" / "registry.yaml"

LIBRARY_TYPES = (
    "THPT", "PTDTNT THCS", "PTDTNT THCS&THPT", "THCS", "TH&THCS", "TH", "MN",
    "provincial library", "district library",
)
PUBLIC_LIBRARY_TYPES = ("provincial library", "district library")
LINKING_MODES = ("geographic", "same_function", "same_subject", "with_public_library")  # §II of the guidance
UNIT_LEVELS = ("province", "district")  # order = rank: a parent sits at a lower index than its child
TRANSPORTS = ("local", "http", "sftp", "oai-pmh")
FORMATS = ("auto", "marc21", "marcxml", "csv", "xlsx")
NAMED_ENCODINGS = ("utf-8", "marc-8", "cp1258", "tcvn3", "vni")  # marc-8, tcvn3, vni are not Python codecs
# What a spreadsheet column may map to in a source's field_mapping (lienthong.tabular, docs/formats.md).
SPREADSHEET_FIELDS = (
    "record_id", "title", "author", "publisher", "pub_place", "pub_year", "isbn", "language", "keywords",
    "subjects", "call_number", "classification", "quantity", "accession_number", "barcode", "collection",
    "location", "item_type", "status", "ignore",
)
CALL_NUMBER_SCHEMES = ("DDC", "BBK")  # or "pattern:<regex>"
SCHEDULE_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly")
CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,31}$")
ITEM_FIELD_RE = re.compile(r"^(?!00)[0-9A-Za-z]{3}$")  # a data field (not 00X control fields)

BUILTIN_LENDING = {"loan_days": 14, "max_items": 3}
BUILTIN_SOURCE = {"transport": "local", "format": "auto", "encoding": None, "item_field": "952", "schedule": "@daily"}
BUILTIN_CALL_NUMBER_SCHEME = "DDC"
REMOTE_SOURCE_KEYS = ("connection", "pattern", "set", "metadata_prefix")  # see docs/sources.md
CONNECTION_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
FILE_PATTERN_RE = re.compile(r"^[^/\\\x00-\x1f]{1,200}$")
OAI_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.!~*'()%:-]{1,200}$")
# Access levels of the union catalogue (§III.2b): search and view only; read on site; download (digital) or a
# defined type and degree of use (other resources); paid service.
ACCESS_LEVELS = ("metadata_only", "read_on_site", "defined_use", "paid_service")
BUILTIN_ACCESS_LEVEL = "read_on_site"
# Reporting calendar (§VI of the guidance): semester I report due 15/01, school-year report due 25/5.
BUILTIN_CALENDAR = {"school_year_start": "09-05", "semester_1_due": "01-15", "school_year_due": "05-25"}
BUILTIN_REPORTING = {"smtp_conn_id": "smtp_lienthong", "reminder_days": (14, 7, 3, 1), "report_lead_days": 10}
SCHOOL_YEAR_NAME_RE = re.compile(r"^([0-9]{4})-([0-9]{4})$")
MONTH_DAY_RE = re.compile(r"^([0-9]{2})-([0-9]{2})$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
QUALITY_RULE_KEYS = ("errors", "min_completeness")  # groups[].rules.quality: tighten the province defaults
PROVINCE_MIN_COMPLETENESS = 0.8  # batch-level: least share of records carrying each mandatory element


RECORD_SUITES = ("mandatory_elements", "record_validity")  # the suites whose rules a group may raise to error


def quality_rule_ids() -> frozenset[str]:
    """Rule ids of the record suites (expectations/<suite>.json meta.rule); empty when the folder is absent."""
    from lienthong import config

    rules: set[str] = set()
    for suite in (config.expectations_dir() / f"{name}.json" for name in RECORD_SUITES):
        try:
            data = json.loads(suite.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rules.update(e.get("meta", {}).get("rule") for e in data.get("expectations") or [] if isinstance(e, dict))
    rules.discard(None)
    return frozenset(rules | {"duplicate_local_id"})


class RegistryError(ValueError):
    """Everything wrong with a registry file, one ``file:line: key.path: message`` string per problem."""

    def __init__(self, problems: list[str], path: Path | None = None):
        self.problems = list(problems)
        self.path = path
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in registry {path}:\n" + "\n".join(
                f"  {p}" for p in self.problems)
        super().__init__(message)

    def __reduce__(self):  # keep problems intact when pickled (e.g. across worker processes)
        return self.__class__, (self.problems, self.path)


# ---------------------------------------------------------------- the data

def _active(valid_from: date, valid_to: date | None, on: date | None) -> bool:
    """Periods are inclusive at both ends; an open end (None) means still valid."""
    day = on or date.today()
    return valid_from <= day and (valid_to is None or day <= valid_to)


@dataclass(frozen=True)
class AdministrativeUnit:
    """A province or a (former) district, kept as a dimension even after it was abolished."""

    code: str
    name: str
    level: str
    valid_from: date
    valid_to: date | None = None
    parent: str | None = None

    def active_on(self, on: date | None = None) -> bool:
        return _active(self.valid_from, self.valid_to, on)


@dataclass(frozen=True)
class ExportSource:
    """Where and how a library delivers its catalogue export."""

    transport: str = "local"
    location: str | None = None  # local: folder under the drop root (None → the library code); else a URL
    format: str = "auto"
    encoding: str | None = None  # None → detect
    item_field: str = "952"
    field_mapping: Mapping[str, str] | None = field(default=None, hash=False)  # spreadsheet column → field
    schedule: str = "@daily"
    connection: str | None = None  # Airflow connection id holding the credentials (never the registry)
    pattern: str | None = None  # file name glob in a drop folder or SFTP folder, e.g. "*.mrc"
    set: str | None = None  # OAI-PMH set
    metadata_prefix: str | None = None  # OAI-PMH metadataPrefix (None → marc21)


@dataclass(frozen=True)
class LendingPolicy:
    """The owning library's rules, which §III.3 says apply to inter-library loans too."""

    loan_days: int = BUILTIN_LENDING["loan_days"]
    max_items: int = BUILTIN_LENDING["max_items"]


@dataclass(frozen=True)
class AccessPolicy:
    """What the union catalogue may offer of a library's holdings (§III.2b): a level for the library, and
    exceptions per collection (952$8) and per item (accession number, ĐKCB)."""

    level: str = BUILTIN_ACCESS_LEVEL
    collections: Mapping[str, str] = field(default_factory=dict, hash=False)
    items: Mapping[str, str] = field(default_factory=dict, hash=False)

    def level_of(self, collection: str | None = None, accession_number: str | None = None) -> str:
        """The most specific level: item, else collection, else library."""
        return (self.items.get(accession_number or "") or self.collections.get(collection or "")
                or self.level)


@dataclass(frozen=True)
class Library:
    """One library: a school library, the provincial library or a district library."""

    code: str
    name: str
    type: str
    admin_unit: str  # name of an administrative unit (the district/city the library is in)
    valid_from: date
    commune: str | None = None
    valid_to: date | None = None
    sample: bool = False  # a plausible invention, not a name given by the guidance
    source: ExportSource = field(default_factory=ExportSource)
    lending_policy: LendingPolicy = field(default_factory=LendingPolicy)
    call_number_scheme: str = BUILTIN_CALL_NUMBER_SCHEME
    access: AccessPolicy = field(default_factory=AccessPolicy)

    def active_on(self, on: date | None = None) -> bool:
        return _active(self.valid_from, self.valid_to, on)

    @property
    def call_number_pattern(self) -> re.Pattern | None:
        """The regex of a ``pattern:`` scheme, None for the named schemes (DDC, BBK)."""
        if self.call_number_scheme.startswith("pattern:"):
            return re.compile(self.call_number_scheme[len("pattern:"):])
        return None


@dataclass(frozen=True)
class Membership:
    library: str
    valid_from: date
    valid_to: date | None = None

    def active_on(self, on: date | None = None) -> bool:
        return _active(self.valid_from, self.valid_to, on)


@dataclass(frozen=True)
class Group:
    """A linking group (nhóm liên thông) with its lead library (thư viện chủ trì)."""

    code: str
    name: str
    linking_mode: str
    lead_library: str
    members: tuple[Membership, ...]
    valid_from: date
    valid_to: date | None = None
    sample: bool = False  # formed here as an example, not by the guidance or an education office
    rules: Mapping[str, Any] | None = field(default=None, hash=False)

    def active_on(self, on: date | None = None) -> bool:
        return _active(self.valid_from, self.valid_to, on)

    def members_on(self, on: date | None = None) -> list[Membership]:
        return [m for m in self.members if m.active_on(on)] if self.active_on(on) else []

    def member_codes(self, on: date | None = None) -> list[str]:
        return [m.library for m in self.members_on(on)]


@dataclass(frozen=True)
class SchoolYear:
    """One school year and the data cut-off (end) and deadline (due) of its two reports."""

    name: str  # "2026-2027"
    start: date
    semester_1_end: date
    semester_1_due: date
    end: date
    due: date

    @property
    def first_year(self) -> int:
        return int(self.name[:4])


@dataclass(frozen=True)
class ReportingCalendar:
    """School years, report deadlines and who is reminded; years not listed follow the month-day defaults."""

    school_year_start: tuple[int, int] = (9, 5)  # (month, day)
    semester_1_due: tuple[int, int] = (1, 15)
    school_year_due: tuple[int, int] = (5, 25)
    school_years: Mapping[str, SchoolYear] = field(default_factory=dict, hash=False)
    smtp_conn_id: str = BUILTIN_REPORTING["smtp_conn_id"]
    sender: str | None = None
    education_office_name: str | None = None
    education_office_email: str | None = None
    library_email: str | None = None  # pattern with {code}
    contacts: Mapping[str, str] = field(default_factory=dict, hash=False)
    reminder_days: tuple[int, ...] = BUILTIN_REPORTING["reminder_days"]
    report_lead_days: int = BUILTIN_REPORTING["report_lead_days"]

    def school_year(self, first_year: int) -> SchoolYear:
        """The listed school year starting in ``first_year``, else one built from the defaults."""
        name = f"{first_year}-{first_year + 1}"
        if name in self.school_years:
            return self.school_years[name]
        second = first_year + 1
        s1_due = date(second, *self.semester_1_due)
        due = date(second, *self.school_year_due)
        return SchoolYear(name, date(first_year, *self.school_year_start), s1_due, s1_due, due, due)

    def email_of(self, library_code: str) -> str | None:
        """A library's contact address: listed in contacts, else the library_email pattern."""
        if library_code in self.contacts:
            return self.contacts[library_code]
        return self.library_email.format(code=library_code.lower()) if self.library_email else None


@dataclass(frozen=True)
class Registry:
    path: Path
    libraries: dict[str, Library]
    groups: dict[str, Group]
    administrative_units: dict[str, AdministrativeUnit]
    reporting: ReportingCalendar = field(default_factory=ReportingCalendar)

    def active_libraries(self, on: date | None = None) -> list[Library]:
        """Libraries valid on ``on`` (today if None), in file order."""
        return [lib for lib in self.libraries.values() if lib.active_on(on)]

    def active_groups(self, on: date | None = None) -> list[Group]:
        return [g for g in self.groups.values() if g.active_on(on)]

    def groups_of(self, library_code: str, on: date | None = None) -> list[Group]:
        """Groups the library belongs to on ``on`` (today if None); an unknown code is a KeyError."""
        if library_code not in self.libraries:
            raise KeyError(f"{library_code!r} is not a library code in {self.path}")
        return [g for g in self.groups.values() if library_code in g.member_codes(on)]

    def to_dict(self) -> dict:
        """JSON-safe copy (dates as ISO strings), e.g. for the warehouse dimensions and ``registry show``."""
        return {
            "libraries": [_jsonable(lib) for lib in self.libraries.values()],
            "groups": [_jsonable(g) for g in self.groups.values()],
            "administrative_units": [_jsonable(u) for u in self.administrative_units.values()],
        }


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


# ---------------------------------------------------------------- loading

def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Load and validate a registry: ``path``, else $LIENTHONG_REGISTRY, else the packaged registry.yaml."""
    if path is None:
        path = os.environ.get(REGISTRY_ENV) or PACKAGED_REGISTRY
    path = Path(os.path.abspath(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RegistryError([f"{path.name}: cannot read the registry: {exc.strerror or exc}"], path) from None
    return _load_bytes(path, raw)


@functools.lru_cache(maxsize=8)
def _load_bytes(path: Path, raw: bytes) -> Registry:
    """Parsing with line tracking costs ~0.4 s; `ingest --all` and the bench load the same bytes per library."""
    report = _Report(path.name)
    data = _parse_yaml(raw, report, path)
    registry = _Builder(report, path).build(data)
    if report.problems:
        raise RegistryError(report.sorted(), path)
    return registry


KeyPath = tuple  # of str (mapping keys) and int (list positions)


def _format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


class _Report:
    """Collects problems; each knows its line from the key path (or the nearest enclosing node)."""

    def __init__(self, file_name: str):
        self.file_name = file_name
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[tuple[int, int, str]] = []

    def line_of(self, path: KeyPath) -> int | None:
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def add(self, path: KeyPath, message: str, line: int | None = None) -> None:
        line = line or self.line_of(path)
        where = f"{self.file_name}:{line}" if line else self.file_name
        text = f"{where}: {_format_path(path)}: {message}" if path else f"{where}: {message}"
        self.problems.append((line or 0, len(self.problems), text))

    def sorted(self) -> list[str]:
        return [text for _, _, text in sorted(self.problems)]


_DECIMAL_RE = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _nfc(value: Any) -> Any:
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


def _parse_yaml(raw: bytes, report: _Report, path: Path) -> Any:
    """YAML → plain data, recording the line of every key path; syntax errors are fatal (nothing to check)."""
    name = report.file_name
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RegistryError([f"{name}:{line}: not UTF-8 text (byte {exc.start}); a registry is a YAML file"],
                            path) from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader checks for unprintable characters right here
        node = loader.get_single_node()
        if node is None:
            raise RegistryError([f"{name}:1: the file is empty"], path)
        return _plain(loader, node, (), report, frozenset())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise RegistryError([f"{name}{line}: invalid YAML: {what}"], path) from None
    except yaml.reader.ReaderError as exc:  # e.g. control characters: has a position, not a line
        line = text[: exc.position].count("\n") + 1
        raise RegistryError([f"{name}:{line}: invalid YAML: unacceptable character #x{exc.character:04x} "
                             f"({exc.reason})"], path) from None
    except yaml.YAMLError as exc:
        raise RegistryError([f"{name}: invalid YAML: {exc}"], path) from None
    finally:
        if loader is not None:
            loader.dispose()


def _plain(loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, report: _Report, seen: frozenset) -> Any:
    report.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        # Leading-zero numbers are octal in YAML 1.1 ("012" is 10): nobody means that, so keep the text.
        if node.tag == _INT_TAG and not _DECIMAL_RE.fullmatch(node.value):
            return _nfc(node.value)
        try:
            return _nfc(loader.construct_object(node))
        except (ValueError, yaml.YAMLError):  # e.g. 2023-13-45 matches the date pattern but is no date
            return _nfc(node.value)
    if id(node) in seen:
        report.add(path, "an alias refers to itself")
        return None
    seen = seen | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        return [_plain(loader, item, path + (i,), report, seen) for i, item in enumerate(node.value)]
    own_keys: set[str] = set()
    for key_node, _ in node.value:  # duplicates are checked before merges, which may legitimately override
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
            key = _nfc(key_node.value)
            if key in own_keys:
                report.add(path + (key,), f"duplicate key {key!r}", line=key_node.start_mark.line + 1)
            own_keys.add(key)
    loader.flatten_mapping(node)
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            report.add(path, "keys must be plain text", line=key_node.start_mark.line + 1)
            continue
        key = _nfc(key_node.value)
        report.lines[path + (key,)] = key_node.start_mark.line + 1
        out[key] = _plain(loader, value_node, path + (key,), report, seen)
    return out


# ---------------------------------------------------------------- validation

def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"


def _hint(value: str, allowed: tuple[str, ...]) -> str:
    lowered = {a.lower(): a for a in allowed}
    match = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[match[0]]!r}?)" if match else ""


def _period_text(valid_from: date, valid_to: date | None) -> str:
    return f"{valid_from}..{valid_to or 'open'}"


def _within(inner: tuple[date, date | None], outer: tuple[date, date | None]) -> bool:
    (i_from, i_to), (o_from, o_to) = inner, outer
    return o_from <= i_from and (o_to is None or (i_to is not None and i_to <= o_to))


def _overlap(a: tuple[date, date | None], b: tuple[date, date | None]) -> bool:
    return (b[1] is None or a[0] <= b[1]) and (a[1] is None or b[0] <= a[1])


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS = (  # label, low, high, names (their index + offset is the value)
    ("minute", 0, 59, (), 0), ("hour", 0, 23, (), 0), ("day of month", 1, 31, (), 0),
    ("month", 1, 12, _MONTHS, 1), ("day of week", 0, 7, _DAYS, 0),
)
_CRON_PART = re.compile(r"^(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?$")


def _schedule_problem(expr: str) -> str | None:
    """Cron-ish check so a typo fails at load time, not when the scheduler first reads it."""
    if expr.startswith("@"):
        return None if expr in SCHEDULE_PRESETS else f"unknown preset {expr!r}{_hint(expr, SCHEDULE_PRESETS)}"
    parts = expr.split()
    if len(parts) != 5:
        return (f"{expr!r} is not a schedule: expected 5 cron fields (minute hour day month weekday) "
                f"or one of {', '.join(SCHEDULE_PRESETS)}")
    for text, (label, low, high, names, offset) in zip(parts, _CRON_FIELDS):
        for piece in text.split(","):
            match = _CRON_PART.match(piece)
            if not match or (match.group(2) is not None and int(match.group(2)) == 0):
                return f"bad {label} field {text!r} in {expr!r}"
            if match.group(1) == "*":
                continue
            bounds = []
            for token in match.group(1).split("-"):
                if token.isdigit():
                    bounds.append(int(token))
                elif token.lower() in names:
                    bounds.append(names.index(token.lower()) + offset)
                else:
                    return f"bad {label} field {text!r} in {expr!r}"
            if not all(low <= b <= high for b in bounds) or bounds != sorted(bounds):
                return f"{label} field {text!r} in {expr!r} is outside {low}-{high}"
    return None


class _Builder:
    """Turns plain data into the dataclasses, reporting problems instead of stopping at the first."""

    def __init__(self, report: _Report, path: Path):
        self.report = report
        self.path = path

    def add(self, path: KeyPath, message: str) -> None:
        self.report.add(path, message)

    # -- typed getters: each returns None when the value is absent or wrong (a problem is then reported)

    def mapping(self, value: Any, path: KeyPath, required: tuple = (), optional: tuple = ()) -> dict | None:
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping, found {_kind(value)}")
            return None
        allowed = required + optional
        for key in value:
            if key not in allowed:
                hint = _hint(key, allowed) or f" (allowed: {', '.join(allowed)})"
                self.add(path + (key,), f"unknown key{hint}")
        for key in required:
            if value.get(key) is None:
                self.add(path + (key,), "is required")
        return value

    def sequence(self, value: Any, path: KeyPath) -> list:
        if not isinstance(value, list):
            if value is not None:  # None: already reported as required
                self.add(path, f"expected a list, found {_kind(value)}")
            return []
        return value

    def text(self, m: dict, key: str, path: KeyPath) -> str | None:
        value = m.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.add(path + (key,), f"expected text, found {_kind(value)} (quote it)")
            return None
        value = value.strip()
        if not value:
            self.add(path + (key,), "must not be empty")
            return None
        return value

    def code(self, m: dict, key: str, path: KeyPath) -> str | None:
        value = self.text(m, key, path)
        if value is not None and not CODE_RE.match(value):
            self.add(path + (key,), f"{value!r} is not a valid code (2-32 characters: A-Z, 0-9 and '-', "
                                    f"starting with a letter or digit)")
            return None
        return value

    def choice(self, m: dict, key: str, path: KeyPath, allowed: tuple[str, ...]) -> str | None:
        value = self.text(m, key, path)
        if value is not None and value not in allowed:
            self.add(path + (key,), f"{value!r} is not one of: {', '.join(allowed)}{_hint(value, allowed)}")
            return None
        return value

    def date(self, m: dict, key: str, path: KeyPath) -> date | None:
        value = m.get(key)
        if value is None or (isinstance(value, date) and type(value) is date):
            return value
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.add(path + (key,), f"{_kind(value)} is not a valid date (write YYYY-MM-DD)")
        return None

    def period(self, m: dict, path: KeyPath) -> tuple[date | None, date | None]:
        valid_from, valid_to = self.date(m, "valid_from", path), self.date(m, "valid_to", path)
        if valid_from and valid_to and valid_to < valid_from:
            self.add(path + ("valid_to",), f"{valid_to} is before valid_from {valid_from}")
            return valid_from, None
        return valid_from, valid_to

    def positive_int(self, m: dict, key: str, path: KeyPath) -> int | None:
        value = m.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.add(path + (key,), f"must be a whole number above 0, found {_kind(value)}")
            return None
        return value

    def boolean(self, m: dict, key: str, path: KeyPath) -> bool | None:
        value = m.get(key)
        if value is not None and not isinstance(value, bool):
            self.add(path + (key,), f"must be true or false, found {_kind(value)}")
            return None
        return value

    def duplicate(self, seen: dict[str, KeyPath], code: str | None, path: KeyPath, what: str) -> bool:
        if code is None:
            return False
        if code in seen:
            self.add(path + ("code",), f"duplicate {what} code {code!r} "
                                       f"(first at line {self.report.line_of(seen[code])})")
            return True
        seen[code] = path
        return False

    # -- sections

    def build(self, data: Any) -> Registry | None:
        top = self.mapping(data, (), required=("libraries", "groups", "administrative_units"),
                           optional=("defaults", "reporting"))
        if top is None:
            return None
        defaults = self.defaults(top.get("defaults"), ("defaults",))
        units = self.units(top.get("administrative_units"), ("administrative_units",))
        libraries = self.libraries(top.get("libraries"), ("libraries",), defaults, units)
        groups = self.groups(top.get("groups"), ("groups",), libraries)
        reporting = self.reporting(top.get("reporting"), ("reporting",), libraries)
        return Registry(self.path, libraries, groups, units, reporting)

    def defaults(self, value: Any, path: KeyPath) -> dict:
        result = {"lending_policy": dict(BUILTIN_LENDING), "source": dict(BUILTIN_SOURCE),
                  "call_number_scheme": BUILTIN_CALL_NUMBER_SCHEME, "access": AccessPolicy()}
        if value is None:
            return result
        m = self.mapping(value, path, optional=("lending_policy", "source", "call_number_scheme", "access"))
        if m is not None and m.get("access") is not None:
            result["access"] = self.access(m["access"], path + ("access",), result["access"])
        if m is None:
            return result
        result["lending_policy"] = self.lending(m.get("lending_policy"), path + ("lending_policy",),
                                                result["lending_policy"])
        if m.get("source") is not None:
            src = self.mapping(m["source"], path + ("source",), optional=tuple(BUILTIN_SOURCE))
            if src is not None:
                result["source"].update(self.source_fields(src, path + ("source",)))
        scheme = self.call_number_scheme(m, path)
        if scheme is not None:
            result["call_number_scheme"] = scheme
        return result

    def units(self, value: Any, path: KeyPath) -> dict[str, AdministrativeUnit]:
        units: dict[str, AdministrativeUnit] = {}
        seen: dict[str, KeyPath] = {}
        paths: dict[str, KeyPath] = {}
        for i, entry in enumerate(self.sequence(value, path)):
            p = path + (i,)
            m = self.mapping(entry, p, required=("code", "name", "level", "valid_from"),
                             optional=("valid_to", "parent"))
            if m is None:
                continue
            code = self.code(m, "code", p)
            duplicate = self.duplicate(seen, code, p, "administrative unit")
            valid_from, valid_to = self.period(m, p)
            unit = AdministrativeUnit(code, self.text(m, "name", p), self.choice(m, "level", p, UNIT_LEVELS),
                                      valid_from, valid_to, self.code(m, "parent", p))
            if code is not None and not duplicate:
                units[code], paths[code] = unit, p
        by_name: dict[str, list[AdministrativeUnit]] = defaultdict(list)
        for code, unit in units.items():
            p = paths[code]
            if unit.name is not None and unit.valid_from is not None:
                for other in by_name[unit.name]:  # libraries refer to units by name: keep it unambiguous
                    if _overlap((unit.valid_from, unit.valid_to), (other.valid_from, other.valid_to)):
                        self.add(p + ("name",), f"{unit.name!r} is also the name of unit {other.code!r} "
                                                f"at overlapping dates")
                by_name[unit.name].append(unit)
            if unit.parent is None:
                continue
            parent = units.get(unit.parent)
            if parent is None:
                self.add(p + ("parent",), f"{unit.parent!r} is not an administrative unit code")
            elif unit.level and parent.level and UNIT_LEVELS.index(parent.level) >= UNIT_LEVELS.index(unit.level):
                self.add(p + ("parent",), f"a {unit.level} cannot sit inside a {parent.level} ({parent.code})")
            elif unit.valid_from and parent.valid_from and not _within(
                    (unit.valid_from, unit.valid_to), (parent.valid_from, parent.valid_to)):
                self.add(p, f"valid {_period_text(unit.valid_from, unit.valid_to)}, outside its parent "
                            f"{parent.code} ({_period_text(parent.valid_from, parent.valid_to)})")
        return units

    def libraries(self, value: Any, path: KeyPath, defaults: dict,
                  units: dict[str, AdministrativeUnit]) -> dict[str, Library]:
        unit_names = {u.name for u in units.values()}
        libraries: dict[str, Library] = {}
        seen: dict[str, KeyPath] = {}
        for i, entry in enumerate(self.sequence(value, path)):
            p = path + (i,)
            m = self.mapping(entry, p, required=("code", "name", "type", "admin_unit", "valid_from"),
                             optional=("commune", "valid_to", "sample", "source", "lending_policy",
                                       "call_number_scheme", "access"))
            if m is None:
                continue
            code = self.code(m, "code", p)
            duplicate = self.duplicate(seen, code, p, "library")
            admin_unit = self.text(m, "admin_unit", p)
            if admin_unit is not None and units and admin_unit not in unit_names:
                self.add(p + ("admin_unit",), f"{admin_unit!r} is not the name of an administrative unit"
                                              f"{_hint(admin_unit, tuple(sorted(unit_names)))}")
            valid_from, valid_to = self.period(m, p)
            scheme = self.call_number_scheme(m, p)
            library = Library(
                code=code, name=self.text(m, "name", p), type=self.choice(m, "type", p, LIBRARY_TYPES),
                admin_unit=admin_unit, valid_from=valid_from, commune=self.text(m, "commune", p),
                valid_to=valid_to, sample=bool(self.boolean(m, "sample", p)),
                source=self.source(m.get("source"), p + ("source",), defaults["source"], code),
                lending_policy=LendingPolicy(**self.lending(m.get("lending_policy"), p + ("lending_policy",),
                                                            defaults["lending_policy"])),
                call_number_scheme=scheme if scheme is not None else defaults["call_number_scheme"],
                access=self.access(m.get("access"), p + ("access",), defaults["access"]),
            )
            if code is not None and not duplicate:
                libraries[code] = library
        return libraries

    def access(self, value: Any, path: KeyPath, base: AccessPolicy) -> AccessPolicy:
        """``access: {level: L, collections: {name: L}, items: {ĐKCB: L}}``; a library inherits the default
        level, never the default's exceptions."""
        if value is None:
            return AccessPolicy(base.level)
        m = self.mapping(value, path, optional=("level", "collections", "items"))
        if m is None:
            return AccessPolicy(base.level)
        level = self.choice(m, "level", path, ACCESS_LEVELS) if "level" in m else None
        exceptions: dict[str, dict[str, str]] = {}
        for scope in ("collections", "items"):
            entries = m.get(scope)
            exceptions[scope] = {}
            if entries is None:
                continue
            if not isinstance(entries, dict):
                self.add(path + (scope,), f"expected a mapping of name → access level, found {_kind(entries)}")
                continue
            for name, entry_level in entries.items():
                if entry_level not in ACCESS_LEVELS:
                    hint = _hint(entry_level, ACCESS_LEVELS) if isinstance(entry_level, str) else ""
                    self.add(path + (scope, name), f"{_kind(entry_level)} is not one of: "
                                                   f"{', '.join(ACCESS_LEVELS)}{hint}")
                else:
                    exceptions[scope][str(name)] = entry_level
        return AccessPolicy(level or base.level, MappingProxyType(exceptions["collections"]),
                            MappingProxyType(exceptions["items"]))

    def lending(self, value: Any, path: KeyPath, base: dict) -> dict:
        result = dict(base)
        if value is None:
            return result
        m = self.mapping(value, path, optional=("loan_days", "max_items"))
        for key in ("loan_days", "max_items"):
            number = self.positive_int(m, key, path) if m is not None else None
            if number is not None:
                result[key] = number
        return result

    def source(self, value: Any, path: KeyPath, base: dict, code: str | None) -> ExportSource:
        result = dict(base, location=None, field_mapping=None)
        if value is not None:
            m = self.mapping(value, path, optional=(*BUILTIN_SOURCE, "location", "field_mapping",
                                                    *REMOTE_SOURCE_KEYS))
            if m is not None:
                result.update(self.source_fields(m, path))
        transport = result["transport"]
        if result["location"] is None:
            if transport == "local":
                result["location"] = code
            else:
                self.add(path + ("location",), f"is required for transport {transport!r}")
        elif transport == "local":
            folder = PurePosixPath(result["location"].replace("\\", "/"))
            if folder.is_absolute() or ".." in folder.parts or re.match(r"^[A-Za-z]:", result["location"]):
                self.add(path + ("location",), f"{result['location']!r} must be a folder inside the drop root "
                                               f"(relative, without '..')")
        else:
            schemes = ("sftp://",) if transport == "sftp" else ("http://", "https://")
            if not result["location"].startswith(schemes):
                self.add(path + ("location",), f"{result['location']!r} must be a URL starting with "
                                               f"{' or '.join(schemes)} for transport {transport!r}")
            elif "@" in result["location"].split("//", 1)[1].split("/", 1)[0]:
                self.add(path + ("location",), "must not carry a user or password: put them in the Airflow "
                                               "connection named by `connection`")
            named = isinstance(value, dict) and value.get("connection")  # an invalid id is reported already
            if transport == "sftp" and not result.get("connection") and not named:
                self.add(path + ("connection",), "is required for transport 'sftp' (the Airflow connection "
                                                 "with the login)")
        return ExportSource(**result)

    def source_fields(self, m: dict, path: KeyPath) -> dict:
        """The source keys present in ``m``, validated (absent or invalid ones are left out)."""
        out: dict[str, Any] = {}
        checks = {
            "transport": lambda: self.choice(m, "transport", path, TRANSPORTS),
            "location": lambda: self.text(m, "location", path),
            "format": lambda: self.choice(m, "format", path, FORMATS),
            "encoding": lambda: self.encoding(m, path),
            "item_field": lambda: self.item_field(m, path),
            "field_mapping": lambda: self.field_mapping(m, path),
            "schedule": lambda: self.schedule(m, path),
            "connection": lambda: self.pattern_text(m, "connection", path, CONNECTION_ID_RE,
                                                    "an Airflow connection id (letters, digits, _ . -)"),
            "pattern": lambda: self.pattern_text(m, "pattern", path, FILE_PATTERN_RE,
                                                 "a file name pattern such as *.mrc (no folder)"),
            "set": lambda: self.pattern_text(m, "set", path, OAI_TOKEN_RE, "an OAI-PMH setSpec"),
            "metadata_prefix": lambda: self.pattern_text(m, "metadata_prefix", path, OAI_TOKEN_RE,
                                                         "an OAI-PMH metadataPrefix such as marc21"),
        }
        for key, check in checks.items():
            if key in m:
                value = check()
                if value is not None:
                    out[key] = value
        return out

    def pattern_text(self, m: dict, key: str, path: KeyPath, regex: re.Pattern, what: str) -> str | None:
        value = self.text(m, key, path)
        if value is not None and not regex.match(value):
            self.add(path + (key,), f"{value!r} is not {what}")
            return None
        return value

    def encoding(self, m: dict, path: KeyPath) -> str | None:
        value = self.text(m, "encoding", path)
        if value is None:
            return None
        label = value.lower().replace("_", "-")
        if label in NAMED_ENCODINGS:
            return label
        try:
            return codecs.lookup(label).name
        except LookupError:
            self.add(path + ("encoding",), f"unknown encoding {value!r} (known: {', '.join(NAMED_ENCODINGS)} "
                                           f"or any Python codec){_hint(label, NAMED_ENCODINGS)}")
            return None

    def item_field(self, m: dict, path: KeyPath) -> str | None:
        value = m.get("item_field")
        tag = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(tag, str) or not ITEM_FIELD_RE.match(tag.strip()):
            self.add(path + ("item_field",), f"{_kind(value)} is not a MARC data field tag (3 characters, "
                                             f"not 00X; e.g. 952 or 852)")
            return None
        return tag.strip()

    def field_mapping(self, m: dict, path: KeyPath) -> Mapping[str, str] | None:
        value = m.get("field_mapping")
        p = path + ("field_mapping",)
        if not isinstance(value, dict) or not value:
            self.add(p, f"expected a mapping of column name → field, found {_kind(value)}")
            return None
        mapping: dict[str, str] = {}
        for column, target in value.items():
            if isinstance(target, str) and target.strip() in SPREADSHEET_FIELDS:
                mapping[column] = target.strip()
            elif isinstance(target, str) and target.strip():
                self.add(p + (column,), f"unknown field {target.strip()!r} (known: {', '.join(SPREADSHEET_FIELDS)})"
                                        f"{_hint(target.strip(), SPREADSHEET_FIELDS)}")
            else:
                self.add(p + (column,), f"expected a field name, found {_kind(target)}")
        return MappingProxyType(mapping)

    def schedule(self, m: dict, path: KeyPath) -> str | None:
        value = self.text(m, "schedule", path)
        problem = _schedule_problem(value) if value is not None else None
        if problem:
            self.add(path + ("schedule",), problem)
            return None
        return value

    def call_number_scheme(self, m: dict, path: KeyPath) -> str | None:
        value = self.text(m, "call_number_scheme", path)
        if value is None or value in CALL_NUMBER_SCHEMES:
            return value
        if value.startswith("pattern:"):
            try:
                re.compile(value[len("pattern:"):])
                return value
            except re.error as exc:
                self.add(path + ("call_number_scheme",), f"the pattern does not compile: {exc}")
                return None
        self.add(path + ("call_number_scheme",),
                 f"{value!r} is not one of: {', '.join(CALL_NUMBER_SCHEMES)}, pattern:<regex>")
        return None

    def groups(self, value: Any, path: KeyPath, libraries: dict[str, Library]) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        seen: dict[str, KeyPath] = {}
        # (mode, library) → [(group code, period, path)]: one library, one group per mode at a time
        placed: dict[tuple[str, str], list[tuple[str, tuple, KeyPath]]] = defaultdict(list)
        for i, entry in enumerate(self.sequence(value, path)):
            p = path + (i,)
            m = self.mapping(entry, p, required=("code", "name", "linking_mode", "lead_library", "members",
                                                 "valid_from"), optional=("valid_to", "sample", "rules"))
            if m is None:
                continue
            code = self.code(m, "code", p)
            duplicate = self.duplicate(seen, code, p, "group")
            mode = self.choice(m, "linking_mode", p, LINKING_MODES)
            valid_from, valid_to = self.period(m, p)
            members = self.members(m.get("members"), p + ("members",), libraries, (valid_from, valid_to))
            lead = self.code(m, "lead_library", p)
            if lead is not None:
                if lead not in libraries:
                    self.add(p + ("lead_library",), f"{lead!r} is not a library code")
                elif m.get("members") is not None and lead not in {mb.library for mb, _ in members}:
                    self.add(p + ("lead_library",), f"{lead!r} is not among the group's members")
            if mode == "with_public_library" and members and not any(
                    libraries[mb.library].type in PUBLIC_LIBRARY_TYPES for mb, _ in members):
                self.add(p + ("members",), "a with_public_library group needs a provincial or district library")
            rules = m.get("rules")
            if rules is not None and not isinstance(rules, dict):
                self.add(p + ("rules",), f"expected a mapping, found {_kind(rules)}")
                rules = None
            elif rules is not None and "quality" in rules:
                self.quality_rules(rules["quality"], p + ("rules", "quality"))
            if code is None or duplicate:
                continue
            if mode is not None:
                for mb, mp in members:
                    period = (mb.valid_from, mb.valid_to)
                    for other, other_period, _ in placed[(mode, mb.library)]:
                        if other != code and _overlap(period, other_period):
                            self.add(mp, f"library {mb.library!r} is also in group {other!r} of the same linking "
                                         f"mode {mode!r} at overlapping dates")
                    placed[(mode, mb.library)].append((code, period, mp))
            groups[code] = Group(code, self.text(m, "name", p), mode, lead, tuple(mb for mb, _ in members),
                                 valid_from, valid_to, bool(self.boolean(m, "sample", p)),
                                 MappingProxyType(rules) if rules is not None else None)
        return groups

    def quality_rules(self, value: Any, path: KeyPath) -> None:
        """A group may only tighten the province's quality defaults: raise rules to error, demand more."""
        m = self.mapping(value, path, optional=QUALITY_RULE_KEYS)
        if m is None:
            return
        known = quality_rule_ids()
        errors = m.get("errors")
        if errors is not None:
            if not isinstance(errors, list):
                self.add(path + ("errors",), f"expected a list of rule ids, found {_kind(errors)}")
            else:
                for k, rule in enumerate(errors):
                    if not isinstance(rule, str) or (known and rule not in known):
                        hint = _hint(rule, tuple(sorted(known))) if isinstance(rule, str) else ""
                        self.add(path + ("errors", k), f"{_kind(rule)} is not a quality rule id{hint}")
        minimum = m.get("min_completeness")
        if minimum is not None and (isinstance(minimum, bool) or not isinstance(minimum, (int, float))
                                    or not PROVINCE_MIN_COMPLETENESS <= minimum <= 1):
            self.add(path + ("min_completeness",), f"must be a number from {PROVINCE_MIN_COMPLETENESS} (the "
                                                   f"province default) to 1, found {_kind(minimum)}")

    def members(self, value: Any, path: KeyPath, libraries: dict[str, Library],
                group_period: tuple[date | None, date | None]) -> list[tuple[Membership, KeyPath]]:
        """Valid memberships with their key paths; valid_from/valid_to default to the group's."""
        out: list[tuple[Membership, KeyPath]] = []
        for j, entry in enumerate(self.sequence(value, path)):
            p = path + (j,)
            m = self.mapping(entry, p, required=("library",), optional=("valid_from", "valid_to"))
            if m is None:
                continue
            code = self.code(m, "library", p)
            valid_from, valid_to = self.period(m, p)
            valid_from = valid_from if "valid_from" in m else group_period[0]
            valid_to = valid_to if "valid_to" in m else group_period[1]
            if code is None or valid_from is None:
                continue
            if valid_to is not None and valid_to < valid_from:
                self.add(p, f"membership ends ({valid_to}) before it starts ({valid_from})")
                continue
            library = libraries.get(code)
            if library is None:
                self.add(p + ("library",), f"{code!r} is not a library code")
                continue
            period = (valid_from, valid_to)
            if library.valid_from is not None and not _within(period, (library.valid_from, library.valid_to)):
                self.add(p, f"membership {_period_text(*period)} is outside the validity of library {code} "
                            f"({_period_text(library.valid_from, library.valid_to)})")
            if group_period[0] is not None and not _within(period, group_period):
                self.add(p, f"membership {_period_text(*period)} is outside the group's validity "
                            f"({_period_text(*group_period)})")
            for earlier, _ in out:
                if earlier.library == code and _overlap(period, (earlier.valid_from, earlier.valid_to)):
                    self.add(p, f"library {code!r} is listed twice in this group at overlapping dates")
            out.append((Membership(code, valid_from, valid_to), p))
        return out

    # -- reporting calendar (§VI)

    def reporting(self, value: Any, path: KeyPath, libraries: dict[str, Library]) -> ReportingCalendar:
        if value is None:
            return ReportingCalendar()
        m = self.mapping(value, path, optional=(
            "smtp_conn_id", "sender", "education_office", "library_email", "contacts", "reminder_days",
            "report_lead_days", "calendar", "school_years"))
        if m is None:
            return ReportingCalendar()
        out: dict[str, Any] = {}
        if m.get("smtp_conn_id") is not None:
            conn_id = self.text(m, "smtp_conn_id", path)
            if conn_id is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", conn_id):
                self.add(path + ("smtp_conn_id",), f"{conn_id!r} is not an Airflow connection id "
                                                   f"(letters, digits, '_', '.', '-')")
            elif conn_id is not None:
                out["smtp_conn_id"] = conn_id
        out["sender"] = self.email(m, "sender", path)
        office = m.get("education_office")
        if office is not None:
            om = self.mapping(office, path + ("education_office",), required=("name", "email"))
            if om is not None:
                out["education_office_name"] = self.text(om, "name", path + ("education_office",))
                out["education_office_email"] = self.email(om, "email", path + ("education_office",))
        pattern = self.text(m, "library_email", path)
        if pattern is not None:
            if "{code}" not in pattern or not EMAIL_RE.match(pattern.replace("{code}", "x")):
                self.add(path + ("library_email",), f"{pattern!r} must be an address containing {{code}}, "
                                                    f"e.g. thuvien.{{code}}@truong.edu.vn")
            else:
                out["library_email"] = pattern
        contacts = m.get("contacts")
        if contacts is not None:
            if not isinstance(contacts, dict):
                self.add(path + ("contacts",), f"expected a mapping of library code → address, found "
                                               f"{_kind(contacts)}")
            else:
                good: dict[str, str] = {}
                for code in contacts:
                    p = path + ("contacts",)
                    if code not in libraries:
                        self.add(p + (code,), f"{code!r} is not a library code{_hint(str(code), tuple(libraries))}")
                    address = self.email(contacts, code, p)
                    if address is not None and code in libraries:
                        good[code] = address
                out["contacts"] = MappingProxyType(good)
        days = m.get("reminder_days")
        if days is not None:
            if (not isinstance(days, list) or not days
                    or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in days)):
                self.add(path + ("reminder_days",), f"expected a list of whole numbers of days (0 or more) "
                                                    f"before the deadline, found {days!r}")
            else:
                out["reminder_days"] = tuple(sorted(set(days), reverse=True))
        lead = self.positive_int(m, "report_lead_days", path)
        if lead is not None:
            out["report_lead_days"] = lead
        calendar = m.get("calendar")
        if calendar is not None:
            cm = self.mapping(calendar, path + ("calendar",), optional=tuple(BUILTIN_CALENDAR))
            for key in BUILTIN_CALENDAR:
                month_day = self.month_day(cm, key, path + ("calendar",)) if cm is not None else None
                if month_day is not None:
                    out[key] = month_day
        out = {k: v for k, v in out.items() if v is not None}
        base = ReportingCalendar(**out)
        out["school_years"] = MappingProxyType(self.school_years(m.get("school_years"), path + ("school_years",),
                                                                 base))
        return ReportingCalendar(**out)

    def email(self, m: dict, key: str, path: KeyPath) -> str | None:
        value = self.text(m, key, path)
        if value is not None and not EMAIL_RE.match(value):
            self.add(path + (key,), f"{value!r} is not an e-mail address")
            return None
        return value

    def month_day(self, m: dict, key: str, path: KeyPath) -> tuple[int, int] | None:
        value = m.get(key)
        if value is None:
            return None
        match = MONTH_DAY_RE.match(value.strip()) if isinstance(value, str) else None
        if match:
            month, day = int(match.group(1)), int(match.group(2))
            try:
                date(2001, month, day)  # a common year: 29 February is no yearly date
                return month, day
            except ValueError:
                pass
        self.add(path + (key,), f"{_kind(value)} is not a day of the year (write \"MM-DD\", quoted)")
        return None

    def school_years(self, value: Any, path: KeyPath, base: ReportingCalendar) -> dict[str, SchoolYear]:
        years: dict[str, SchoolYear] = {}
        seen: dict[str, KeyPath] = {}
        previous: tuple[SchoolYear, KeyPath] | None = None
        for i, entry in enumerate(self.sequence(value, path)):
            p = path + (i,)
            m = self.mapping(entry, p, required=("name", "start"),
                             optional=("semester_1_end", "semester_1_due", "end", "due"))
            if m is None:
                continue
            name = self.text(m, "name", p)
            match = SCHOOL_YEAR_NAME_RE.match(name) if name else None
            if name is not None and (not match or int(match.group(2)) != int(match.group(1)) + 1):
                self.add(p + ("name",), f"{name!r} is not a school year (YYYY-YYYY, consecutive years, "
                                        f"e.g. 2026-2027)")
                continue
            if name is None:
                continue
            if name in seen:
                self.add(p + ("name",), f"duplicate school year {name!r} (first at line "
                                        f"{self.report.line_of(seen[name])})")
                continue
            seen[name] = p
            dates = {key: self.date(m, key, p) for key in ("start", "semester_1_end", "semester_1_due", "end", "due")}
            default = base.school_year(int(name[:4]))
            start = dates["start"]
            if start is None:
                continue
            s1_due = dates["semester_1_due"] or default.semester_1_due
            s1_end = dates["semester_1_end"] or (s1_due if dates["semester_1_due"] else default.semester_1_end)
            due = dates["due"] or default.due
            end = dates["end"] or (due if dates["due"] else default.end)
            problem = False
            if start.year != int(name[:4]):
                self.add(p + ("start",), f"{start} is not in {name[:4]}, the first year of {name}")
                continue
            derived = {"semester_1_end": "semester_1_due", "end": "due"}  # an end defaults to its deadline
            for key, value_, low, low_name in (("semester_1_end", s1_end, start, "start"),
                                              ("end", end, s1_end, "semester_1_end"),
                                              ("semester_1_due", s1_due, start, "start"),
                                              ("due", due, s1_due, "semester_1_due")):
                if key in derived and key not in m and derived[key] in m:
                    continue
                if value_ <= low:
                    self.add(p + (key,), f"{value_} must come after {low_name} ({low})")
                    problem = True
            if end.year > int(name[5:]) or due.year > int(name[5:]):
                self.add(p, f"the school year's report ends after {name[5:]}")
                problem = True
            if previous is not None and not problem and start <= previous[0].end:
                self.add(p + ("start",), f"{start} is not after the end of school year {previous[0].name} "
                                         f"({previous[0].end})")
                problem = True
            if not problem:
                years[name] = SchoolYear(name, start, s1_end, s1_due, end, due)
                previous = (years[name], p)
        return years
