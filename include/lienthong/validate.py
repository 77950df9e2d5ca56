"""Validate a batch of canonical records against the mandatory-element suite (province guidance §III.4b).

The suite lives as plain JSON in ``expectations/<name>.json`` and is run with Great Expectations Core 1.x
from our own code (no GX Airflow provider): one ephemeral context per process, one pandas data source with
one dataframe asset and one whole-dataframe batch definition, reused for every batch. Each failing
(record, rule) becomes a :class:`Failure` carrying the suite's Vietnamese message and fix.

Three suites: ``mandatory_elements`` (completeness, §III.4b) and ``record_validity`` run over every chunk of
an export (:func:`validate_records`); ``batch_level`` runs once per export over a summary with one row per
element (:func:`validate_export`). Values that need code (ISBN check digits, an ĐKCB seen in an earlier chunk) become
derived columns of the chunk's frame, computed column-wise, so GX still decides and reports every failure.

Great Expectations is imported lazily (the import costs about 2 s), so importing this module is cheap, e.g.
when Airflow parses a DAG file.
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from functools import lru_cache
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

# Before great_expectations is imported anywhere through this module: no usage statistics.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import pandas as pd  # noqa: E402

from lienthong import gx_memo  # noqa: E402
from lienthong.model import CanonicalRecord  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx

__all__ = [
    "COLUMNS",
    "DERIVED_COLUMNS",
    "ELEMENTS",
    "BatchCheck",
    "BatchValidation",
    "Failure",
    "Policy",
    "SuiteError",
    "ValidationRunError",
    "get_context",
    "load_suite",
    "records_frame",
    "validate_batch",
    "validate_export",
    "validate_records",
]

DEFAULT_SUITE = "mandatory_elements"
SEVERITIES = ("error", "warning")
REQUIRED_META = ("rule", "field", "severity", "message_vi", "fix_vi")
JOIN = "; "

# Columns of the per-record frame, in order. Text columns are object dtype holding str or None (never NaN);
# record_index is int64, quantity is the nullable Int64.
TEXT_COLUMNS = (
    "record_key", "local_id", "title", "author", "pub_place", "publisher", "pub_year",
    "keywords", "subjects", "accession_numbers", "call_number",
)
COLUMNS = (
    "record_key", "local_id", "record_index", "title", "author", "pub_place", "publisher", "pub_year",
    "keywords", "subjects", "accession_numbers", "call_number", "quantity",
)

# Computed column-wise for the record_validity suite (absent from a caller's frame: filled with None).
DERIVED_COLUMNS = (
    "isbns_invalid", "pub_year_number", "language_invalid", "duplicate_accession_numbers", "orphan_items",
)
RECORD_SUITES = ("mandatory_elements", "record_validity")
BATCH_SUITE = "batch_level"

#: The seven mandatory elements of §III.4b, as scored (publication = place, publisher and year all present).
ELEMENTS = ("title", "author", "publication", "keywords", "subject", "accession_number", "call_number")

#: Named call number schemes (registry ``call_number_scheme``); ``pattern:<regex>`` is used as written.
CALL_NUMBER_REGEX = {
    # Dewey: three digits, decimals, then optionally the author mark ("895.922 T450H", "510 / T495").
    "DDC": r"^[0-9]{3}(?:\.[0-9]+)?(?:[ /].*)?$",
    # BBK (ББК) as used in Vietnam: "53(075)", "8(V)23", "63.3(2)", optionally followed by the mark.
    "BBK": r"^[0-9]{1,3}(?:\.[0-9]+)*(?:\([^()]+\))*[0-9.]*(?:\s*[ /-].*)?$",
}
MIN_YEAR = 1800

RESULT_FORMAT = {
    # COMPLETE gives every failing row's index label in result["unexpected_index_list"] (the partial_* lists
    # are capped at 20 rows). Record frames have a RangeIndex, so a label is the row's position; naming a key
    # column instead makes GX fetch it row by row, about 15 µs a failing row (measured: 0.5 s per 20,000 records).
    "result_format": "COMPLETE",
    # Not needed: the pandas query string GX would build to select the failing rows.
    "return_unexpected_index_query": False,
}

_DATASOURCE_NAME = "lienthong_records"
_ASSET_NAME = "records"
_BATCH_DEFINITION_NAME = "whole_dataframe"
_SUITE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

_lock = threading.RLock()  # one GX context per process; validations are serialised through it
_context: Any = None
_batch_definition: Any = None


class SuiteError(ValueError):
    """The suite file is missing, unreadable, or does not follow the lienthong meta contract."""


class ValidationRunError(RuntimeError):
    """GX could not evaluate an expectation (it reports this in the result instead of raising)."""


@dataclass
class Failure:
    """One failing (record, rule)."""

    record_key: str
    local_id: str
    record_index: int
    rule: str
    field: str
    value: str | None
    severity: str  # "error" (quarantine) or "warning" (load with a flag), after group rules
    message_vi: str
    fix_vi: str
    record_hash: str | None = None
    default_severity: str | None = None  # the province's, from the suite
    accepted: bool = False  # an accepted exception covers it: neither quarantines nor flags
    exception_id: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Policy:
    """What a library's records are checked against: its declared call number scheme and its groups' rules."""

    call_number_scheme: str = "DDC"
    errors: frozenset[str] = frozenset()  # rules raised from warning to error by a group
    min_completeness: float = 0.8
    min_year: int = MIN_YEAR
    max_year: int = field(default_factory=lambda: date.today().year + 1)

    def severity(self, rule: str, default: str) -> str:
        return "error" if rule in self.errors else default

    @property
    def call_number_regex(self) -> str:
        if self.call_number_scheme.startswith("pattern:"):
            return self.call_number_scheme[len("pattern:"):]
        try:
            return CALL_NUMBER_REGEX[self.call_number_scheme]
        except KeyError:
            raise ValueError(f"unknown call number scheme {self.call_number_scheme!r}") from None


@dataclass
class BatchCheck:
    """One batch-level check of a whole export."""

    rule: str
    field: str
    observed: float
    expected_min: float | None
    success: bool
    severity: str
    message_vi: str
    fix_vi: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BatchValidation:
    """The result of one batch: row-level failures, GX's overall verdict and JSON-safe statistics."""

    failures: list[Failure]
    success: bool  # GX overall success: False as soon as any expectation (error or warning) fails
    statistics: dict
    gx_results: dict = field(default_factory=dict)  # suite → trimmed GX result (JSON), for Data Docs

    def error_keys(self) -> set[str]:
        """record_keys with at least one error: these records are quarantined."""
        return {f.record_key for f in self.failures if f.severity == "error"}

    def warning_keys(self) -> set[str]:
        """record_keys with at least one warning (whether or not they also have an error).

        Records loaded with a flag are ``warning_keys() - error_keys()``.
        """
        return {f.record_key for f in self.failures if f.severity == "warning"}

    def failures_for(self, record_key: str) -> list[Failure]:
        return [f for f in self.failures if f.record_key == record_key]


# --------------------------------------------------------------------------------------------- suite


def expectations_dir() -> Path:
    """``$LIENTHONG_EXPECTATIONS_DIR``, else ``expectations/`` next to the project's pyproject.toml."""
    env = os.environ.get("LIENTHONG_EXPECTATIONS_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "pyproject.toml").is_file():
            return folder / "expectations"
    raise SuiteError(
        f"cannot find the project root (a folder with pyproject.toml) above {here}; "
        "set LIENTHONG_EXPECTATIONS_DIR to the folder holding the suite JSON files"
    )


def load_suite(name: str = DEFAULT_SUITE) -> gx.ExpectationSuite:
    """Load ``<expectations dir>/<name>.json`` as a GX ExpectationSuite and check our meta contract.

    GX logs and *drops* an expectation whose configuration is invalid instead of raising, so the number of
    expectations is checked against the file.
    """
    if not _SUITE_NAME_RE.match(name):
        raise SuiteError(f"invalid suite name {name!r}")
    path = expectations_dir() / f"{name}.json"
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as exc:
        raise SuiteError(f"expectation suite not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise SuiteError(f"expectation suite {path} is not valid JSON: {exc}") from exc

    import great_expectations as gx

    declared = data.get("expectations") or []
    suite = gx.ExpectationSuite(**data)
    if len(suite.expectations) != len(declared):
        raise SuiteError(
            f"{path}: GX accepted {len(suite.expectations)} of {len(declared)} expectations "
            "(see the great_expectations log for the invalid configuration)"
        )
    rules: set[str] = set()
    for position, expectation in enumerate(suite.expectations):
        meta = expectation.meta or {}
        missing = [key for key in REQUIRED_META if not meta.get(key)]
        if missing:
            raise SuiteError(f"{path}: expectation #{position} meta lacks {', '.join(missing)}")
        if meta["severity"] not in SEVERITIES:
            raise SuiteError(f"{path}: expectation #{position} has severity {meta['severity']!r}")
        if (meta["rule"], meta["field"]) in rules:
            raise SuiteError(f"{path}: rule id {meta['rule']!r} is used twice for field {meta['field']!r}")
        rules.add((meta["rule"], meta["field"]))
    return suite


# --------------------------------------------------------------------------------------------- frame


def _clean(value: Any) -> str | None:
    """str stripped, blank → None; NaN/NA → None."""
    if value is None:
        return None
    if value.__class__ is str:
        return value.strip() or None
    if not isinstance(value, str):
        try:
            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
        value = str(value)
    value = value.strip()
    return value or None


def _join(values: Iterable[Any]) -> str | None:
    if not values:
        return None
    cleaned = [v for v in _clean_all(values) if v is not None]
    return JOIN.join(cleaned) if cleaned else None


def _text_series(values: list) -> pd.Series:
    # Explicit object dtype: pandas 3 would infer its str dtype, where a missing value is NaN.
    return pd.Series(values, dtype=object)


def accession_key(value: str) -> str:
    """ĐKCB compared without case or spaces: "stk. 000123" and "STK.000123" are the same copy."""
    return "".join(value.split()).casefold()


def _clean_all(values: Iterable[Any]) -> list[str | None]:
    """:func:`_clean` over a column, with its common cases (None, text) inline: a chunk has a million values."""
    return [None if v is None else (v.strip() or None) if v.__class__ is str else _clean(v) for v in values]


def records_frame(records: Iterable[CanonicalRecord], accession_seen: set[str] | None = None) -> pd.DataFrame:
    """One row per record: :data:`COLUMNS` then :data:`DERIVED_COLUMNS` (see the suites in expectations/).

    ``accession_seen`` carries the ĐKCB keys of earlier chunks of the same export and is updated, so an ĐKCB
    is unique across the whole export; the first record using it keeps it, later ones fail.
    """
    records = list(records)
    indexes = [r.record_index for r in records]
    columns: dict[str, list] = {
        "record_key": [f"{index}" for index in indexes],
        "local_id": [local_id or f"idx:{index}"
                     for local_id, index in zip(_clean_all([r.local_id for r in records]), indexes)],
        "record_index": [int(index) for index in indexes],
        **{name: _clean_all(map(attrgetter(name), records))
           for name in ("title", "author", "pub_place", "publisher", "pub_year")},
        "keywords": [_join(r.keywords) if r.keywords else None for r in records],
        "subjects": [_join(r.subjects) if r.subjects else None for r in records],
        "accession_numbers": [_join([item.accession_number for item in r.items]) if r.items else None
                              for r in records],
        "call_number": [number or _first_item_call_number(r.items)
                        for number, r in zip(_clean_all([r.call_number for r in records]), records)],
        "quantity": [None if r.quantity is None else int(r.quantity) for r in records],
    }
    frame = pd.DataFrame(
        {
            name: (
                pd.Series(values, dtype="int64") if name == "record_index"
                else pd.Series(values, dtype="Int64") if name == "quantity"
                else _text_series(values)
            )
            for name, values in columns.items()
        }
    )
    return _with_derived(frame, records, columns, set() if accession_seen is None else accession_seen)


def _first_item_call_number(items: list) -> str | None:
    """A record without its own call number takes its first copy's (the 952$o of Koha exports)."""
    return next((number for number in _clean_all([item.call_number for item in items]) if number is not None), None)


def _invalid_isbns(isbns: list[str]) -> str | None:
    bad = [value for value in isbns if value and not _valid_isbn(value)]
    return JOIN.join(bad) if bad else None


@lru_cache(maxsize=1 << 16)
def _valid_isbn(value: str) -> bool:
    """python-stdnum's check, cached: the same edition's ISBN recurs across a province's libraries."""
    from stdnum import isbn

    return isbn.is_valid(value)


def _duplicates(items, seen: set[str]) -> str | None:
    dup = []
    for item in items:
        number = _clean(item.accession_number)
        if number is None:
            continue
        key = accession_key(number)
        if key in seen:
            dup.append(number)
        seen.add(key)
    return JOIN.join(dup) if dup else None


_FOUR_DIGITS = re.compile(r"[0-9]{4}")


def _with_derived(frame: pd.DataFrame, records: list[CanonicalRecord], columns: Mapping[str, list],
                  seen: set[str]) -> pd.DataFrame:
    """The record_validity columns, from the frame's own column lists (per-value code where pandas would loop
    in Python anyway: years, ISBN check digits, language codes, ĐKCB)."""
    frame["isbns_invalid"] = _text_series([_invalid_isbns(r.isbns) if r.isbns else None for r in records])
    frame["pub_year_number"] = pd.Series(
        [int(year) if year is not None and _FOUR_DIGITS.fullmatch(year) else None for year in columns["pub_year"]],
        dtype="Int64")
    # Checked here: handing GX the ~8,000 codes as a value_set costs over a second per chunk.
    codes = language_codes()
    languages = [(language or "").lower() or None for language in _clean_all([r.language for r in records])]
    frame["language_invalid"] = _text_series(
        [language if language is not None and language not in codes else None for language in languages])
    frame["duplicate_accession_numbers"] = _text_series(
        [_duplicates(r.items, seen) if r.items else None for r in records])
    bibliographic = frame[["title", "author", "pub_place", "publisher", "pub_year", "keywords", "subjects"]]
    orphan = (bibliographic.isna().all(axis=1) & frame["accession_numbers"].notna()).tolist()
    frame["orphan_items"] = _text_series([numbers if alone and not r.isbns else None
                                          for numbers, alone, r in zip(columns["accession_numbers"], orphan, records)])
    return frame


def _coerce_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A caller's DataFrame brought to records_frame's dtypes (object text without NaN, Int64 quantity)."""
    missing = [name for name in COLUMNS if name not in df.columns]
    if missing:
        raise ValueError(f"validation frame lacks columns: {', '.join(missing)}")
    out = df.reset_index(drop=True)  # new columns below are aligned by position, not by the caller's labels
    for name in DERIVED_COLUMNS:
        if name not in out.columns:
            out[name] = _text_series([None] * len(out))
    for name in TEXT_COLUMNS:
        out[name] = _text_series([_clean(v) for v in out[name].tolist()])
    out["record_index"] = out["record_index"].astype("int64")
    out["quantity"] = pd.Series(
        [None if _clean(v) is None else int(v) for v in out["quantity"].tolist()], dtype="Int64"
    )
    return out


# --------------------------------------------------------------------------------------------- GX


def get_context():
    """The process-wide ephemeral GX context (created on first use: ~2 s of imports)."""
    global _context
    with _lock:
        if _context is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.execution_engine import pandas_execution_engine

            context = gx.get_context(mode="ephemeral")
            context.enable_analytics(False)
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            # GX fingerprints every in-memory frame it validates (an md5 over pandas' row hashes) when the frame
            # is smaller than HASH_THRESHOLD bytes; the fingerprint only labels the batch, and computing it twice
            # per suite cost about a tenth of the ingesting process's CPU. 0 turns it off.
            pandas_execution_engine.HASH_THRESHOLD = 0
            gx_memo.install()
            _context = context
        return _context


def _get_batch_definition():
    """One pandas data source / dataframe asset / whole-dataframe batch definition, reused for every batch."""
    global _batch_definition
    with _lock:
        if _batch_definition is None:
            context = get_context()
            source = context.data_sources.add_pandas(name=_DATASOURCE_NAME)
            asset = source.add_dataframe_asset(name=_ASSET_NAME)
            _batch_definition = asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION_NAME)
        return _batch_definition


def run_suite_on(batch_definition: Any, df: pd.DataFrame, suite: Any, parameters: Mapping[str, Any]) -> Any:
    """GX's result for ``suite`` over ``df`` (one validation at a time per process; see :mod:`gx_memo`)."""
    with _lock, gx_memo.remembered():
        batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
        return batch.validate(suite, result_format=RESULT_FORMAT, expectation_parameters=dict(parameters))


def _raised(exception_info: Any) -> list[str]:
    """Messages of exceptions GX swallowed; exception_info is flat or keyed by metric id."""
    if not exception_info:
        return []
    if "raised_exception" in exception_info:
        infos = [exception_info]
    else:
        infos = [info for info in exception_info.values() if isinstance(info, dict)]
    return [str(info.get("exception_message")) for info in infos if info.get("raised_exception")]


def _json_safe(value: Any) -> Any:
    """Plain Python for json.dumps(allow_nan=False): numpy scalars unwrapped, NaN/inf → None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def language_codes() -> frozenset[str]:
    """ISO 639-2/B (MARC's) and ISO 639-3 codes, from pycountry; cached."""
    global _LANGUAGE_CODES
    if _LANGUAGE_CODES is None:
        import pycountry

        codes = {lang.alpha_3 for lang in pycountry.languages}
        codes |= {lang.bibliographic for lang in pycountry.languages if hasattr(lang, "bibliographic")}
        _LANGUAGE_CODES = frozenset(codes)
    return _LANGUAGE_CODES


_LANGUAGE_CODES: frozenset[str] | None = None


_PER_ROW_LISTS = frozenset(
    ("unexpected_list", "unexpected_index_list", "unexpected_index_query", "partial_unexpected_index_list"))


def trim_result(result: Any) -> dict:
    """A GX suite result as JSON, without the per-row lists (kept in quality.check_failure instead).

    The lists are dropped from the result before GX serialises it: converting them first cost about a tenth
    of the validation. Call it once the failures have been read from ``result``.
    """
    for entry in result.results:
        if entry.result:
            entry.result = {key: value for key, value in entry.result.items() if key not in _PER_ROW_LISTS}
    data = suite_result_json(result)
    for holder in [data.get("suite_parameters") or {}] + [
            (entry.get("expectation_config") or {}).get("kwargs") or {} for entry in data.get("results") or []]:
        for key, value in list(holder.items()):
            if isinstance(value, list) and len(value) > 30:  # e.g. the ~8,000 language codes
                holder[key] = value[:10] + [f"… ({len(value)} values)"]
    for entry in data.get("results") or []:
        outcome = entry.get("result") or {}
        if isinstance(outcome.get("partial_unexpected_list"), list):
            outcome["partial_unexpected_list"] = outcome["partial_unexpected_list"][:20]
    return _json_safe(data)


def suite_result_json(result: Any) -> dict:
    """What GX's ``result.to_json_dict()`` returns, without its copies.

    GX deep-copies the suite result, dumps each expectation's result through marshmallow (copying it twice
    more), then dumps the copied list again through the suite's schema: about a fifth of a chunk's
    validation. The same dictionary is built here from the same parts with GX's own converter; the tests hold it
    equal to GX's on real results (passing, failing, raised).
    """
    from great_expectations.util import convert_to_json_serializable

    return {
        "success": result.success,
        "results": [_expectation_result_json(entry, convert_to_json_serializable) for entry in result.results],
        "suite_name": result.suite_name,
        "suite_parameters": convert_to_json_serializable(result.suite_parameters),
        "statistics": convert_to_json_serializable(result.statistics),
        "meta": convert_to_json_serializable(result.meta),
        "id": str(result.id) if result.id else None,
    }


def _expectation_result_json(entry: Any, convert: Any) -> dict:
    config = entry.expectation_config
    data = {
        "success": entry.success,
        "expectation_config": None if config is None else config.to_json_dict(),
        "result": convert(entry.result),
        "meta": convert(entry.meta),
        "exception_info": convert(entry.exception_info),
    }
    if entry.rendered_content is not None:
        data["rendered_content"] = convert(entry.rendered_content)
    return data


@dataclass
class _SuiteRun:
    failures: list[Failure]
    by_rule: dict[str, int]
    completeness: dict[str, float]
    result: Any
    suite: Any


def unexpected_rows(df: pd.DataFrame, index_list: list[int], column: str) -> Iterable[tuple[int, Any]]:
    """(position, value in ``column``) of each row in an expectation's unexpected_index_list (see RESULT_FORMAT).

    ``df`` must have a RangeIndex from 0, so GX's index labels are positions.
    """
    if not df.index.equals(pd.RangeIndex(len(df))):
        raise ValueError("a validation frame must have a RangeIndex from 0 (see _prepare)")
    values = df[column].take(index_list).tolist() if column in df.columns else [None] * len(index_list)
    return zip(index_list, values)


def _run_suite(df: pd.DataFrame, suite_name: str, parameters: Mapping[str, Any] | None = None) -> _SuiteRun:
    """Failures by row position: ``df`` must have a RangeIndex from 0, as :func:`_prepare` gives."""
    suite = load_suite(suite_name)
    result = run_suite_on(_get_batch_definition(), df, suite, parameters or {})

    keys, local_ids, indexes = df["record_key"].tolist(), df["local_id"].tolist(), df["record_index"].tolist()
    failures: list[Failure] = []
    by_rule: dict[str, int] = {}
    completeness: dict[str, float] = {}
    problems: list[str] = []

    for expectation_result in result.results:
        meta = expectation_result.expectation_config.meta
        rule, field_name = meta["rule"], meta["field"]
        raised = _raised(expectation_result.exception_info)
        if raised:
            problems.append(f"{rule}: {'; '.join(raised)}")
            continue
        outcome = expectation_result.result or {}
        column = expectation_result.expectation_config.kwargs.get("column", field_name)
        rows = outcome.get("unexpected_index_list") or []
        unexpected = int(outcome.get("unexpected_count") or 0)
        if unexpected != len(rows):
            problems.append(f"{rule}: {unexpected} unexpected rows but {len(rows)} row ids returned")
            continue
        for position, value in unexpected_rows(df, rows, column):
            failures.append(
                Failure(
                    record_key=str(keys[position]),
                    local_id=local_ids[position],
                    record_index=int(indexes[position]),
                    rule=rule,
                    field=field_name,
                    value=_clean(_json_safe(value)),
                    severity=meta["severity"],
                    message_vi=meta["message_vi"],
                    fix_vi=meta["fix_vi"],
                    default_severity=meta["severity"],
                )
            )
        by_rule[rule] = by_rule.get(rule, 0) + unexpected
        # Share of the rows the rule applies to (for ĐKCB: rows without a quantity) that pass; 1.0 if none.
        evaluated = int(outcome.get("element_count") or 0)
        ratio = 1.0 - unexpected / evaluated if evaluated else 1.0
        completeness[field_name] = min(ratio, completeness.get(field_name, 1.0))

    if problems:
        raise ValidationRunError(f"suite {suite_name!r} could not be evaluated: " + " | ".join(problems))
    return _SuiteRun(failures, by_rule, completeness, result, suite)


def _prepare(records: list[CanonicalRecord] | pd.DataFrame, accession_seen: set[str] | None) -> pd.DataFrame:
    df = _coerce_frame(records) if isinstance(records, pd.DataFrame) else records_frame(records, accession_seen)
    duplicated = df["record_key"][df["record_key"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"record_key must be unique in a batch; duplicated: {duplicated[:10]}")
    return df


def element_counts(df: pd.DataFrame) -> dict[str, list[int]]:
    """element → [records carrying it, records it applies to] (ĐKCB does not apply to SGK quantity lines)."""
    n = len(df)
    without_quantity = df["quantity"].isna()
    present = {
        "title": df["title"].notna(),
        "author": df["author"].notna(),
        "publication": df[["pub_place", "publisher", "pub_year"]].notna().all(axis=1),
        "keywords": df["keywords"].notna(),
        "subject": df["subjects"].notna(),
        "accession_number": df["accession_numbers"].notna() & without_quantity,
        "call_number": df["call_number"].notna(),
    }
    evaluated = {name: n for name in ELEMENTS}
    evaluated["accession_number"] = int(without_quantity.sum())
    return {name: [int(present[name].sum()), int(evaluated[name])] for name in ELEMENTS}


def _statistics(df: pd.DataFrame, suites: list[str], runs: list[_SuiteRun], failures: list[Failure]) -> dict:
    validation = BatchValidation(failures=failures, success=True, statistics={})
    errors, warnings = validation.error_keys(), validation.warning_keys()
    gx = [run.result.statistics or {} for run in runs]

    def total(key: str) -> int | None:
        values = [g.get(key) for g in gx]
        return None if any(v is None for v in values) else sum(values)

    evaluated, successful = total("evaluated_expectations"), total("successful_expectations")
    by_rule: dict[str, int] = {}
    completeness: dict[str, float] = {}
    for run in runs:
        by_rule.update(run.by_rule)
        completeness.update(run.completeness)
    return _json_safe(
        {
            "suite": suites[0] if len(suites) == 1 else "+".join(suites),
            "records": len(df),
            "evaluated_expectations": evaluated,
            "successful_expectations": successful,
            "unsuccessful_expectations": total("unsuccessful_expectations"),
            "success_percent": (100.0 * successful / evaluated if evaluated else None) if len(runs) > 1
            else gx[0].get("success_percent"),
            "failures": len(failures),
            "failures_by_rule": by_rule,
            "failures_by_severity": {s: sum(1 for f in failures if f.severity == s) for s in SEVERITIES},
            "completeness": completeness,
            "complete_records": len(df) - len(errors | warnings),
            "records_with_errors": len(errors),
            "records_with_warnings_only": len(warnings - errors),
        }
    )


def validate_batch(
    records: list[CanonicalRecord] | pd.DataFrame, suite_name: str = DEFAULT_SUITE
) -> BatchValidation:
    """Run one suite over one batch and return one Failure per failing (record, rule).

    ``records`` is a list of CanonicalRecord or a frame shaped like :func:`records_frame`'s; record_key must be
    unique in the batch. Raises ValidationRunError when GX could not evaluate an expectation (for instance a
    column named in the suite is missing), since it would otherwise look like a pass.
    """
    df = _prepare(records, None)
    run = _run_suite(df, suite_name, _parameters(Policy()))
    rule_order = {e.meta["rule"]: position for position, e in enumerate(run.suite.expectations)}
    failures = sorted(run.failures, key=lambda f: (f.record_index, f.record_key, rule_order.get(f.rule, 0)))
    return BatchValidation(failures=failures, success=bool(run.result.success),
                           statistics=_statistics(df, [suite_name], [run], failures),
                           gx_results={suite_name: trim_result(run.result)})


def _parameters(policy: Policy) -> dict[str, Any]:
    return {"call_number_regex": policy.call_number_regex, "min_year": policy.min_year,
            "max_year": policy.max_year}


def validate_records(
    records: list[CanonicalRecord] | pd.DataFrame,
    policy: Policy | None = None,
    *,
    accession_seen: set[str] | None = None,
    suites: tuple[str, ...] = RECORD_SUITES,
) -> BatchValidation:
    """Completeness and validity of one chunk under a library's policy (group rules raise severities).

    ``accession_seen`` is shared by the chunks of one export (see :func:`records_frame`). Statistics add
    ``elements`` (see :func:`element_counts`) for the scorecard.
    """
    policy = policy or Policy()
    df = _prepare(records, accession_seen)
    parameters = _parameters(policy)
    runs = [_run_suite(df, name, parameters) for name in suites]
    hashes = {} if isinstance(records, pd.DataFrame) else {str(r.record_index): r.record_hash for r in records}
    order = {}
    for run in runs:
        for expectation in run.suite.expectations:
            order.setdefault(expectation.meta["rule"], len(order))
    failures = [f for run in runs for f in run.failures]
    for failure in failures:
        failure.severity = policy.severity(failure.rule, failure.default_severity or failure.severity)
        failure.record_hash = hashes.get(failure.record_key)
    failures.sort(key=lambda f: (f.record_index, f.record_key, order.get(f.rule, 0)))
    statistics = _statistics(df, list(suites), runs, failures)
    statistics["elements"] = element_counts(df)
    return BatchValidation(failures=failures, success=all(bool(run.result.success) for run in runs),
                           statistics=statistics,
                           gx_results={name: trim_result(run.result) for name, run in zip(suites, runs)})


def batch_frame(record_count: int, elements: Mapping[str, list[int]]) -> pd.DataFrame:
    """The summary of a whole export that the batch_level suite checks: one row per mandatory element, with
    its completeness and the export's record count (the same on every row)."""
    shares = []
    for name in ELEMENTS:
        present, evaluated = elements.get(name, [0, 0])
        shares.append(present / evaluated if evaluated else 1.0)
    return pd.DataFrame({"element": list(ELEMENTS), "completeness": shares,
                         "record_count": [int(record_count)] * len(ELEMENTS)})


def validate_export(record_count: int, elements: Mapping[str, list[int]], *, min_records: float,
                    policy: Policy | None = None) -> tuple[list[BatchCheck], dict]:
    """Run batch_level over a whole export: every check (passed or not: the record count, then each element
    in :data:`ELEMENTS` order) and the trimmed GX result."""
    policy = policy or Policy()
    df = batch_frame(record_count, elements)
    suite = load_suite(BATCH_SUITE)
    parameters = {"min_records": float(min_records), "min_completeness": float(policy.min_completeness)}
    result = run_suite_on(_get_batch_definition(), df, suite, parameters)
    checks: list[BatchCheck] = []
    problems: list[str] = []
    for expectation_result in result.results:
        config = expectation_result.expectation_config
        meta = config.meta
        raised = _raised(expectation_result.exception_info)
        if raised:
            problems.append(f"{meta['rule']}: {'; '.join(raised)}")
            continue
        column = config.kwargs["column"]
        if column == "record_count":
            checks.append(BatchCheck(rule=meta["rule"], field=meta["field"], observed=float(record_count),
                                     expected_min=parameters["min_records"], success=bool(expectation_result.success),
                                     severity=meta["severity"], message_vi=meta["message_vi"], fix_vi=meta["fix_vi"]))
            continue
        outcome = expectation_result.result or {}
        failing = set(outcome.get("unexpected_index_list") or [])
        if int(outcome.get("unexpected_count") or 0) != len(failing):
            problems.append(f"{meta['rule']}: {outcome.get('unexpected_count')} unexpected rows but "
                            f"{len(failing)} row ids returned")
            continue
        texts = meta.get("elements") or {}
        for position, (name, share) in enumerate(zip(df["element"], df[column])):
            text = texts.get(name, meta)
            checks.append(BatchCheck(rule=meta["rule"], field=name, observed=float(share),
                                     expected_min=parameters["min_completeness"], success=position not in failing,
                                     severity=meta["severity"], message_vi=text["message_vi"], fix_vi=text["fix_vi"]))
    if problems:
        raise ValidationRunError(f"suite {BATCH_SUITE!r} could not be evaluated: " + " | ".join(problems))
    return checks, trim_result(result)
