"""The steward's side of record quality: policies from the registry, accepted exceptions, fix lists.

Stewards are school librarians: everything they read here says in Vietnamese which record, which field, what
is wrong and how to fix it. An accepted exception (``lienthong quality accept``) covers one rule of one record
version (its record_hash): it stays accepted across re-imports while the record is unchanged, and is re-opened
as soon as the library sends a changed version.
"""
from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa

from lienthong.registry import PROVINCE_MIN_COMPLETENESS, Registry
from lienthong.validate import BatchCheck, Policy

#: Where each field lives in the record, for the fix list (MARC 21 tags as Koha exports them).
FIELD_LABELS_VI = {
    "title": "Nhan đề (245$a)",
    "author": "Tác giả (100$a / 110$a / 700$a)",
    "pub_place": "Nơi xuất bản (260$a / 264$a)",
    "publisher": "Nhà xuất bản (260$b / 264$b)",
    "pub_year": "Năm xuất bản (260$c / 264$c)",
    "keywords": "Từ khóa (653$a)",
    "subjects": "Chủ đề (650$a)",
    "accession_numbers": "Số ĐKCB (952$p)",
    "call_number": "Mã xếp giá (082 / 952$o)",
    "isbns": "ISBN (020$a)",
    "language": "Ngôn ngữ (041$a, 008/35-37)",
    "items": "Bản sách (952)",
    "001": "Số kiểm soát (001)",
}
SEVERITY_VI = {"error": "Lỗi: biểu ghi bị tạm giữ", "warning": "Cảnh báo: đã nhận, cần sửa"}
FIXLIST_HEADER = ("Mã biểu ghi", "Nhan đề", "Số ĐKCB", "Trường", "Giá trị hiện tại", "Mức độ", "Lỗi",
                  "Cách sửa", "Thư viện")
# A spreadsheet cell starting with one of these may be run as a formula (CSV/formula injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


# Each library's newest batch that was checked to the end (applied or held): what stewards work on.
NEWEST_CHECKED_BATCH = """SELECT DISTINCT ON (library_code) batch_id FROM core.batch
                          WHERE status IN ('applied', 'held') ORDER BY library_code, batch_id DESC"""


class QualityError(ValueError):
    """A steward command that cannot be carried out; the message says why."""


# ---------------------------------------------------------------- policy


def policy_for(registry: Registry, library_code: str, on: date | None = None) -> Policy:
    """The province defaults, tightened by every group the library belongs to (rules.quality)."""
    library = registry.libraries[library_code]
    errors: set[str] = set()
    minimum = PROVINCE_MIN_COMPLETENESS
    for group in registry.groups_of(library_code, on):
        rules = (group.rules or {}).get("quality") or {}
        errors.update(rules.get("errors") or ())
        if rules.get("min_completeness") is not None:
            minimum = max(minimum, float(rules["min_completeness"]))
    return Policy(call_number_scheme=library.call_number_scheme, errors=frozenset(errors),
                  min_completeness=minimum)


# ---------------------------------------------------------------- written during ingest


def write_gx_results(conn: sa.Connection, batch_id: int, library_code: str, chunk: int,
                     results: Mapping[str, dict]) -> None:
    if not results:
        return
    conn.execute(
        sa.text("""INSERT INTO quality.gx_result (batch_id, library_code, suite, chunk, success, result)
                   VALUES (:b, :l, :suite, :chunk, :success, CAST(:result AS jsonb))"""),
        [{"b": batch_id, "l": library_code, "suite": suite, "chunk": chunk, "success": bool(result.get("success")),
          "result": json.dumps(result, ensure_ascii=False).replace("\\u0000", "\ufffd")}
         for suite, result in results.items()],
    )


def write_batch_checks(conn: sa.Connection, batch_id: int, library_code: str, checks: Sequence[BatchCheck]) -> None:
    if not checks:
        return
    conn.execute(
        sa.text("""INSERT INTO quality.batch_check (batch_id, library_code, rule, field, observed, expected_min,
                                                    success, severity, message_vi)
                   VALUES (:b, :l, :rule, :field, :observed, :minimum, :success, :severity, :message)"""),
        [{"b": batch_id, "l": library_code, "rule": c.rule, "field": c.field, "observed": c.observed,
          "minimum": c.expected_min, "success": c.success, "severity": c.severity, "message": c.message_vi}
         for c in checks],
    )


def load_exceptions(conn: sa.Connection, library_code: str) -> dict[str, list[tuple[int, str, str]]]:
    """Active exceptions of a library: local_id → [(exception_id, rule, record_hash)]."""
    out: dict[str, list[tuple[int, str, str]]] = {}
    for row in conn.execute(
        sa.text("SELECT exception_id, local_id, rule, record_hash FROM quality.exception "
                "WHERE library_code = :l AND status = 'active'"), {"l": library_code}):
        out.setdefault(row.local_id, []).append((row.exception_id, row.rule, row.record_hash))
    return out


def exceptions_accepted_since(conn: sa.Connection, library_code: str, since: datetime) -> int:
    """Exceptions accepted after a batch started: an unchanged export is then checked again."""
    return conn.execute(
        sa.text("SELECT count(*) FROM quality.exception WHERE library_code = :l AND status = 'active' "
                "AND accepted_at > :t"), {"l": library_code, "t": since}).scalar_one()


def reopen_exceptions(conn: sa.Connection, batch_id: int, reopened: Mapping[int, str]) -> None:
    if not reopened:
        return
    conn.execute(
        sa.text("""UPDATE quality.exception SET status = 'reopened', reopened_at = now(),
                          reopened_by_batch = :b, reopen_reason = :why
                   WHERE exception_id = :id AND status = 'active'"""),
        [{"b": batch_id, "id": exception_id, "why": why} for exception_id, why in reopened.items()],
    )


# ---------------------------------------------------------------- steward commands


def library_codes(registry: Registry, library: str | None = None, group: str | None = None) -> list[str] | None:
    """The libraries a command is about (None = all); unknown codes are a QualityError."""
    if library is not None and library not in registry.libraries:
        raise QualityError(f"thư viện {library!r} không có trong danh mục (registry {registry.path})")
    if group is not None and group not in registry.groups:
        raise QualityError(f"nhóm {group!r} không có trong danh mục (registry {registry.path})")
    codes: set[str] | None = None
    if group is not None:
        codes = set(registry.groups[group].member_codes())
    if library is not None:
        codes = {library} if codes is None else codes & {library}
    return None if codes is None else sorted(codes)


_PROBLEMS = """
SELECT rq.library_code, rq.library_name, rq.batch_id, rq.local_id, rq.record_index, rq.title, rq.record_status,
       rq.rule, rq.field, rq.value, rq.severity, rq.default_severity, rq.accepted, rq.exception_id,
       rq.message_vi, rq.fix_vi,
       coalesce(
         (SELECT string_agg(i.accession_number, '; ' ORDER BY i.item_seq)
            FROM core.record r JOIN core.item i USING (record_id)
           WHERE r.library_code = rq.library_code AND r.local_id = rq.local_id AND r.valid_to IS NULL),
         (SELECT string_agg(x ->> 'accession_number', '; ')
            FROM quality.quarantine q, jsonb_array_elements(q.record -> 'items') x
           WHERE q.batch_id = rq.batch_id AND q.record_index = rq.record_index)) AS accession_numbers
FROM marts.record_quality rq
WHERE (CAST(:libraries AS text[]) IS NULL OR rq.library_code = ANY(CAST(:libraries AS text[])))
  AND (:accepted OR NOT rq.accepted)
ORDER BY rq.library_code, rq.record_index, rq.rule, rq.field
"""


def problems(engine: sa.Engine, libraries: Sequence[str] | None = None, *, include_accepted: bool = False) -> list[dict]:
    """Failing checks of each library's newest batch (one dict per record and rule), for list and fix lists."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(_PROBLEMS), {"libraries": None if libraries is None else list(libraries),
                                                  "accepted": include_accepted}).mappings().all()
    return [dict(row) for row in rows]


def safe_cell(value):
    """A value a spreadsheet shows as text and never evaluates: text starting with = + - @ tab CR gets a '."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def fix_rows(rows: Iterable[Mapping]) -> list[tuple]:
    """One row per problem, in the fix list's column order (FIXLIST_HEADER)."""
    return [
        (r["local_id"], r["title"], r["accession_numbers"], FIELD_LABELS_VI.get(r["field"], r["field"]), r["value"],
         SEVERITY_VI.get(r["severity"], r["severity"]), r["message_vi"], r["fix_vi"], r["library_name"])
        for r in rows
    ]


def write_fixlist(sheets: Mapping[str, Sequence[tuple]], out: Path, *, note: str | None = None) -> Path:
    """An .xlsx with one sheet per library (name → rows); every text cell is written as inert text."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    book.remove(book.active)
    if not sheets:
        sheets = {"Danh sách cần sửa": []}
    for name, rows in sheets.items():
        title = _SHEET_BAD.sub("-", name)[:31] or "Sheet"
        sheet = book.create_sheet(title)
        sheet.append(list(FIXLIST_HEADER))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in rows:
            sheet.append([safe_cell(value) for value in row])
            for cell in sheet[sheet.max_row]:
                if isinstance(cell.value, str):
                    cell.data_type = "s"  # never a formula, whatever it starts with
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
        for column, width in zip("ABCDEFGHI", (18, 40, 22, 26, 22, 24, 50, 60, 30)):
            sheet.column_dimensions[column].width = width
        sheet.freeze_panes = "A2"
        if note:
            sheet.append([])
            sheet.append([safe_cell(note)])
    tmp = out.with_name(f".{out.name}.part")
    book.save(tmp)
    os.replace(tmp, out)
    return out


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


def accept(engine: sa.Engine, registry: Registry, record: str, rule: str, reason: str,
           by: str | None = None) -> dict:
    """Accept one failing rule of one record version as a justified exception (audited: who, when, why)."""
    library, sep, local_id = record.partition(":")
    if not sep or not library or not local_id:
        raise QualityError(f"--record {record!r}: viết THƯ_VIỆN:MÃ_BIỂU_GHI, ví dụ THPT-LUONGSON:12345")
    library_codes(registry, library)
    reason = (reason or "").strip()
    if not reason:
        raise QualityError("--reason: cần ghi lý do chấp nhận ngoại lệ")
    who = (by or "").strip() or current_user()
    with engine.begin() as conn:
        failure = conn.execute(
            sa.text("""SELECT f.batch_id, f.record_hash, f.severity, f.field, f.value
                       FROM quality.check_failure f JOIN (""" + NEWEST_CHECKED_BATCH + """) lb
                         ON lb.batch_id = f.batch_id
                       WHERE f.library_code = :l AND f.local_id = :id AND f.rule = :rule
                       ORDER BY f.failure_id LIMIT 1"""),
            {"l": library, "id": local_id, "rule": rule}).mappings().first()
        if failure is None:
            raise QualityError(f"biểu ghi {local_id!r} của thư viện {library} không vi phạm quy tắc {rule!r} "
                               f"trong lần nhận dữ liệu gần nhất: không có gì để chấp nhận")
        if failure["record_hash"] is None:
            raise QualityError(f"lỗi {rule!r} của biểu ghi {local_id!r} được ghi trước khi có chức năng chấp nhận "
                               f"ngoại lệ; hãy nhận lại dữ liệu của thư viện rồi thử lại")
        existing = conn.execute(
            sa.text("""SELECT exception_id, record_hash, accepted_by, accepted_at, reason FROM quality.exception
                       WHERE library_code = :l AND local_id = :id AND rule = :rule AND status = 'active'"""),
            {"l": library, "id": local_id, "rule": rule}).mappings().first()
        if existing is not None and existing["record_hash"] == failure["record_hash"]:
            return {"exception_id": existing["exception_id"], "library": library, "local_id": local_id,
                    "rule": rule, "already_accepted": True, "accepted_by": existing["accepted_by"],
                    "accepted_at": existing["accepted_at"].isoformat(), "reason": existing["reason"]}
        if existing is not None:
            reopen_exceptions(conn, failure["batch_id"], {existing["exception_id"]: "superseded by a new acceptance"})
        row = conn.execute(
            sa.text("""INSERT INTO quality.exception (library_code, local_id, rule, record_hash, reason, accepted_by)
                       VALUES (:l, :id, :rule, :hash, :reason, :by) RETURNING exception_id, accepted_at"""),
            {"l": library, "id": local_id, "rule": rule, "hash": failure["record_hash"], "reason": reason,
             "by": who}).one()
        conn.execute(
            sa.text("""UPDATE quality.check_failure SET accepted = true, exception_id = :e
                       WHERE batch_id = :b AND local_id = :id AND rule = :rule"""),
            {"e": row.exception_id, "b": failure["batch_id"], "id": local_id, "rule": rule})
    return {"exception_id": row.exception_id, "library": library, "local_id": local_id, "rule": rule,
            "severity": failure["severity"], "record_hash": failure["record_hash"], "already_accepted": False,
            "accepted_by": who, "accepted_at": row.accepted_at.isoformat(), "reason": reason,
            "takes_effect": "at the library's next ingest (an unchanged export is checked again)"}


def exceptions(engine: sa.Engine, libraries: Sequence[str] | None = None) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("""SELECT exception_id, library_code, local_id, rule, record_hash, reason, accepted_by,
                              accepted_at, status, reopened_at, reopened_by_batch, reopen_reason
                       FROM quality.exception
                       WHERE CAST(:libraries AS text[]) IS NULL OR library_code = ANY(CAST(:libraries AS text[]))
                       ORDER BY exception_id"""),
            {"libraries": None if libraries is None else list(libraries)}).mappings().all()
    return [dict(r) for r in rows]


def failing_batch_checks(engine: sa.Engine, libraries: Sequence[str] | None = None) -> list[dict]:
    """Batch-level checks that failed in each library's newest batch (a held export, low completeness)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("""SELECT c.library_code, c.batch_id, c.rule, c.field, c.observed, c.expected_min, c.severity,
                              c.message_vi
                       FROM quality.batch_check c JOIN (""" + NEWEST_CHECKED_BATCH + """) lb
                         ON lb.batch_id = c.batch_id
                       WHERE NOT c.success
                         AND (CAST(:libraries AS text[]) IS NULL OR c.library_code = ANY(CAST(:libraries AS text[])))
                       ORDER BY c.library_code, c.rule, c.field"""),
            {"libraries": None if libraries is None else list(libraries)}).mappings().all()
    return [dict(r) for r in rows]
