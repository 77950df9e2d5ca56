"""The DAGs: import cleanly, are wired as documented, and really run (dag.test) against the warehouse."""
from __future__ import annotations

import sqlalchemy as sa

from airflow.dag_processing.dagbag import DagBag

from tests.conftest import ROOT


def _dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dagbag_imports_without_errors():
    bag = _dagbag()
    assert bag.import_errors == {}
    assert "ingest_library_exports" in bag.dag_ids


def test_ingest_dag_structure():
    dag = _dagbag().dags["ingest_library_exports"]  # get_dag() would ask the metadata DB
    assert dag.catchup is False
    assert {"lienthong", "ingest"} <= set(dag.tags)
    assert dag.doc_md and "Ingest library exports" in dag.doc_md
    assert dag.default_args["retries"] == 0  # LIENTHONG_TASK_RETRIES=0 in tests; 2 by default
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"prepare_warehouse", "ingest_library", "summarise"}
    assert tasks["prepare_warehouse"].downstream_task_ids == {"ingest_library"}
    assert tasks["ingest_library"].downstream_task_ids == {"summarise"}
    assert tasks["summarise"].trigger_rule == "all_done"
    assert tasks["ingest_library"].pool == "lienthong_warehouse"  # bounds warehouse sessions across DAGs
    assert [a.name for a in tasks["summarise"].outlets] == ["lienthong_core_record"]


def test_ingest_dag_runs_end_to_end(clean_warehouse, airflow_db, demo_province):
    dag = _dagbag().get_dag("ingest_library_exports")
    run = dag.test()
    assert run.state == "success"
    truth = demo_province
    with clean_warehouse.connect() as conn:
        batches = conn.execute(sa.text(
            "SELECT library_code, status, records_read, records_loaded, records_quarantined, records_unreadable "
            "FROM core.batch")).all()
        records = conn.execute(sa.text("SELECT count(*) FROM core.record WHERE valid_to IS NULL")).scalar_one()
    assert {b.library_code for b in batches} == set(truth["libraries"])
    assert all(b.status == "applied" for b in batches)
    assert all(b.records_read == b.records_loaded + b.records_quarantined + b.records_unreadable for b in batches)
    assert sum(b.records_read for b in batches) == truth["totals"]["records"]
    assert records == sum(b.records_loaded for b in batches)

    again = dag.test()
    assert again.state == "success"
    with clean_warehouse.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM core.batch GROUP BY status")).all())
        assert conn.execute(sa.text("SELECT count(*) FROM core.record")).scalar_one() == records
    assert statuses == {"applied": len(batches), "unchanged": len(batches)}
