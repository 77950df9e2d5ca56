"""Reporting calendar: the registry's school years, the two periods with the guidance's deadlines, their windows."""
from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from lienthong import periods
from lienthong.registry import PACKAGED_REGISTRY, RegistryError, load_registry


@pytest.fixture(scope="module")
def cal():
    return load_registry(PACKAGED_REGISTRY).reporting


def test_periods_follow_the_guidance_deadlines(cal):
    hk1 = periods.parse("2026-2027/HK1", cal)
    nam = periods.parse("2026-2027/NAM", cal)
    assert (hk1.code, nam.code) == ("2026-2027/HK1", "2026-2027/NAM")
    assert hk1.due == date(2027, 1, 15) and nam.due == date(2027, 5, 25)  # §VI: before 15/01 and 25/5
    assert hk1.start == nam.start == date(2026, 9, 5)
    assert hk1.end == hk1.due and nam.end == nam.due
    assert hk1.name_vi == "Sơ kết học kỳ I năm học 2026-2027"
    assert nam.name_vi == "Tổng kết năm học 2026-2027"
    # the figures are read at the first instant after the end day, in Vietnam (UTC+7)
    assert hk1.as_of == datetime(2027, 1, 16, tzinfo=periods.TIMEZONE)
    assert hk1.as_of.utcoffset() == timedelta(hours=7)
    assert hk1.due_at == datetime(2027, 1, 16, tzinfo=periods.TIMEZONE)


def test_past_and_future_years_exist(cal):
    listed = periods.parse("2023-2024/HK1", cal)
    assert listed.due == date(2024, 1, 15)
    past = periods.parse("2019-2020/NAM", cal)  # not listed: built from the calendar's month-days
    future = periods.parse("2035-2036/HK1", cal)
    assert (past.start, past.due) == (date(2019, 9, 5), date(2020, 5, 25))
    assert (future.start, future.due) == (date(2035, 9, 5), date(2036, 1, 15))
    assert set(cal.school_years) >= {"2023-2024", "2024-2025", "2025-2026", "2026-2027", "2027-2028"}


def test_previous_and_following_alternate(cal):
    hk1 = periods.parse("2026-2027/HK1", cal)
    assert periods.previous(hk1, cal).code == "2025-2026/NAM"
    assert periods.following(hk1, cal).code == "2026-2027/NAM"
    assert periods.previous(periods.parse("2026-2027/NAM", cal), cal).code == "2026-2027/HK1"
    assert periods.following(periods.parse("2026-2027/NAM", cal), cal).code == "2027-2028/HK1"
    # an export delivers for HK1 when accepted after the previous (school-year) deadline day
    assert periods.submission_opens(hk1, cal) == datetime(2026, 5, 26, tzinfo=periods.TIMEZONE)


@pytest.mark.parametrize("day, expected", [
    (date(2026, 11, 26), "2026-2027/HK1"),
    (date(2027, 1, 15), "2026-2027/HK1"),  # the deadline day still belongs to HK1
    (date(2027, 1, 16), "2026-2027/NAM"),
    (date(2027, 5, 25), "2026-2027/NAM"),
    (date(2027, 5, 26), "2027-2028/HK1"),
    (date(2026, 8, 1), "2026-2027/HK1"),
])
def test_current_period_is_the_next_due(cal, day, expected):
    assert periods.current(day, cal).code == expected


def test_report_day_is_ahead_of_the_deadline(cal):
    assert periods.report_day(periods.parse("2026-2027/HK1", cal), cal) == date(2027, 1, 5)
    assert periods.report_day(periods.parse("2026-2027/NAM", cal), cal) == date(2027, 5, 15)
    assert periods.days_to_due(periods.parse("2026-2027/HK1", cal), date(2027, 1, 8)) == 7


@pytest.mark.parametrize("bad", ["2026-2027/HK2", "2026-2028/HK1", "2026/HK1", "", "2026-2027"])
def test_bad_period_names_are_refused(cal, bad):
    with pytest.raises(periods.PeriodError, match="2026-2027/HK1"):
        periods.parse(bad, cal)


def _with_reporting(tmp_path, block: str):
    text = PACKAGED_REGISTRY.read_text(encoding="utf-8")
    head = text[: text.index("\nreporting:")]
    path = tmp_path / "registry.yaml"
    path.write_text(head + "\n" + block, encoding="utf-8")
    return path


def test_listed_year_overrides_the_defaults(tmp_path):
    path = _with_reporting(tmp_path, """reporting:
  calendar: {school_year_start: "09-01", semester_1_due: "01-10", school_year_due: "05-20"}
  school_years:
    - {name: 2026-2027, start: 2026-09-07, semester_1_end: 2027-01-09, semester_1_due: 2027-01-14}
""")
    cal = load_registry(path).reporting
    hk1 = periods.parse("2026-2027/HK1", cal)
    assert (hk1.start, hk1.end, hk1.due) == (date(2026, 9, 7), date(2027, 1, 9), date(2027, 1, 14))
    nam = periods.parse("2026-2027/NAM", cal)
    assert (nam.end, nam.due) == (date(2027, 5, 20), date(2027, 5, 20))
    other = periods.parse("2028-2029/HK1", cal)
    assert (other.start, other.due) == (date(2028, 9, 1), date(2029, 1, 10))


def test_reporting_mistakes_are_reported_with_file_line_and_key(tmp_path):
    path = _with_reporting(tmp_path, """reporting:
  smtp_conn_id: "bad id!"
  sender: not-an-address
  education_office: {name: Văn phòng Sở}
  library_email: "thuvien@example.vn"
  contacts: {NO-SUCH-LIB: a@b.vn}
  reminder_days: [7, -1]
  calendar: {semester_1_due: "13-01", school_year_due: "02-29"}
  school_years:
    - {name: 2026-2027, start: 2026-09-05, semester_1_due: 2026-08-01}
    - {name: 2027-2029, start: 2027-09-05}
    - {name: 2025-2026, start: 2026-09-05}
    - {name: 2026-2027, start: 2026-09-05}
""")
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    problems = caught.value.problems
    line = len(PACKAGED_REGISTRY.read_text(encoding="utf-8")[
        : PACKAGED_REGISTRY.read_text(encoding="utf-8").index("\nreporting:")].splitlines()) + 1
    expected = {
        "reporting.smtp_conn_id": line + 1, "reporting.sender": line + 2,
        "reporting.education_office.email": line + 3, "reporting.library_email": line + 4,
        "reporting.contacts['NO-SUCH-LIB']": line + 5, "reporting.reminder_days": line + 6,
        "reporting.calendar.semester_1_due": line + 7, "reporting.calendar.school_year_due": line + 7,
        "reporting.school_years[0].semester_1_due": line + 9, "reporting.school_years[1].name": line + 10,
        "reporting.school_years[2].start": line + 11, "reporting.school_years[3].name": line + 12,
    }
    for key, number in expected.items():
        assert any(p.startswith(f"registry.yaml:{number}: {key}:") for p in problems), (key, problems)
    assert len(problems) == len(expected), problems
