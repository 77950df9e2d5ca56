"""
### Build the union catalogue (mục lục liên hợp)

Runs whenever the ingest DAG has updated the warehouse (scheduled on the `lienthong_core_record` Asset):
the records of every library are matched into clusters, one per manifestation, so the catalogue shows which
libraries hold each book (§III.4 of the guidance).

* `match_records` computes Vietnamese-aware match keys of new record versions only (tone marks kept, one
  tone placement, inverted names unified, volumes read) and compares the candidate pairs that PostgreSQL
  finds through shared blocks (ISBN, title, author): never all pairs, and unchanged records never again.
* `cluster_records` applies the stored links and the stewards' merge/split decisions, keeps cluster ids
  stable, picks each cluster's preferred record and refreshes search; it emits the
  `lienthong_union_catalogue` Asset.

All logic lives in `lienthong.catalog`; the same build runs without Airflow: `lienthong catalog build`.
"""
from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, dag, task

CORE_RECORDS = Asset(name="lienthong_core_record", uri="postgres://warehouse:5432/lienthong/core/record")
UNION_CATALOGUE = Asset(name="lienthong_union_catalogue", uri="postgres://warehouse:5432/lienthong/catalog/cluster")


@dag(
    dag_id="build_union_catalogue",
    schedule=[CORE_RECORDS],
    start_date=pendulum.datetime(2026, 9, 5, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lienthong", "catalogue"],
    default_args={
        "owner": "provincial-it",
        "retries": int(os.environ.get("LIENTHONG_TASK_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=5),
    },
)
def build_union_catalogue():
    @task
    def match_records() -> dict:
        from lienthong import catalog, migrations, warehouse

        engine = warehouse.engine()
        migrations.upgrade(engine)
        stats = catalog.match(engine)
        return {k: v for k, v in stats.items() if k != "pairs_rejected"}

    @task(outlets=[UNION_CATALOGUE])
    def cluster_records(matched: dict) -> dict:
        from lienthong import catalog, warehouse

        stats = catalog.cluster(warehouse.engine())
        return {"records": stats["records"], "clusters": stats["clusters"],
                "shared_clusters": stats["shared_clusters"], "links_added": matched["links_added"]}

    cluster_records(match_records())


build_union_catalogue()
