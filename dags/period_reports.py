"""
### Period reports

§VI of the guidance: libraries report to the Department of Education every semester (before 15 January) and
every school year (before 25 May). This DAG builds the period's report (XLSX, CSV, HTML with charts) from the
warehouse's history as of the period's end, and reminds whoever has not delivered an accepted export.

* Schedule (Vietnam time): 06:00 on 5 January and 15 May, the report day `report_lead_days` (10) before each
  deadline, builds the report; 07:00 every day runs the reminder check, which e-mails the lead library of each
  group and the education office 14, 7, 3 and 1 days before the deadline (registry `reporting`), once each.
* On demand: trigger with `period` (e.g. `2025-2026/NAM`) to build any period's report; a past period gives the
  same figures every time. `today` checks reminders as of another day; `out_dir` chooses the folder (default
  `var/reports/<period>`).
* `plan` decides (small JSON), `check_submissions_and_remind` and `build_report` do the work in `lienthong`.

The same runs without Airflow: `lienthong report --period P --out DIR`, `lienthong remind --period P`.
"""
from __future__ import annotations

import os

import pendulum
from airflow.sdk import MultipleCronTriggerTimetable, Param, dag, get_current_context, task

TIMEZONE = "Asia/Ho_Chi_Minh"
REPORT_CRONS = ("0 6 5 1 *", "0 6 15 5 *")  # 10 days before 15/01 and 25/5 (lienthong.report.REPORT_HOUR)
REMINDER_CRON = "0 7 * * *"


@dag(
    dag_id="period_reports",
    schedule=MultipleCronTriggerTimetable(*REPORT_CRONS, REMINDER_CRON, timezone=TIMEZONE),
    start_date=pendulum.datetime(2026, 9, 5, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "reports"],
    params={
        "period": Param("", type="string", description="e.g. 2026-2027/HK1; empty: the next one due"),
        "today": Param("", type="string", description="YYYY-MM-DD to check reminders as of; empty: the run's day"),
        "out_dir": Param("", type="string", description="folder for the files; empty: var/reports/<period>"),
    },
    default_args={
        "owner": "provincial-it",
        "retries": int(os.environ.get("LIENTHONG_TASK_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=5),
    },
)
def period_reports():
    @task
    def plan() -> dict:
        from lienthong.report import plan_run

        context = get_current_context()
        params, run = context["params"], context["dag_run"]
        logical = context.get("logical_date") or run.run_after
        return plan_run(params.get("period") or None, params.get("today") or None, logical,
                        manual=str(run.run_type).lower().endswith("manual"))

    @task
    def check_submissions_and_remind(decision: dict) -> dict:
        from lienthong.report import remind_for_run

        return remind_for_run(decision)

    @task.short_circuit
    def report_due(decision: dict) -> bool:
        return bool(decision["build_report"])

    @task
    def build_report(decision: dict) -> dict:
        from lienthong.report import build_for_run

        return build_for_run(decision, get_current_context()["params"].get("out_dir") or None)

    decision = plan()
    check_submissions_and_remind(decision)
    report_due(decision) >> build_report(decision)


period_reports()
