"""Reporting periods of §VI: semester I (``2026-2027/HK1``, due 15/01) and school year (``2026-2027/NAM``, due 25/5).

Windows are computed here, not from Airflow: a cron schedule's data interval in Airflow 3 has start = end, and a
school year is no cron interval anyway. Days are local days in Vietnam (UTC+7); a period's figures are the
warehouse as of the first instant after its end day (``as_of``), so the same period always reads the same history.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from lienthong.registry import ReportingCalendar, SchoolYear, load_registry

TIMEZONE = ZoneInfo("Asia/Ho_Chi_Minh")
KINDS = ("HK1", "NAM")
KIND_NAMES_VI = {"HK1": "Sơ kết học kỳ I", "NAM": "Tổng kết năm học"}
PERIOD_RE = re.compile(r"^([0-9]{4})-([0-9]{4})/(HK1|NAM)$")


class PeriodError(ValueError):
    """A period name that is not ``YYYY-YYYY/HK1`` or ``YYYY-YYYY/NAM``."""


@dataclass(frozen=True)
class Period:
    """One reporting period: its figures cover [start, end] (local days), its report is due on ``due``."""

    school_year: str
    kind: str  # HK1 | NAM
    start: date
    end: date
    due: date

    @property
    def code(self) -> str:
        return f"{self.school_year}/{self.kind}"

    @property
    def name_vi(self) -> str:
        return f"{KIND_NAMES_VI[self.kind]} {self.school_year}" if self.kind == "NAM" else (
            f"{KIND_NAMES_VI[self.kind]} năm học {self.school_year}")

    @property
    def starts_at(self) -> datetime:
        return local_midnight(self.start)

    @property
    def as_of(self) -> datetime:
        """The instant the period's figures are read at: the start of the day after ``end`` (exclusive)."""
        return local_midnight(self.end + timedelta(days=1))

    @property
    def due_at(self) -> datetime:
        """Deliveries up to the end of the deadline day are on time."""
        return local_midnight(self.due + timedelta(days=1))

    def to_dict(self) -> dict:
        return {"period": self.code, "name_vi": self.name_vi, "school_year": self.school_year, "kind": self.kind,
                "start": self.start.isoformat(), "end": self.end.isoformat(), "due": self.due.isoformat(),
                "as_of": self.as_of.isoformat()}


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=TIMEZONE)


def local_day(moment: datetime) -> date:
    return moment.astimezone(TIMEZONE).date()


def calendar() -> ReportingCalendar:
    return load_registry().reporting


def _period(year: SchoolYear, kind: str) -> Period:
    if kind == "HK1":
        return Period(year.name, kind, year.start, year.semester_1_end, year.semester_1_due)
    return Period(year.name, kind, year.start, year.end, year.due)


def parse(code: str, cal: ReportingCalendar | None = None) -> Period:
    """``"2026-2027/HK1"`` → the period, from the registry's calendar (defaults for years it does not list)."""
    match = PERIOD_RE.match(code.strip()) if isinstance(code, str) else None
    if not match or int(match.group(2)) != int(match.group(1)) + 1:
        raise PeriodError(f"{code!r} is not a reporting period: write <school year>/HK1 or <school year>/NAM, "
                          f"e.g. 2026-2027/HK1")
    cal = cal or calendar()
    return _period(cal.school_year(int(match.group(1))), match.group(3))


def previous(period: Period, cal: ReportingCalendar | None = None) -> Period:
    """The period reported before: HK1 follows last year's NAM, NAM follows the same year's HK1."""
    cal = cal or calendar()
    first = int(period.school_year[:4])
    if period.kind == "NAM":
        return _period(cal.school_year(first), "HK1")
    return _period(cal.school_year(first - 1), "NAM")


def following(period: Period, cal: ReportingCalendar | None = None) -> Period:
    cal = cal or calendar()
    first = int(period.school_year[:4])
    if period.kind == "HK1":
        return _period(cal.school_year(first), "NAM")
    return _period(cal.school_year(first + 1), "HK1")


def periods_of_year(first_year: int, cal: ReportingCalendar | None = None) -> list[Period]:
    cal = cal or calendar()
    year = cal.school_year(first_year)
    return [_period(year, "HK1"), _period(year, "NAM")]


def current(on: date | None = None, cal: ReportingCalendar | None = None) -> Period:
    """The period whose report is next due on ``on`` (today if None): the first with due ≥ that day."""
    cal = cal or calendar()
    day = on or local_day(datetime.now(TIMEZONE))
    for first in (day.year - 2, day.year - 1, day.year):
        for period in periods_of_year(first, cal):
            if period.due >= day:
                return period
    raise PeriodError(f"no reporting period is due on or after {day}")  # unreachable with a sane calendar


def submission_opens(period: Period, cal: ReportingCalendar | None = None) -> datetime:
    """An export delivers for a period when it is accepted after the previous period's deadline day."""
    return previous(period, cal).due_at


def days_to_due(period: Period, on: date) -> int:
    return (period.due - on).days


def report_day(period: Period, cal: ReportingCalendar | None = None) -> date:
    """The day the scheduled report is built: report_lead_days before the deadline."""
    cal = cal or calendar()
    return period.due - timedelta(days=cal.report_lead_days)
