"""The ingest_circulation DAG: imports cleanly, is wired as documented, and really runs with dag.test()."""
from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
import yaml

from airflow.dag_processing.dagbag import DagBag

from lienthong import dimensions
from lienthong.registry import PACKAGED_REGISTRY, load_registry
from tests.conftest import ROOT

DAG_ID = "ingest_circulation"
DISTRICT = "Đà Bắc"


def _dag():
    return DagBag(dag_folder=str(ROOT / "dags")).dags[DAG_ID]  # get_dag() would ask the metadata DB


def test_dag_imports_and_is_wired_as_documented():
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags[DAG_ID]
    assert dag.catchup is False and {"lienthong", "circulation"} <= set(dag.tags)
    assert dag.doc_md and "Ingest circulation exports" in dag.doc_md
    assert dag.default_args["retries"] == 0  # LIENTHONG_TASK_RETRIES=0 in tests
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"prepare_warehouse", "ingest_library_circulation", "summarise"}
    assert tasks["prepare_warehouse"].downstream_task_ids == {"ingest_library_circulation"}
    assert tasks["ingest_library_circulation"].downstream_task_ids == {"summarise"}
    assert tasks["summarise"].trigger_rule == "all_done"
    assert [a.name for a in tasks["summarise"].outlets] == ["lienthong_circulation"]
    source = (ROOT / "dags" / "ingest_circulation.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) < 150 and "\nimport lienthong" not in source


@pytest.fixture
def district_registry(tmp_path, monkeypatch, warehouse_engine):
    """The packaged registry cut down to one district (and its groups), so the mapped run stays small.

    The DAG loads it into the dimensions (dropping the other libraries): the session's registry is put back."""
    session_registry = os.environ.get("LIENTHONG_REGISTRY")
    data = yaml.safe_load(PACKAGED_REGISTRY.read_text(encoding="utf-8"))
    keep = {lib["code"] for lib in data["libraries"] if lib["admin_unit"] == DISTRICT} | {"TV-TINH"}
    data["libraries"] = [lib for lib in data["libraries"] if lib["code"] in keep]
    groups = []
    for group in data["groups"]:
        group["members"] = [m for m in group["members"] if m["library"] in keep]
        if group["lead_library"] in keep and group["members"]:
            groups.append(group)
    data["groups"] = groups
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("LIENTHONG_REGISTRY", str(path))
    yield load_registry(path)
    dimensions.load_registry_dimensions(warehouse_engine, load_registry(session_registry or PACKAGED_REGISTRY))


@pytest.mark.dag
def test_dag_runs_end_to_end(clean_warehouse, airflow_db, demo_province, district_registry, monkeypatch):
    monkeypatch.setenv("LIENTHONG_PATRON_KEY", "dag-test-key-0123456789abcdef")
    codes = {lib.code for lib in district_registry.active_libraries()}
    run = _dag().test()
    assert run.state == "success"
    with clean_warehouse.connect() as conn:
        batches = conn.execute(sa.text(
            "SELECT library_code, kind, status, rows_read, rows_loaded, rows_quarantined, rows_unreadable, key_id "
            "FROM circulation.batch")).mappings().all()
        loans = conn.execute(sa.text("SELECT count(*) FROM circulation.loan")).scalar_one()
    truth = demo_province["circulation"]["libraries"]
    assert {b["library_code"] for b in batches} == codes
    assert len(batches) == sum(len(truth[c]["files"]) for c in codes)
    assert all(b["status"] == "applied" for b in batches)
    assert all(b["rows_read"] == b["rows_loaded"] + b["rows_quarantined"] + b["rows_unreadable"] for b in batches)
    assert sum(b["rows_read"] for b in batches) == sum(sum(truth[c]["rows"].values()) for c in codes)
    assert loans == sum(truth[c]["loans"] for c in codes)
    assert len({b["key_id"] for b in batches}) == 1


@pytest.mark.dag
def test_dag_task_refuses_without_a_key(clean_warehouse, airflow_db, demo_province, district_registry, monkeypatch):
    monkeypatch.delenv("LIENTHONG_PATRON_KEY", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_LIENTHONG_PATRON_KEY", raising=False)
    run = _dag().test()
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    ingests = [state for (task_id, _), state in states.items() if task_id == "ingest_library_circulation"]
    assert len(ingests) == len(district_registry.active_libraries()) and set(ingests) == {"failed"}
    assert states[("summarise", -1)] == "success"  # the summary still runs (all_done)
    with clean_warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM circulation.batch")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM landing.delivery")).scalar_one() == 0
