"""
### Review record quality

Runs whenever `ingest_library_exports` updates the warehouse (it is scheduled on the `lienthong_core_record`
Asset). Validation itself happens inside the ingest (Great Expectations suites in `expectations/`, row-level
results in the `quality` schema); this DAG turns the results into what people read:

* `refresh_scorecards` pools each library's newest scorecard into group and province roll-ups (one set of
  rows per run in `quality.scorecard_rollup`, the trend) and names the libraries whose tier dropped.
* `build_data_docs` rebuilds the Great Expectations Data Docs of every library's newest batch and a static
  scorecard page (`var/quality/data_docs/`, or `$LIENTHONG_QUALITY_DIR/data_docs`).
* `write_fix_lists` writes one Excel fix list per linking group for its lead library
  (`var/quality/fixlists/<group>.xlsx`): one sheet per member library, one row per problem, in Vietnamese.

* `email_lead_libraries` e-mails each group's lead library (SMTP connection of the registry's `reporting`
  section) when a member's tier dropped or its newest export was held; each alert is sent once.

The same work runs without Airflow: `lienthong quality scorecard --refresh`, `lienthong quality docs`,
`lienthong quality fixlist --library X --out FILE.xlsx`. Thresholds of the tiers: `docs/quality.md`.
"""
from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, dag, task

CORE_RECORDS = Asset(name="lienthong_core_record", uri="postgres://warehouse:5432/lienthong/core/record")


@dag(
    dag_id="quality_review",
    schedule=[CORE_RECORDS],
    start_date=pendulum.datetime(2026, 9, 5, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "quality"],
    default_args={
        "owner": "provincial-it",
        "retries": int(os.environ.get("LIENTHONG_TASK_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=5),
    },
)
def quality_review():
    @task
    def refresh_scorecards() -> dict:
        from lienthong.scorecard import review_refresh

        return review_refresh()

    @task
    def build_data_docs() -> dict:
        from lienthong.scorecard import review_docs

        return review_docs()

    @task
    def write_fix_lists() -> dict:
        from lienthong.scorecard import review_fixlists

        return review_fixlists()

    @task
    def email_lead_libraries() -> dict:
        from lienthong import warehouse
        from lienthong.quality_alerts import send

        return send(warehouse.engine())

    refreshed = refresh_scorecards()
    refreshed >> [build_data_docs(), write_fix_lists(), email_lead_libraries()]


quality_review()
