"""
### Ingest circulation exports

Daily, for every library active in the registry: take the newest circulation exports in the library's
drop folder (`circulation/`): loans (a loan register or a Koha statistics report), inter-library loan
requests, reader cards and rotation batches. Each is kept raw in landing (sha256, owner-readable only),
read with personal data dropped and reader identifiers pseudonymised (HMAC-SHA256), checked with the Great
Expectations suites `expectations/circulation_*.json`, and loaded into the `circulation` schema; loans and
ILL are checked against the owning library's lending policy (loan days, max items) and access level.

* `prepare_warehouse` applies migrations, loads the registry and returns the library codes (small JSON).
* `ingest_library_circulation` runs once per library; one library's failure does not stop the others, an
  unchanged export changes nothing. It needs the pseudonymisation key: the Airflow connection
  `lienthong_patron_key` (password) or `LIENTHONG_PATRON_KEY`; without it the task refuses to read anything.
* `summarise` logs the province's circulation figures and emits the `lienthong_circulation` Asset.

All logic lives in `lienthong.circulation`; without Airflow: `lienthong circulation ingest --all`.
"""
from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, dag, task

WAREHOUSE_POOL = "lienthong_warehouse"  # created by `airflow-init` / `make demo`; bounds warehouse sessions

CIRCULATION = Asset(name="lienthong_circulation", uri="postgres://warehouse:5432/lienthong/circulation/loan")


@dag(
    dag_id="ingest_circulation",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 9, 5, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "ingest", "circulation"],
    default_args={
        "owner": "provincial-it",
        "retries": int(os.environ.get("LIENTHONG_TASK_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=5),
    },
)
def ingest_circulation():
    @task
    def prepare_warehouse() -> list[str]:
        from lienthong.pipeline import prepare_warehouse as prepare

        return prepare()

    @task(max_active_tis_per_dagrun=4, pool=WAREHOUSE_POOL)
    def ingest_library_circulation(library_code: str) -> list[dict]:
        from lienthong.circulation import ingest_one

        return ingest_one(library_code)

    @task(trigger_rule="all_done", outlets=[CIRCULATION])
    def summarise() -> dict:
        from lienthong.circulation import summarise_province

        return summarise_province()

    ingested = ingest_library_circulation.expand(library_code=prepare_warehouse())
    ingested >> summarise()


ingest_circulation()
