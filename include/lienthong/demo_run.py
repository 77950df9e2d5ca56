"""`make demo`: the sample province carried end to end through a real Airflow DAG run."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lienthong import config, dimensions, migrations, sources, warehouse
from lienthong.demo import LibrarySpec, generate_province
from lienthong.registry import load_registry
from lienthong.summary import format_summary, province_summary

DAG_ID = "ingest_library_exports"
WAREHOUSE_POOL, WAREHOUSE_SLOTS = "lienthong_warehouse", 4  # the embedded server: a few sessions at a time


def library_specs(registry) -> list[LibrarySpec]:
    """What the generator needs of each active registry library: code, type, name and drop folder."""
    return [
        LibrarySpec(code=lib.code, type=lib.type, name=lib.name,
                    drop_folder=sources.drop_folder(lib.code, lib.source.location))
        for lib in registry.active_libraries()
    ]


def airflow_env() -> dict[str, str]:
    """Airflow home in var/airflow with SQLite metadata, our dags/ and plugins/, no examples."""
    root = config.project_root()
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(config.var_dir() / "airflow"))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(root / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(root / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("LIENTHONG_TASK_RETRIES", "0")
    return env


def _airflow(*args: str, env: dict, log_file: Path) -> subprocess.Popen:
    binary = Path(sys.executable).with_name("airflow")
    with open(log_file, "ab") as log:
        return subprocess.Popen([str(binary), *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def _finished(log_file: Path, task_id: str) -> int:
    """Mapped task instances finished so far, read from the run's log (unchanged libraries count too)."""
    return log_file.read_bytes().count(f"[DAG TEST] end task task_id={task_id} ".encode())


def _run_dag(console: Console, env: dict, log_file: Path, dag_id: str, *, mapped_task: str | None = None,
             total: int = 0, label: str = "libraries") -> bool:
    """`airflow dags test DAG_ID` with a progress bar over its mapped task; False (and a message) on failure."""
    process = _airflow("dags", "test", dag_id, env=env, log_file=log_file)
    columns = [TextColumn(f"    {label:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(dag_id, total=total or None)
        while process.poll() is None:
            if mapped_task:
                progress.update(bar, completed=_finished(log_file, mapped_task))
            time.sleep(0.5)
        progress.update(bar, completed=_finished(log_file, mapped_task) if mapped_task else 1, total=total or 1)
    if process.returncode != 0:
        console.print(f"[red]the DAG {dag_id} failed (exit {process.returncode}); see {log_file}")
        return False
    return True


def run(scale: float = 1.0, seed: int = 20261125) -> int:
    from lienthong import circulation, privacy, report

    console = Console()
    console.rule("[bold]lienthong demo")
    console.print("1/6 warehouse: starting the embedded PostgreSQL and applying migrations …")
    engine = warehouse.engine()
    migrations.upgrade(engine)
    registry = load_registry()
    dims = dimensions.load_registry_dimensions(engine, registry)
    console.print(f"    {dims['libraries']} libraries, {dims['groups']} groups loaded from the registry")

    console.print("2/6 generating the sample province's exports (catalogues and circulation) …")
    privacy.ensure_demo_key()  # a random pseudonymisation key for the sample, kept in var/, never printed
    truth = generate_province(library_specs(registry), config.drop_root(), scale=scale, seed=seed)
    console.print(f"    {truth['totals']['records']} records, {truth['totals']['items']} items in "
                  f"{len(truth['libraries'])} exports under {config.drop_root()}")

    env = airflow_env()
    log_file = Path(env["AIRFLOW_HOME"]) / "demo-run.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_bytes(b"")
    if _airflow("db", "migrate", env=env, log_file=log_file).wait() != 0:
        console.print(f"[red]airflow db migrate failed; see {log_file}")
        return 1
    if _airflow("pools", "set", WAREHOUSE_POOL, str(WAREHOUSE_SLOTS), "lienthong tasks that write the warehouse",
                env=env, log_file=log_file).wait() != 0:
        console.print(f"[red]could not create the Airflow pool {WAREHOUSE_POOL}; see {log_file}")
        return 1
    libraries = len(registry.active_libraries())
    console.print(f"3/6 Airflow: [bold]{DAG_ID}[/bold] (airflow dags test) …")
    if not _run_dag(console, env, log_file, DAG_ID, mapped_task="ingest_library", total=libraries):
        return 1
    console.print("    (a library whose export did not change since the last run is reported unchanged)")

    console.print("4/6 Airflow: [bold]quality_review[/bold] and [bold]build_union_catalogue[/bold] "
                  "(in production both run when the ingest DAG updates its Asset) …")
    for dag_id in ("quality_review", "build_union_catalogue"):
        if not _run_dag(console, env, log_file, dag_id, label=dag_id.split("_")[0]):
            return 1

    console.print("5/6 Airflow: [bold]ingest_circulation[/bold] (loans, inter-library loans, reader cards, "
                  "rotation; patron ids pseudonymised) …")
    if not _run_dag(console, env, log_file, "ingest_circulation", mapped_task="ingest_library_circulation",
                    total=libraries):
        return 1

    console.print("6/6 the current period's report and the province summary")
    period_report = report.current_period_report(config.var_dir() / "reports" / "demo")
    console.print(format_summary(province_summary(engine)))
    console.print(catalog_summary_line(engine))
    console.print(circulation.format_summary(circulation.province_summary(engine)))
    console.rule()
    console.print(f"Report {period_report['period']} ({period_report['name_vi']}) : {period_report['html']}")
    console.print(f"   and its workbook/CSV files in {period_report['out_dir']}")
    console.print(f"Open the warehouse in psql : .venv/bin/lienthong db psql   (URL: {warehouse.psql_url()})")
    console.print("Open the Airflow UI        : make airflow   → http://localhost:8080 (user/password printed by "
                  "airflow standalone)")
    console.print(f"Airflow's log of the runs  : {log_file}")
    console.print(f"Ground truth of the sample : {config.drop_root() / 'ground_truth.json'}")
    return 0


def catalog_summary_line(engine) -> str:
    import sqlalchemy as sa

    with engine.connect() as conn:
        clusters, records, shared = conn.execute(sa.text(
            """SELECT count(*), coalesce(sum(records), 0), count(*) FILTER (WHERE libraries > 1)
               FROM (SELECT cluster_id, count(*) AS records, count(DISTINCT library_code) AS libraries
                     FROM catalog.cluster_member GROUP BY cluster_id) c""")).one()
    return (f"Union catalogue: {records} records of the libraries in {clusters} clusters (one per "
            f"manifestation); {shared} are held by more than one library")
