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


_TASK_END = b"[DAG TEST] end task task_id=ingest_library "


def _finished_libraries(log_file: Path) -> int:
    """Mapped ingest tasks finished so far, read from the run's log (unchanged libraries count too)."""
    return log_file.read_bytes().count(_TASK_END)


def run(scale: float = 1.0, seed: int = 20261125) -> int:
    console = Console()
    console.rule("[bold]lienthong demo")
    console.print("1/4 warehouse: starting the embedded PostgreSQL and applying migrations …")
    engine = warehouse.engine()
    migrations.upgrade(engine)
    registry = load_registry()
    dims = dimensions.load_registry_dimensions(engine, registry)
    console.print(f"    {dims['libraries']} libraries, {dims['groups']} groups loaded from the registry")

    console.print("2/4 generating the sample province's exports …")
    truth = generate_province(library_specs(registry), config.drop_root(), scale=scale, seed=seed)
    console.print(f"    {truth['totals']['records']} records, {truth['totals']['items']} items in "
                  f"{len(truth['libraries'])} exports under {config.drop_root()}")

    console.print(f"3/4 running the Airflow DAG [bold]{DAG_ID}[/bold] (airflow dags test) …")
    env = airflow_env()
    log_file = Path(env["AIRFLOW_HOME"]) / "demo-run.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_bytes(b"")
    if _airflow("db", "migrate", env=env, log_file=log_file).wait() != 0:
        console.print(f"[red]airflow db migrate failed; see {log_file}")
        return 1
    libraries = len(registry.active_libraries())
    process = _airflow("dags", "test", DAG_ID, env=env, log_file=log_file)
    with Progress(TextColumn("    libraries"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        bar = progress.add_task("ingest", total=libraries)
        while process.poll() is None:
            progress.update(bar, completed=_finished_libraries(log_file))
            time.sleep(0.5)
        progress.update(bar, completed=_finished_libraries(log_file))
    if process.returncode != 0:
        console.print(f"[red]the DAG run failed (exit {process.returncode}); see {log_file}")
        return 1
    console.print(f"    done; Airflow's log of the run: {log_file}")
    console.print("    (a library whose export did not change since the last run is reported unchanged)")

    console.print("4/4 summary")
    console.print(format_summary(province_summary(engine)))
    console.rule()
    console.print(f"Open the warehouse in psql : .venv/bin/lienthong db psql   (URL: {warehouse.psql_url()})")
    console.print("Open the Airflow UI        : make airflow   → http://localhost:8080 (user/password printed by "
                  "airflow standalone)")
    console.print(f"Ground truth of the sample : {config.drop_root() / 'ground_truth.json'}")
    return 0
