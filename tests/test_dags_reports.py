"""The period_reports DAG: imports cleanly, is wired and scheduled ahead of the deadlines, and really runs."""
from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from airflow.dag_processing.dagbag import DagBag

from lienthong import periods, report
from lienthong.registry import load_registry
from tests.conftest import ROOT
from tests.marc_builders import write_marc
from tests.test_report_history import _books, _ingest_at

TZ = periods.TIMEZONE


def _dag():
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["period_reports"]


def test_structure_and_schedule():
    dag = _dag()
    assert dag.catchup is False and {"lienthong", "reports"} <= set(dag.tags)
    assert dag.doc_md and "Period reports" in dag.doc_md
    assert dag.default_args["retries"] == 0
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"plan", "check_submissions_and_remind", "report_due", "build_report"}
    assert tasks["plan"].downstream_task_ids == {"check_submissions_and_remind", "report_due", "build_report"}
    assert tasks["report_due"].downstream_task_ids == {"build_report"}
    assert set(dag.params.keys()) == {"period", "today", "out_dir"}
    crons = [t.expression for t in dag.timetable.timetables]
    assert {str(t.timezone) for t in dag.timetable.timetables} == {"Asia/Ho_Chi_Minh"}
    assert "0 7 * * *" in crons  # the daily reminder check
    cal = load_registry().reporting
    for kind in ("HK1", "NAM"):  # the report crons fire on the report day ahead of each deadline
        day = periods.report_day(periods.parse(f"2026-2027/{kind}", cal), cal)
        assert f"0 {report.REPORT_HOUR} {day.day} {day.month} *" in crons


def test_plan_builds_on_report_day_or_on_demand():
    at = datetime(2027, 1, 5, report.REPORT_HOUR, tzinfo=TZ)
    assert report.plan_run(None, None, at, manual=False) == {
        "period": "2026-2027/HK1", "today": "2027-01-05", "days_to_due": 10, "build_report": True}
    assert report.plan_run(None, None, datetime(2027, 1, 5, 7, tzinfo=TZ), manual=False)["build_report"] is False
    assert report.plan_run(None, None, datetime(2027, 3, 1, 7, tzinfo=TZ), manual=False)["period"] == "2026-2027/NAM"
    on_demand = report.plan_run("2024-2025/HK1", "2025-01-08", datetime(2027, 3, 1, 7, tzinfo=TZ), manual=False)
    assert on_demand == {"period": "2024-2025/HK1", "today": "2025-01-08", "days_to_due": 7, "build_report": True}


def test_dag_builds_a_past_period_on_demand_and_reminds(clean_warehouse, airflow_db, smtp_server, tmp_path):  # noqa: F811
    registry = load_registry()
    code = registry.active_libraries(date(2026, 5, 25))[0].code
    _ingest_at(clean_warehouse, registry, code, write_marc(tmp_path / "a.mrc", _books(range(1, 4))),
               datetime(2026, 3, 2, tzinfo=TZ))
    out = tmp_path / "out"
    run = _dag().test(run_conf={"period": "2025-2026/NAM", "today": "2026-05-18", "out_dir": str(out)})
    assert run.state == "success"
    assert sorted(p.suffix for p in out.iterdir()) == [".csv"] * 5 + [".html", ".json", ".xlsx"]
    with clean_warehouse.connect() as conn:
        runs = conn.execute(sa.text("SELECT period, provisional, titles FROM marts.period_report_runs")).all()
        reminders = conn.execute(sa.text("SELECT count(*), min(days_before) FROM marts.period_reminders")).one()
    assert [tuple(r) for r in runs] == [("2025-2026/NAM", False, 3)]
    assert reminders == (len(smtp_server.messages), 7) and reminders[0] > 1
    recipients = {to for _, tos, _ in smtp_server.messages for to in tos}
    assert registry.reporting.education_office_email in recipients
