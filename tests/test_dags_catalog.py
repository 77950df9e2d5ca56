"""The build_union_catalogue DAG: imports cleanly, is scheduled on the ingest Asset, and really runs."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow.dag_processing.dagbag import DagBag

from tests.conftest import ROOT

DAG_ID = "build_union_catalogue"


def _dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dag_imports_and_is_wired_as_documented():
    bag = _dagbag()
    assert bag.import_errors == {}
    dag = bag.dags[DAG_ID]
    assert dag.catchup is False
    assert {"lienthong", "catalogue"} <= set(dag.tags)
    assert dag.doc_md and "union catalogue" in dag.doc_md
    assert dag.default_args["retries"] == 0  # LIENTHONG_TASK_RETRIES=0 in tests
    assets = dag.timetable.asset_condition.objects
    assert [(asset.name, asset.uri) for asset in assets] == [
        ("lienthong_core_record", "postgres://warehouse:5432/lienthong/core/record")]
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"match_records", "cluster_records"}
    assert tasks["match_records"].downstream_task_ids == {"cluster_records"}
    assert [a.name for a in tasks["cluster_records"].outlets] == ["lienthong_union_catalogue"]


def test_ingest_dag_emits_the_asset_this_dag_waits_for():
    ingest = _dagbag().dags["ingest_library_exports"]
    emitted = {a.uri for t in ingest.tasks for a in t.outlets}
    assert "postgres://warehouse:5432/lienthong/core/record" in emitted


@pytest.mark.dag
def test_dag_runs_and_builds_the_catalogue(clean_warehouse, airflow_db, demo_province):
    from lienthong.ingest import ingest_library

    for code in ("TV-TINH", "TV-MAICHAU", "TV-TANLAC"):
        assert ingest_library(code).status == "applied"
    dag = _dagbag().get_dag(DAG_ID)
    run = dag.test()
    assert run.state == "success"
    with clean_warehouse.connect() as conn:
        records = conn.execute(sa.text("SELECT count(*) FROM core.record WHERE valid_to IS NULL")).scalar_one()
        members = conn.execute(sa.text("SELECT count(*) FROM catalog.cluster_member")).scalar_one()
        clusters = conn.execute(sa.text("SELECT count(*) FROM catalog.cluster")).scalar_one()
        ids = conn.execute(sa.text("SELECT array_agg(cluster_id ORDER BY record_id) FROM catalog.cluster_member")
                           ).scalar_one()
    assert members == records > 0
    assert clusters < records  # the three public libraries share editions

    again = dag.test()
    assert again.state == "success"
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT array_agg(cluster_id ORDER BY record_id) FROM catalog.cluster_member")
                            ).scalar_one() == ids
        runs = conn.execute(sa.text("SELECT count(*) FROM catalog.build_run")).scalar_one()
    assert runs == 0  # the DAG runs the two phases itself; build_run logs `lienthong catalog build`
