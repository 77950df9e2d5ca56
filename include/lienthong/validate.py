"""Validate a batch of canonical records against the mandatory-element suite (province guidance §III.4b).

The suite lives as plain JSON in ``expectations/<name>.json`` and is run with Great Expectations Core 1.x
from our own code (no GX Airflow provider): one ephemeral context per process, one pandas data source with
one dataframe asset and one whole-dataframe batch definition, reused for every batch. Each failing
(record, rule) becomes a :class:`Failure` carrying the suite's Vietnamese message and fix.

Great Expectations is imported lazily (the import costs about 2 s), so importing this module is cheap, e.g.
when Airflow parses a DAG file.
"""
from __future__ import annotations

import json
import math
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

# Before great_expectations is imported anywhere through this module: no usage statistics.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import pandas as pd  # noqa: E402

from lienthong.model import CanonicalRecord  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx

__all__ = [
    "COLUMNS",
    "BatchValidation",
    "Failure",
    "SuiteError",
    "ValidationRunError",
    "get_context",
    "load_suite",
    "records_frame",
    "validate_batch",
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

RESULT_FORMAT = {
    # COMPLETE + unexpected_index_column_names gives every failing row's record_key in
    # result["unexpected_index_list"] (the partial_* lists are capped at 20 rows).
    "result_format": "COMPLETE",
    "unexpected_index_column_names": ["record_key"],
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
    severity: str  # "error" (quarantine) or "warning" (load with a flag)
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
        if meta["rule"] in rules:
            raise SuiteError(f"{path}: rule id {meta['rule']!r} is used twice")
        rules.add(meta["rule"])
    return suite


# --------------------------------------------------------------------------------------------- frame


def _clean(value: Any) -> str | None:
    """str stripped, blank → None; NaN/NA → None."""
    if value is None:
        return None
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
    cleaned = [v for v in (_clean(value) for value in values) if v is not None]
    return JOIN.join(cleaned) if cleaned else None


def _text_series(values: list) -> pd.Series:
    # Explicit object dtype: pandas 3 would infer its str dtype, where a missing value is NaN.
    return pd.Series(values, dtype=object)


def records_frame(records: Iterable[CanonicalRecord]) -> pd.DataFrame:
    """One row per record with the columns in :data:`COLUMNS` (see expectations/mandatory_elements.json)."""
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    for record in records:
        item_call_numbers = (_clean(item.call_number) for item in record.items)
        row = {
            "record_key": f"{record.record_index}",
            "local_id": _clean(record.local_id) or f"idx:{record.record_index}",
            "record_index": int(record.record_index),
            "title": _clean(record.title),
            "author": _clean(record.author),
            "pub_place": _clean(record.pub_place),
            "publisher": _clean(record.publisher),
            "pub_year": _clean(record.pub_year),
            "keywords": _join(record.keywords),
            "subjects": _join(record.subjects),
            "accession_numbers": _join(item.accession_number for item in record.items),
            "call_number": _clean(record.call_number)
            or next((c for c in item_call_numbers if c is not None), None),
            "quantity": None if record.quantity is None else int(record.quantity),
        }
        for name in COLUMNS:
            columns[name].append(row[name])
    return pd.DataFrame(
        {
            name: (
                pd.Series(values, dtype="int64") if name == "record_index"
                else pd.Series(values, dtype="Int64") if name == "quantity"
                else _text_series(values)
            )
            for name, values in columns.items()
        }
    )


def _coerce_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A caller's DataFrame brought to records_frame's dtypes (object text without NaN, Int64 quantity)."""
    missing = [name for name in COLUMNS if name not in df.columns]
    if missing:
        raise ValueError(f"validation frame lacks columns: {', '.join(missing)}")
    out = df.copy()
    for name in TEXT_COLUMNS:
        out[name] = _text_series([_clean(v) for v in out[name].tolist()])
    out["record_index"] = out["record_index"].astype("int64")
    out["quantity"] = pd.Series(
        [None if _clean(v) is None else int(v) for v in out["quantity"].tolist()], dtype="Int64"
    )
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------- GX


def get_context():
    """The process-wide ephemeral GX context (created on first use: ~2 s of imports)."""
    global _context
    with _lock:
        if _context is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.enable_analytics(False)
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
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


def validate_batch(
    records: list[CanonicalRecord] | pd.DataFrame, suite_name: str = DEFAULT_SUITE
) -> BatchValidation:
    """Run the suite over one batch and return one Failure per failing (record, rule).

    ``records`` is a list of CanonicalRecord or a frame shaped like :func:`records_frame`'s; record_key must be
    unique in the batch. Raises ValidationRunError when GX could not evaluate an expectation (for instance a
    column named in the suite is missing), since it would otherwise look like a pass.
    """
    df = _coerce_frame(records) if isinstance(records, pd.DataFrame) else records_frame(records)
    duplicated = df["record_key"][df["record_key"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"record_key must be unique in a batch; duplicated: {duplicated[:10]}")
    suite = load_suite(suite_name)

    with _lock:
        batch = _get_batch_definition().get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite, result_format=RESULT_FORMAT)

    identity = dict(zip(df["record_key"], zip(df["local_id"], df["record_index"].tolist())))
    rule_order = {e.meta["rule"]: position for position, e in enumerate(suite.expectations)}
    failures: list[Failure] = []
    by_rule: dict[str, int] = {}
    completeness: dict[str, float] = {}
    problems: list[str] = []

    for expectation_result in result.results:
        meta = expectation_result.expectation_config.meta
        rule, field = meta["rule"], meta["field"]
        raised = _raised(expectation_result.exception_info)
        if raised:
            problems.append(f"{rule}: {'; '.join(raised)}")
            continue
        outcome = expectation_result.result or {}
        column = expectation_result.expectation_config.kwargs.get("column", field)
        rows = outcome.get("unexpected_index_list") or []
        unexpected = int(outcome.get("unexpected_count") or 0)
        if unexpected != len(rows):
            problems.append(f"{rule}: {unexpected} unexpected rows but {len(rows)} row ids returned")
            continue
        for row in rows:
            key = str(row["record_key"])
            local_id, record_index = identity[key]
            failures.append(
                Failure(
                    record_key=key,
                    local_id=local_id,
                    record_index=int(record_index),
                    rule=rule,
                    field=field,
                    value=_clean(row.get(column)),
                    severity=meta["severity"],
                    message_vi=meta["message_vi"],
                    fix_vi=meta["fix_vi"],
                )
            )
        by_rule[rule] = unexpected
        # Share of the rows the rule applies to (for ĐKCB: rows without a quantity) that pass; 1.0 if none.
        evaluated = int(outcome.get("element_count") or 0)
        ratio = 1.0 - unexpected / evaluated if evaluated else 1.0
        completeness[field] = min(ratio, completeness.get(field, 1.0))

    if problems:
        raise ValidationRunError(f"suite {suite_name!r} could not be evaluated: " + " | ".join(problems))

    failures.sort(key=lambda f: (f.record_index, f.record_key, rule_order.get(f.rule, 0)))
    validation = BatchValidation(failures=failures, success=bool(result.success), statistics={})
    errors, warnings = validation.error_keys(), validation.warning_keys()
    gx_stats = result.statistics or {}
    validation.statistics = _json_safe(
        {
            "suite": suite_name,
            "records": len(df),
            "evaluated_expectations": gx_stats.get("evaluated_expectations"),
            "successful_expectations": gx_stats.get("successful_expectations"),
            "unsuccessful_expectations": gx_stats.get("unsuccessful_expectations"),
            "success_percent": gx_stats.get("success_percent"),
            "failures": len(failures),
            "failures_by_rule": by_rule,
            "failures_by_severity": {s: sum(1 for f in failures if f.severity == s) for s in SEVERITIES},
            "completeness": completeness,
            "complete_records": len(df) - len(errors | warnings),
            "records_with_errors": len(errors),
            "records_with_warnings_only": len(warnings - errors),
        }
    )
    return validation
