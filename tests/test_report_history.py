"""Reproducible periods, submissions and reminders on a warehouse whose batch times are set in SQL.

Library A delivers before the school year 2025-2026 and again in March 2026, library B only in June 2026 (after the
25/5 deadline), library C never. Then both deliver changed exports today: the closed period's figures must not move.
Reminders go through a real SMTP server on loopback (aiosmtpd) via the Airflow SMTP connection.
"""
from __future__ import annotations

import json
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from lienthong import periods, report, submissions
from lienthong.ingest import ingest_library
from lienthong.registry import load_registry
from tests.marc_builders import book, write_marc

TZ = periods.TIMEZONE


def _books(ids, *, changed: str | None = None):
    return [book(f"R{n:03d}", title=f"Sách số {n}" + (" (tái bản)" if str(n) == changed else ""),
                 items=((f"{'SGK' if n % 2 else 'STK'}.{n:06d}", "510 T406"),)) for n in ids]


def _ingest_at(engine, registry, code: str, path, moment: datetime | None) -> int:
    result = ingest_library(code, file=path, registry=registry, engine=engine)
    assert result.status == "applied", result.to_dict()
    if moment is not None:  # the batch happened then: move the batch and the versions it opened and closed
        with engine.begin() as conn:
            params = {"t": moment, "b": result.batch_id}
            conn.execute(sa.text("UPDATE core.batch SET started_at = :t, finished_at = :t WHERE batch_id = :b"), params)
            conn.execute(sa.text("UPDATE core.record SET valid_from = :t WHERE loaded_by_batch = :b"), params)
            conn.execute(sa.text("UPDATE core.record SET valid_to = :t WHERE closed_by_batch = :b"), params)
    return result.batch_id


@pytest.fixture
def history(clean_warehouse, tmp_path):
    registry = load_registry()
    a, b, c = [lib.code for lib in registry.active_libraries(date(2026, 5, 25))
               if lib.type == "THPT"][:3]
    engine = clean_warehouse
    _ingest_at(engine, registry, a, write_marc(tmp_path / "a1.mrc", _books(range(1, 4))),
               datetime(2025, 6, 1, 9, tzinfo=TZ))
    _ingest_at(engine, registry, a, write_marc(tmp_path / "a2.mrc", _books(range(1, 6), changed="2")),
               datetime(2026, 3, 2, 10, tzinfo=TZ))
    _ingest_at(engine, registry, b, write_marc(tmp_path / "b1.mrc", _books(range(1, 3))),
               datetime(2026, 6, 10, 8, tzinfo=TZ))
    return {"engine": engine, "registry": registry, "a": a, "b": b, "c": c, "tmp": tmp_path}


def _rows(built) -> dict:
    return {row["key"]: row for row in built.levels["library"]}


def test_closed_period_gives_the_same_figures_after_new_exports(history, tmp_path):
    engine, registry, a, b = history["engine"], history["registry"], history["a"], history["b"]
    first = report.build_report("2025-2026/NAM", engine=engine, registry=registry)
    assert first.provisional is False and first.as_of == datetime(2026, 5, 26, tzinfo=TZ)
    rows = _rows(first)
    assert rows[a]["titles"] == 5 and rows[a]["copies"] == 5
    assert rows[a]["titles_sgk"] == 3 and rows[a]["copies_stk"] == 2  # kind from the ĐKCB prefix
    assert rows[a]["new_titles"] == 2 and rows[a]["new_copies"] == 2  # R004, R005 since 2025-09-05
    assert rows[a]["titles_change"] == 2  # against 2025-2026/HK1 (3 titles on 2026-01-16)
    assert rows[b]["titles"] == 0  # delivered after the period's end
    report.record_run(engine, first, tmp_path)

    # new exports arrive today: A drops R001 and adds three, B changes
    _ingest_at(engine, registry, a, write_marc(history["tmp"] / "a3.mrc", _books(range(2, 9))), None)
    _ingest_at(engine, registry, b, write_marc(history["tmp"] / "b2.mrc", _books(range(1, 5))), None)

    again = report.build_report("2025-2026/NAM", engine=engine, registry=registry)
    for level in first.levels:
        for before, after in zip(first.levels[level], again.levels[level]):
            assert before == after, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                                     if before.get(k) != after.get(k)}
    assert again.levels == first.levels
    assert again.figures_sha256() == first.figures_sha256()
    report.record_run(engine, again, tmp_path)
    with engine.connect() as conn:
        shas = conn.execute(sa.text("SELECT DISTINCT figures_sha256 FROM marts.period_report_runs "
                                    "WHERE period = '2025-2026/NAM'")).scalars().all()
    assert shas == [first.figures_sha256()]

    now = report.build_report("2026-2027/HK1", engine=engine, registry=registry)
    current = _rows(now)
    assert current[a]["titles"] == 7 and current[b]["titles"] == 4
    assert current[a]["titles_change"] == 2  # 7 now against 5 at the end of 2025-2026/NAM


def test_late_and_missing_libraries_are_listed(history):
    engine, registry, a, b, c = (history[k] for k in ("engine", "registry", "a", "b", "c"))
    period = periods.parse("2025-2026/NAM", registry.reporting)
    status = {s.library_code: s.status for s in submissions.track(engine, period, registry=registry)}
    assert status[a] == "on_time" and status[b] == "late" and status[c] == "missing"
    assert {code for code, s in status.items() if s != "missing"} == {a, b}
    # seen on the deadline day itself, B had not delivered yet
    before = submissions.track(engine, period, registry=registry, checked_at=datetime(2026, 5, 25, 12, tzinfo=TZ))
    assert {s.library_code: s.status for s in before}[b] == "missing"
    hk1 = periods.parse("2025-2026/HK1", registry.reporting)
    status = {s.library_code: s.status for s in submissions.track(engine, hk1, registry=registry)}
    assert status[a] == "on_time"  # June 2025 export: after the 2024-2025 deadline, before 15/01/2026
    built = report.build_report(period, engine=engine, registry=registry)
    assert _rows(built)[b]["submission_vi"] == "Muộn" and _rows(built)[c]["submission_vi"] == "Chưa nộp"


def test_cli_submissions_json(history, capsys):
    from lienthong.cli import main

    assert main(["submissions", "--period", "2025-2026/NAM", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["period"] == "2025-2026/NAM" and data["due"] == "2026-05-25"
    assert history["b"] in data["late"] and history["c"] in data["missing"]
    assert data["counts"]["on_time"] == 1 and data["counts"]["late"] == 1
    # on 18 May, 7 days before the deadline, B and C (and everyone else but A) would be reminded
    assert main(["remind", "--period", "2025-2026/NAM", "--today", "2026-05-18", "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["days_to_due"] == 7 and planned["planned"]
    office = [p for p in planned["planned"] if p["role"] == "education_office"]
    assert len(office) == 1 and history["b"] in office[0]["libraries"] and history["a"] not in office[0]["libraries"]


# ---------------------------------------------------------------- reminders through a real SMTP server

def test_reminders_reach_lead_libraries_and_the_office_once(clean_warehouse, smtp_server, tmp_path):
    engine, registry = clean_warehouse, load_registry()
    period = periods.parse("2026-2027/HK1", registry.reporting)
    group = next(g for g in registry.active_groups(period.end) if len(g.member_codes(period.end)) >= 3)
    delivered = group.member_codes(period.end)[0]
    _ingest_at(engine, registry, delivered, write_marc(tmp_path / "x.mrc", _books(range(1, 3))),
               datetime(2026, 10, 1, tzinfo=TZ))

    assert submissions.send_reminders(engine, period, date(2027, 1, 9), registry=registry)["sent"] == []  # 6 days
    result = submissions.send_reminders(engine, period, date(2027, 1, 8), registry=registry)  # 7 days: a reminder day
    cal = registry.reporting
    missing = {s.library_code for s in submissions.track(engine, period, registry=registry) if s.status == "missing"}
    groups_with_missing = [g for g in registry.active_groups(period.end) if set(g.member_codes(period.end)) & missing]
    assert len(result["sent"]) == len(groups_with_missing) + 1 == len(smtp_server.messages)

    by_recipient = {}
    for sender, recipients, message in smtp_server.messages:
        assert sender == cal.sender
        by_recipient.setdefault(recipients[0], []).append(message)
    office = by_recipient[cal.education_office_email][0]
    body = office.get_body(("html",)).get_content()
    assert "Nhắc nộp dữ liệu báo cáo Sơ kết học kỳ I năm học 2026-2027" in office["subject"]
    assert "hạn 15/01/2027" in office["subject"] and "Còn 7 ngày" in body
    assert all(code in body for code in missing) and delivered not in body

    lead_mail = by_recipient[cal.email_of(group.lead_library)]
    own = next(m for m in lead_mail if any(c in m.get_body(("html",)).get_content()
                                           for c in set(group.member_codes(period.end)) & missing))
    text = own.get_body(("html",)).get_content()
    assert f"thư viện chủ trì {group.name}" in text
    assert delivered not in text

    again = submissions.send_reminders(engine, period, date(2027, 1, 8), registry=registry)
    assert again["sent"] == [] and len(smtp_server.messages) == len(result["sent"])
    with engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT count(*) FROM marts.period_reminders WHERE period = :p"),
                              {"p": period.code}).scalar_one()
    assert logged == len(result["sent"])
