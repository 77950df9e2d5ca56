"""The quality_review DAG: imports cleanly, is scheduled on the ingest's Asset, and really runs."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow.dag_processing.dagbag import DagBag

from lienthong.ingest import ingest_library
from lienthong.registry import load_registry
from tests.conftest import ROOT, with_packaged_registry
from tests.marc_builders import book, write_marc

DAG_ID = "quality_review"


@pytest.fixture
def clean_warehouse(clean_warehouse):
    """The conftest fixture, with the packaged registry's dimensions reloaded (see conftest)."""
    return with_packaged_registry(clean_warehouse)


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dagbag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dag_ids


def test_structure_and_schedule_on_the_core_record_asset(dagbag):
    dag = dagbag.dags[DAG_ID]
    assert dag.catchup is False
    assert {"lienthong", "quality"} <= set(dag.tags)
    assert dag.doc_md and "Review record quality" in dag.doc_md
    assert dag.default_args["retries"] == 0
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"refresh_scorecards", "build_data_docs", "write_fix_lists", "email_lead_libraries"}
    assert tasks["refresh_scorecards"].downstream_task_ids == {"build_data_docs", "write_fix_lists",
                                                              "email_lead_libraries"}
    assets = [(a.name, a.uri) for a in dag.timetable.asset_condition.objects]
    assert assets == [("lienthong_core_record", "postgres://warehouse:5432/lienthong/core/record")]
    ingest = dagbag.dags["ingest_library_exports"]
    assert [(a.name, a.uri) for t in ingest.tasks for a in t.outlets] == assets  # what the ingest emits


def test_dag_runs_and_writes_scorecards_docs_and_fix_lists(clean_warehouse, airflow_db, tmp_path, monkeypatch):
    monkeypatch.setenv("LIENTHONG_QUALITY_DIR", str(tmp_path / "quality"))
    ingest_library("THPT-LUONGSON", write_marc(tmp_path / "a.mrc", [
        book("A", items=(("STK.A", "510 T406"),)), book("B", None, items=(("STK.B", "510 T406"),))]))
    ingest_library("THPT-CHVT", write_marc(tmp_path / "b.mrc", [
        book("C", keywords=(), items=(("STK.C", "510 T406"),))]))

    run = DagBag(dag_folder=str(ROOT / "dags")).get_dag(DAG_ID).test()
    assert run.state == "success"

    out = tmp_path / "quality"
    assert (out / "data_docs" / "index.html").is_file()
    assert "THPT-LUONGSON" in (out / "data_docs" / "scorecards.html").read_text(encoding="utf-8")
    groups = [g.code for g in load_registry().active_groups()]
    assert sorted(p.stem for p in (out / "fixlists").glob("*.xlsx")) == sorted(groups)

    from openpyxl import load_workbook

    sheet = load_workbook(out / "fixlists" / "NLT-THPT-LUONGSON.xlsx")["THPT-LUONGSON"]
    ids = [row[0].value for row in sheet.iter_rows(min_row=2) if row[6].value]
    assert ids == ["B"]
    with clean_warehouse.connect() as conn:
        levels = dict(conn.execute(sa.text(
            "SELECT level, count(*) FROM quality.scorecard_rollup GROUP BY level")).all())
    assert levels == {"library": 2, "group": len(groups), "province": 1}
