"""Period reports (§VI): figures per library, linking group, (former) district and province, read from the
warehouse's history as of the period's end, written as an XLSX workbook, CSV files and a self-contained HTML page.

Why as of the period's end: the Department compiles what stood on the reporting day. Every figure comes from
record versions valid at ``as_of`` (core.record valid_from/valid_to) and batches finished before it, so building a
past period again after new exports arrived gives the same numbers, and the report records a sha256 of them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from lienthong import periods, submissions, warehouse
from lienthong.periods import Period
from lienthong.registry import Registry, load_registry

log = logging.getLogger(__name__)

LEVELS = ("province", "district", "group", "library")
LEVEL_NAMES_VI = {"province": "Toàn tỉnh", "district": "Huyện (cũ)", "group": "Nhóm liên thông",
                  "library": "Thư viện"}
KINDS = (("sgk", "SGK", "Sách giáo khoa"), ("stk", "STK", "Sách tham khảo"), ("snv", "SNV", "Sách nghiệp vụ"),
         ("tn", "TN", "Sách thiếu nhi"), ("other", "KHAC", "Khác"))
TIERS = ((0.95, "A"), (0.80, "B"), (0.60, "C"), (0.0, "D"))

# (key, Vietnamese header, format): int, pct, num, text
BASE_COLUMNS = [
    ("titles", "Số đầu sách (biểu ghi)", "int"),
    ("copies", "Số bản sách", "int"),
    *[(f"copies_{key}", f"Bản {name.lower()} ({code})", "int") for key, code, name in KINDS],
    *[(f"titles_{key}", f"Đầu {name.lower()} ({code})", "int") for key, code, name in KINDS],
    ("new_titles", "Đầu sách bổ sung trong kỳ", "int"),
    ("new_copies", "Bản sách bổ sung trong kỳ", "int"),
    ("complete_titles", "Biểu ghi đủ 7 yếu tố bắt buộc", "int"),
    ("complete_share", "Tỷ lệ biểu ghi đầy đủ", "pct"),
    ("quality_tier", "Xếp hạng chất lượng", "text"),
    ("titles_change", "Thay đổi số đầu sách so với kỳ trước", "int"),
    ("copies_change", "Thay đổi số bản sách so với kỳ trước", "int"),
]
CATALOG_COLUMNS = [("catalog_records", "Biểu ghi đóng góp vào mục lục liên hợp", "int")]
CIRCULATION_COLUMNS = [
    ("loans", "Lượt mượn", "int"), ("active_readers", "Bạn đọc hoạt động", "int"),
    ("ill_requests", "Yêu cầu mượn liên thư viện", "int"), ("ill_filled", "Yêu cầu liên thư viện đã đáp ứng", "int"),
    ("ill_median_turnaround_days", "Thời gian đáp ứng liên thư viện (ngày, trung vị)", "num"),
    ("cards_issued", "Thẻ bạn đọc cấp mới", "int"), ("rotated_items", "Bản sách luân chuyển", "int"),
    ("loans_change", "Thay đổi lượt mượn so với kỳ trước", "int"),
]
SUBMISSION_COLUMNS = [("submission_vi", "Nộp dữ liệu kỳ này", "text")]
SUMMED = tuple(key for key, _, fmt in BASE_COLUMNS + CATALOG_COLUMNS + CIRCULATION_COLUMNS if fmt == "int") + (
    "warning_titles",)


class ReportError(ValueError):
    """A report that cannot be built (unknown level, period in an unreadable form)."""


@dataclass
class PeriodReport:
    period: Period
    as_of: datetime
    provisional: bool  # the period had not ended when the report was built: figures may still change
    generated_at: datetime
    columns: list[tuple[str, str, str]]
    levels: dict[str, list[dict]]  # level → rows (each: key, name, figures)
    submissions: list[submissions.Submission]
    sources: dict = field(default_factory=dict)  # which optional figures were available
    files: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict:
        return self.levels["province"][0]

    def figures_sha256(self) -> str:
        """sha256 of the figures alone (not the time of generation nor the submission list)."""
        canonical = json.dumps({"period": self.period.code, "as_of": self.as_of.isoformat(), "levels": self.levels},
                               ensure_ascii=False, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_dict(self, levels: tuple[str, ...] = LEVELS) -> dict:
        sub = submissions.summary(self.submissions)
        return {**self.period.to_dict(), "as_of": self.as_of.isoformat(), "provisional": self.provisional,
                "generated_at": self.generated_at.isoformat(), "figures_sha256": self.figures_sha256(),
                "sources": self.sources, "totals": self.totals,
                "levels": {level: self.levels[level] for level in levels},
                "submissions": {"on_time": sub["on_time"], "late": sub["late"], "missing": sub["missing"],
                                "counts": sub["counts"], "libraries": sub["libraries"]},
                "files": self.files}


# ---------------------------------------------------------------- figures

def _catalog_relation(conn: sa.Connection) -> str | None:
    """A union-catalogue table or view linking core records to it (columns library_code and record_id), if any."""
    rows = conn.execute(sa.text(
        """SELECT table_name FROM information_schema.columns
           WHERE table_schema = 'catalog' AND column_name IN ('library_code', 'record_id')
           GROUP BY table_name HAVING count(DISTINCT column_name) = 2 ORDER BY table_name""")).scalars().all()
    return f'catalog."{rows[0]}"' if rows else None


def _has_circulation(conn: sa.Connection) -> bool:
    return conn.execute(sa.text(
        "SELECT to_regprocedure('marts.circulation_summary(date, date)') IS NOT NULL")).scalar_one()


def library_figures(conn: sa.Connection, period: Period, as_of: datetime, since: datetime, *,
                    catalog: str | None, circulation: bool) -> dict[str, dict]:
    """Per library code: holdings at ``as_of``, new since ``since``, catalogue and circulation when present."""
    figures = {row["library_code"]: {k: (int(v) if isinstance(v, int) else v) for k, v in row.items()}
               for row in conn.execute(sa.text("SELECT * FROM marts.library_figures_as_of(:as_of, :since)"),
                                       {"as_of": as_of, "since": since}).mappings()}
    if catalog:
        for row in figures.values():
            row["catalog_records"] = 0
        for code, n in conn.execute(sa.text(
                f"""SELECT c.library_code, count(DISTINCT c.record_id) FROM {catalog} c
                    JOIN core.record r ON r.record_id = c.record_id
                    WHERE r.valid_from < :as_of AND (r.valid_to IS NULL OR r.valid_to >= :as_of)
                    GROUP BY c.library_code"""), {"as_of": as_of}):
            figures.setdefault(code, {})["catalog_records"] = int(n)
    if circulation:
        for row in conn.execute(sa.text("SELECT * FROM marts.circulation_summary(:start, :end)"),
                                {"start": period.start, "end": period.end}).mappings():
            target = figures.setdefault(row["library_code"], {})
            for key, _, fmt in CIRCULATION_COLUMNS:
                if key in row:
                    value = row[key]
                    target[key] = None if value is None else (float(value) if fmt == "num" else int(value))
    return figures


def sort_key(name: str | None) -> tuple[str, str]:
    """Vietnamese order, near enough: letters without their marks first (Đà Bắc among the D's), then as written."""
    import unicodedata

    text = (name or "").replace("Đ", "D").replace("đ", "d")
    bare = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return bare.casefold(), name or ""


def _tier(share: float | None) -> str | None:
    if share is None:
        return None
    return next(letter for threshold, letter in TIERS if share >= threshold)


def _finish(row: dict, previous: dict | None, circulation: bool) -> dict:
    titles = row.get("titles") or 0
    row["complete_share"] = round(row.get("complete_titles", 0) / titles, 4) if titles else None
    row["quality_tier"] = _tier(row["complete_share"])
    if previous is not None:
        row["titles_change"] = titles - (previous.get("titles") or 0)
        row["copies_change"] = (row.get("copies") or 0) - (previous.get("copies") or 0)
        if circulation:
            row["loans_change"] = ((row.get("loans") or 0) - (previous.get("loans") or 0)
                                   if row.get("loans") is not None else None)
    return row


def _aggregate(key: str, name: str, members: list[dict], circulation: bool) -> dict:
    row: dict = {"key": key, "name": name, "libraries": len(members)}
    for column in SUMMED:
        values = [m[column] for m in members if m.get(column) is not None]
        if values or column in ("titles", "copies", "complete_titles"):
            row[column] = sum(values)
    row["baseline_libraries"] = sum(1 for m in members if m.get("new_titles") is None)
    turnarounds = [m["ill_median_turnaround_days"] for m in members if m.get("ill_median_turnaround_days") is not None]
    if circulation:
        row["ill_median_turnaround_days"] = round(statistics.median(turnarounds), 2) if turnarounds else None
    titles = row.get("titles") or 0
    row["complete_share"] = round(row["complete_titles"] / titles, 4) if titles else None
    row["quality_tier"] = _tier(row["complete_share"])
    return row


def build_report(period: Period | str, *, engine: sa.Engine | None = None, registry: Registry | None = None,
                 as_of: datetime | None = None, checked_at: datetime | None = None) -> PeriodReport:
    """Compute a period's report from the warehouse's history as of the period's end (or ``as_of``)."""
    registry = registry or load_registry()
    cal = registry.reporting
    period = periods.parse(period, cal) if isinstance(period, str) else period
    engine = engine or warehouse.engine()
    as_of = as_of or period.as_of
    generated_at = datetime.now(periods.TIMEZONE)
    checked_at = checked_at or generated_at
    previous = periods.previous(period, cal)
    with engine.connect() as conn:
        catalog = _catalog_relation(conn)
        circulation = _has_circulation(conn)
        current = library_figures(conn, period, as_of, period.starts_at, catalog=catalog, circulation=circulation)
        before = library_figures(conn, previous, min(previous.as_of, as_of), previous.starts_at, catalog=catalog,
                                 circulation=circulation)
    provisional = as_of > generated_at
    frozen = _frozen(engine, period, as_of) if not provisional else None
    if catalog and frozen is not None and "catalog_records" in frozen:
        for code, figures in current.items():
            figures["catalog_records"] = frozen["catalog_records"].get(code, 0)
    columns = list(BASE_COLUMNS) + (CATALOG_COLUMNS if catalog else []) + (
        CIRCULATION_COLUMNS if circulation else [])
    subs = submissions.track(engine, period, checked_at=checked_at, registry=registry)
    by_code = {s.library_code: s for s in subs}

    libraries = registry.active_libraries(period.end)
    library_rows = []
    for lib in libraries:
        figures = dict(current.get(lib.code) or {})
        if figures.get("titles_at_start", 0) == 0:  # no data before the period: its first export is no acquisition
            figures["new_titles"] = figures["new_copies"] = None
        figures.pop("library_code", None)
        figures.pop("titles_at_start", None)
        row = {"key": lib.code, "name": lib.name, "library_type": lib.type, "district": lib.admin_unit,
               "groups": [g.code for g in registry.groups_of(lib.code, period.end)], **figures}
        sub = by_code.get(lib.code)
        row["submission_vi"] = submissions.STATUS_VI[sub.status] if sub else None
        library_rows.append(_finish(row, before.get(lib.code), circulation))
    library_rows.sort(key=lambda r: (sort_key(r["district"]), r["key"]))

    district_rows = []
    for district in sorted({r["district"] for r in library_rows}, key=sort_key):
        members = [r for r in library_rows if r["district"] == district]
        district_rows.append(_aggregate(district, district, members, circulation))
    group_rows = []
    for group in registry.active_groups(period.end):
        codes = set(group.member_codes(period.end))
        members = [r for r in library_rows if r["key"] in codes]
        row = _aggregate(group.code, group.name, members, circulation)
        row["lead_library"] = group.lead_library
        group_rows.append(row)
    province_units = [u for u in registry.administrative_units.values()
                      if u.level == "province" and any(d.parent == u.code for d in registry.administrative_units.values())]
    province_name = province_units[0].name if province_units else "Toàn tỉnh"
    province = _aggregate("PROVINCE", province_name, library_rows, circulation)
    levels = {"province": [province], "district": district_rows, "group": group_rows, "library": library_rows}
    sources = {"union_catalogue": catalog, "circulation": "marts.circulation_summary" if circulation else None,
               "previous_period": previous.code, "previous_as_of": min(previous.as_of, as_of).isoformat()}
    sources["catalog_frozen_from_run"] = frozen.get("run_id") if frozen else None
    return PeriodReport(period, as_of, provisional, generated_at, columns, levels, subs, sources)


def _frozen(engine: sa.Engine, period: Period, as_of: datetime) -> dict | None:
    """Figures kept by the first run of this closed period (with the run id), or None if it is the first."""
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            """SELECT run_id, frozen FROM reporting.report_run
               WHERE period = :p AND as_of = :a AND NOT provisional ORDER BY run_id LIMIT 1"""),
            {"p": period.code, "a": as_of}).first()
    return {**row.frozen, "run_id": row.run_id} if row else None


def record_run(engine: sa.Engine, report: PeriodReport, out_dir: Path | None) -> int:
    with engine.begin() as conn:
        return conn.execute(sa.text(
            """INSERT INTO reporting.report_run (period, as_of, provisional, out_dir, figures_sha256, totals, frozen)
               VALUES (:p, :a, :prov, :out, :sha, CAST(:totals AS jsonb), CAST(:frozen AS jsonb))
               RETURNING run_id"""),
            {"p": report.period.code, "a": report.as_of, "prov": report.provisional,
             "out": str(out_dir) if out_dir else None, "sha": report.figures_sha256(),
             "totals": json.dumps(report.totals, ensure_ascii=False, default=str),
             "frozen": json.dumps(_to_freeze(report), ensure_ascii=False)}).scalar_one()


def _to_freeze(report: PeriodReport) -> dict:
    if not report.sources.get("union_catalogue"):
        return {}
    return {"catalog_records": {row["key"]: row.get("catalog_records", 0) for row in report.levels["library"]}}


def write_report(report: PeriodReport, out_dir: str | Path, levels: tuple[str, ...] = LEVELS) -> list[str]:
    """Write the XLSX workbook, one CSV per level (+ submissions), the HTML page and the JSON figures."""
    from lienthong import report_output

    for level in levels:
        if level not in LEVELS:
            raise ReportError(f"unknown level {level!r}: one of {', '.join(LEVELS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bao-cao-" + report.period.code.replace("/", "-")
    files = [report_output.write_xlsx(report, out / f"{stem}.xlsx", levels)]
    files += report_output.write_csv(report, out, stem, levels)
    files.append(report_output.write_html(report, out / f"{stem}.html", levels))
    json_path = out / f"{stem}.json"
    report.files = [str(p) for p in files] + [str(json_path)]
    json_path.write_text(json.dumps(report.to_dict(levels), ensure_ascii=False, indent=2, default=str) + "\n",
                         encoding="utf-8")
    return report.files


def run_report(period: str, out_dir: str | Path, *, levels: tuple[str, ...] = LEVELS, as_of: datetime | None = None,
               engine: sa.Engine | None = None, registry: Registry | None = None) -> PeriodReport:
    """Build, write and record one period's report (what the CLI and the DAG call)."""
    engine = engine or warehouse.engine()
    report = build_report(period, engine=engine, registry=registry, as_of=as_of)
    write_report(report, out_dir, levels)
    record_run(engine, report, Path(out_dir))
    log.info("report %s written to %s (figures sha256 %s)", report.period.code, out_dir, report.figures_sha256())
    return report


def current_period_report(out_dir: str | Path) -> dict:
    """The current period's report (the next one due) into ``out_dir``; what `make demo` prints the path of."""
    period = periods.current()
    report = run_report(period.code, out_dir)
    html_file = next(f for f in report.files if f.endswith(".html"))
    return {"period": period.code, "name_vi": period.name_vi, "provisional": report.provisional,
            "out_dir": str(out_dir), "html": html_file, "files": report.files,
            "titles": report.totals.get("titles"), "copies": report.totals.get("copies"),
            "submissions": submissions.summary(report.submissions)["counts"]}


# ---------------------------------------------------------------- what the period_reports DAG calls

REPORT_DIR_ENV = "LIENTHONG_REPORT_DIR"
REPORT_HOUR = 6  # the report crons of the DAG fire at 06:00 local time; the daily reminder check at 07:00


def report_dir(period_code: str) -> Path:
    import os

    from lienthong import config

    root = Path(os.environ.get(REPORT_DIR_ENV) or config.var_dir() / "reports")
    return root / period_code.replace("/", "-")


def plan_run(period: str | None, today: str | None, logical_date: datetime | None, manual: bool) -> dict:
    """Decide what one DAG run does: the reminder check always; the report when asked or on the report day."""
    cal = load_registry().reporting
    moment = (logical_date or datetime.now(periods.TIMEZONE)).astimezone(periods.TIMEZONE)
    day = datetime.fromisoformat(today).date() if today else moment.date()
    chosen = periods.parse(period, cal) if period else periods.current(day, cal)
    scheduled_report = moment.hour == REPORT_HOUR and day == periods.report_day(chosen, cal)
    return {"period": chosen.code, "today": day.isoformat(), "days_to_due": periods.days_to_due(chosen, day),
            "build_report": bool(period) or manual or scheduled_report}


def remind_for_run(plan: dict) -> dict:
    from lienthong import submissions as subs

    period = periods.parse(plan["period"])
    result = subs.send_reminders(warehouse.engine(), period, datetime.fromisoformat(plan["today"]).date())
    return {"period": result["period"], "days_to_due": result["days_to_due"], "sent": len(result["sent"])}


def build_for_run(plan: dict, out_dir: str | None = None) -> dict:
    out = Path(out_dir) if out_dir else report_dir(plan["period"])
    built = run_report(plan["period"], out)
    counts = submissions.summary(built.submissions)["counts"]
    return {"period": built.period.code, "out_dir": str(out), "provisional": built.provisional,
            "figures_sha256": built.figures_sha256(), "titles": built.totals.get("titles"),
            "copies": built.totals.get("copies"), **{f"submissions_{k}": v for k, v in counts.items()}}
