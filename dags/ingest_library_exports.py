"""
### Ingest library exports

Daily, for every library active in the registry (`include/lienthong/data/registry.yaml`): take the newest
export from the library's source, keep its raw bytes in landing (sha256), parse it (ISO 2709 framed on the
record terminator, MARCXML record by record), normalise to canonical records (NFC), check the seven
mandatory elements of the guidance (§III.4b) with Great Expectations, and load the warehouse: staging, then
core as one snapshot with history.

* `prepare_warehouse` applies migrations and loads the registry into the dimensions; it returns the list of
  library codes (small JSON) that the ingest task is mapped over.
* `ingest_library` runs once per library. One library's failure does not stop the others; re-ingesting an
  unchanged export changes nothing.
* `summarise` runs whatever happened upstream and emits the `lienthong_core_record` Asset that later DAGs
  (quality review, union catalogue) are scheduled on.

All logic lives in the `lienthong` package; the same code runs without Airflow: `lienthong ingest --all`.
"""
from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, dag, task

WAREHOUSE_POOL = "lienthong_warehouse"  # created by `airflow-init` / `make demo`; bounds warehouse sessions

CORE_RECORDS = Asset(name="lienthong_core_record", uri="postgres://warehouse:5432/lienthong/core/record")


@dag(
    dag_id="ingest_library_exports",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 9, 5, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "ingest", "catalogue"],
    default_args={
        "owner": "provincial-it",
        "retries": int(os.environ.get("LIENTHONG_TASK_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=5),
    },
)
def ingest_library_exports():
    @task
    def prepare_warehouse() -> list[str]:
        from lienthong.pipeline import prepare_warehouse as prepare

        return prepare()

    @task(max_active_tis_per_dagrun=4, pool=WAREHOUSE_POOL)
    def ingest_library(library_code: str) -> dict:
        from lienthong.pipeline import ingest_one

        return ingest_one(library_code)

    @task(trigger_rule="all_done", outlets=[CORE_RECORDS])
    def summarise() -> dict:
        from lienthong.pipeline import summarise as summary

        return summary()

    ingested = ingest_library.expand(library_code=prepare_warehouse())
    ingested >> summarise()


ingest_library_exports()
