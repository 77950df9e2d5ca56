"""`make scale-test`: the province ingested through CeleryExecutor with Redis and two workers.

Scaling out is Airflow's job, not ours; this proves that our DAGs scale out unchanged. It starts Redis (Debian's
package) on loopback, an Airflow 3.3 stack (api-server for the execution API, scheduler, dag-processor, two
`airflow celery worker`) with its metadata in PostgreSQL, runs `ingest_library_exports` on a freshly generated
sample province, then checks that both workers ran tasks and that the warehouse holds exactly what a
LocalExecutor-equivalent run (`lienthong ingest --all`, the same code path as the DAG's tasks) produces.
Everything lives under var/scale/ and in the databases lienthong_scale*; every process started is stopped.
Not part of CI: it installs Debian and pip packages when they are missing.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
SCALE_DIR = ROOT / "var" / "scale"
AIRFLOW_HOME = SCALE_DIR / "airflow"
LOGS = SCALE_DIR / "logs"
DAG_ID = "ingest_library_exports"
POOL, POOL_SLOTS = "lienthong_warehouse", 4
WAREHOUSE_DB, LOCAL_DB, AIRFLOW_DB = "lienthong_scale", "lienthong_scale_local", "lienthong_scale_airflow"
WORKERS = ("scale-worker-a", "scale-worker-b")

# The warehouse state a run leaves, per library: current records, a digest of their hashes, their items,
# and what quality kept aside.
STATE_SQL = """
SELECT l.library_code,
       (SELECT count(*) FROM core.record r WHERE r.library_code = l.library_code AND r.valid_to IS NULL) AS records,
       (SELECT md5(coalesce(string_agg(r.local_id || ':' || r.record_hash, ',' ORDER BY r.local_id), ''))
          FROM core.record r WHERE r.library_code = l.library_code AND r.valid_to IS NULL) AS record_hash_md5,
       (SELECT count(*) FROM core.item i JOIN core.record r USING (record_id)
         WHERE r.library_code = l.library_code AND r.valid_to IS NULL) AS items,
       (SELECT count(*) FROM quality.quarantine q WHERE q.library_code = l.library_code) AS quarantined
FROM (SELECT DISTINCT library_code FROM core.library) l
ORDER BY l.library_code
"""


def say(message: str) -> None:
    print(f"[scale-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_packages() -> None:
    """Debian's redis-server and the Airflow Celery provider (extra `scale`), installed only when missing."""
    if not shutil.which("redis-server"):
        say("installing Debian's redis-server")
        subprocess.run(["apt-get", "install", "-y", "redis-server"], check=True, stdout=subprocess.DEVNULL)
    # celery 5.7 dropped celery.backends.database.retry, which the provider's executor imports: probe that.
    probe = subprocess.run([str(BIN / "python"), "-c", "import asyncpg, redis, "
                            "airflow.providers.celery.executors.celery_executor_utils"], capture_output=True)
    if probe.returncode != 0:
        say("installing the Airflow Celery provider into .venv (extra `scale`)")
        subprocess.run([str(BIN / "pip"), "install", "--quiet", "-e", ".[scale]"], cwd=ROOT, check=True)


class Processes:
    """Every process this run starts, so that all of them are stopped whatever happens."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        log = open(LOGS / f"{name}.log", "ab")
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                   start_new_session=True)
        self.started.append((name, process))
        return process

    def check_alive(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {LOGS / (name + '.log')}")

    def stop_all(self) -> None:
        for name, process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, process in reversed(self.started):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.started.clear()


def lienthong_env(database: str, **extra: str) -> dict:
    env = dict(os.environ)
    env.update({
        "LIENTHONG_VAR": str(SCALE_DIR),
        "LIENTHONG_PGDATA": str(ROOT / "var" / "pgdata"),  # the checkout's embedded server, own databases
        "LIENTHONG_WAREHOUSE_DB": database,
        "LIENTHONG_TASK_RETRIES": "0",
        "GX_ANALYTICS_ENABLED": "false",
    })
    env.update(extra)
    return env


def recreate_databases() -> dict[str, str]:
    """Fresh databases for this run on the embedded server; returns their SQLAlchemy URLs."""
    import sqlalchemy as sa

    os.environ.update(lienthong_env(WAREHOUSE_DB))
    from lienthong import warehouse

    admin = sa.create_engine(warehouse.sqlalchemy_url("postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        for name in (WAREHOUSE_DB, LOCAL_DB, AIRFLOW_DB):
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    return {name: warehouse.sqlalchemy_url(name).render_as_string(hide_password=False)
            for name in (WAREHOUSE_DB, LOCAL_DB, AIRFLOW_DB)}


def airflow_env(metadata_url: str, broker_url: str, api_port: int) -> dict:
    hostname_dir = AIRFLOW_HOME / "config"
    env = lienthong_env(WAREHOUSE_DB)
    env.update({
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "lienthong_scale_hostname.worker_name",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "lienthong.celery_config.CELERY_CONFIG",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hostname_dir), os.environ.get("PYTHONPATH")])),
    })
    return env


def write_hostname_callable() -> None:
    """Both workers share this machine's hostname; each reports its own name in task_instance.hostname."""
    folder = AIRFLOW_HOME / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lienthong_scale_hostname.py").write_text(
        '"""task_instance.hostname for `make scale-test`: the Celery worker that ran the task."""\n'
        "import os\nimport socket\n\n\n"
        "def worker_name() -> str:\n"
        '    return os.environ.get("LIENTHONG_SCALE_WORKER") or socket.getfqdn()\n')


def run(cmd: list[str], env: dict, name: str) -> subprocess.CompletedProcess:
    with open(LOGS / f"{name}.log", "ab") as log:
        done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed ({done.returncode}); see {LOGS / (name + '.log')}")
    return done


def wait_for(what: str, check, timeout: float, processes: Processes) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        if check():
            return
        time.sleep(2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def warehouse_state(url: str) -> dict[str, dict]:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(STATE_SQL)).mappings().all()
    engine.dispose()
    return {row["library_code"]: {k: row[k] for k in ("records", "record_hash_md5", "items", "quarantined")}
            for row in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=float(os.environ.get("SCALE_TEST_SCALE", "0.25")),
                        help="sample province size (1.0 = the demo's)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the DAG run")
    args = parser.parse_args(argv)

    import sqlalchemy as sa

    ensure_packages()
    if SCALE_DIR.exists():
        shutil.rmtree(SCALE_DIR)
    LOGS.mkdir(parents=True)
    (SCALE_DIR / "redis").mkdir()
    write_hostname_callable()
    urls = recreate_databases()
    metadata_url = urls[AIRFLOW_DB]
    from lienthong import warehouse

    warehouse.sqlalchemy_url(AIRFLOW_DB)  # creates the metadata database
    metadata = sa.create_engine(metadata_url, poolclass=sa.pool.NullPool)

    processes = Processes()
    failures: list[str] = []
    started = time.monotonic()
    try:
        redis_port, api_port = free_port(), free_port()
        processes.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                                  "--dir", str(SCALE_DIR / "redis"), "--save", "", "--appendonly", "no",
                                  "--protected-mode", "yes"], env=dict(os.environ))
        wait_for("redis", lambda: subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(redis_port), "ping"],
                                                 capture_output=True, text=True).stdout.strip() == "PONG",
                 30, processes)
        say(f"redis-server on 127.0.0.1:{redis_port}")
        env = airflow_env(metadata_url, f"redis://127.0.0.1:{redis_port}/0", api_port)
        airflow = str(BIN / "airflow")

        say(f"generating the sample province (scale {args.scale}) into {SCALE_DIR / 'drop'}")
        run([str(BIN / "lienthong"), "demo", "generate", "--scale", str(args.scale), "--json"], env, "generate")
        say(f"airflow db migrate on PostgreSQL database {AIRFLOW_DB}")
        run([airflow, "db", "migrate"], env, "airflow-db-migrate")
        run([airflow, "pools", "set", POOL, str(POOL_SLOTS), "bounds warehouse sessions"], env, "airflow-pools")

        processes.start("api-server", [airflow, "api-server", "--host", "127.0.0.1", "--port", str(api_port),
                                       "--workers", "1"], env)
        processes.start("scheduler", [airflow, "scheduler"], env)
        processes.start("dag-processor", [airflow, "dag-processor"], env)
        for name in WORKERS:
            processes.start(name, [airflow, "celery", "worker", "--celery-hostname", f"{name}@%h",
                                   "--queues", "default", "--concurrency", "2", "--skip-serve-logs"],
                            {**env, "LIENTHONG_SCALE_WORKER": name})

        def api_up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", api_port), timeout=1):
                    return True
            except OSError:
                return False

        def dag_serialised() -> bool:
            with metadata.connect() as conn:
                return bool(conn.execute(sa.text("SELECT 1 FROM serialized_dag WHERE dag_id = :d"),
                                         {"d": DAG_ID}).scalar())

        wait_for("the api-server", api_up, 180, processes)
        wait_for(f"the dag-processor to parse {DAG_ID}", dag_serialised, 300, processes)
        say("api-server, scheduler, dag-processor and two Celery workers up; triggering the DAG")
        run_id = f"scale_test__{time.strftime('%Y%m%dT%H%M%S')}"
        run([airflow, "dags", "trigger", DAG_ID, "--run-id", run_id], env, "airflow-trigger")
        run([airflow, "dags", "unpause", DAG_ID], env, "airflow-unpause")

        def run_state() -> str | None:
            with metadata.connect() as conn:
                return conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                                    {"d": DAG_ID, "r": run_id}).scalar()

        def all_runs_done() -> bool:
            with metadata.connect() as conn:
                active = conn.execute(sa.text("SELECT count(*) FROM dag_run WHERE dag_id = :d "
                                              "AND state IN ('queued', 'running')"), {"d": DAG_ID}).scalar()
            return run_state() in ("success", "failed") and active == 0

        wait_for(f"DAG run {run_id}", all_runs_done, args.timeout, processes)
        run([airflow, "dags", "pause", DAG_ID], env, "airflow-pause")
        dag_seconds = time.monotonic() - started
        state = run_state()
        with metadata.connect() as conn:
            runs = dict(conn.execute(sa.text("SELECT run_id, state FROM dag_run WHERE dag_id = :d"),
                                     {"d": DAG_ID}).all())
        with metadata.connect() as conn:
            by_host = dict(conn.execute(sa.text(
                "SELECT coalesce(hostname, '?'), count(*) FROM task_instance WHERE dag_id = :d AND run_id = :r "
                "GROUP BY 1 ORDER BY 1"), {"d": DAG_ID, "r": run_id}).all())
            by_state = dict(conn.execute(sa.text(
                "SELECT coalesce(state, 'none'), count(*) FROM task_instance WHERE dag_id = :d AND run_id = :r "
                "GROUP BY 1 ORDER BY 1"), {"d": DAG_ID, "r": run_id}).all())
        say(f"DAG run {run_id}: {state}; task instances by worker {by_host}, by state {by_state}")
        if state != "success":
            failures.append(f"the DAG run ended {state}")
        if set(by_host) != set(WORKERS):
            failures.append(f"task instances ran on {sorted(by_host)}, expected both of {list(WORKERS)}")
    except Exception as exc:  # reported, then every process is stopped
        failures.append(str(exc))
        dag_seconds = time.monotonic() - started
    finally:
        say("stopping every process started")
        processes.stop_all()
        metadata.dispose()

    if failures:
        for failure in failures:
            print(f"FAIL: {failure}")
        return 1

    say(f"LocalExecutor-equivalent run: `lienthong ingest --all` into {LOCAL_DB}")
    local_env = lienthong_env(LOCAL_DB, LIENTHONG_LANDING_ROOT=str(SCALE_DIR / "landing-local"))
    run([str(BIN / "lienthong"), "db", "init"], local_env, "local-db-init")
    local_started = time.monotonic()
    with open(LOGS / "local-ingest.json", "wb") as out, open(LOGS / "local-ingest.log", "wb") as err:
        local_exit = subprocess.run([str(BIN / "lienthong"), "ingest", "--all", "--json"], env=local_env, cwd=ROOT,
                                    stdout=out, stderr=err).returncode
    local_seconds = time.monotonic() - local_started

    celery_state, local_state = warehouse_state(urls[WAREHOUSE_DB]), warehouse_state(urls[LOCAL_DB])
    differences = [f"{code}: celery {celery_state.get(code)} != local {local_state.get(code)}"
                   for code in sorted(set(celery_state) | set(local_state))
                   if celery_state.get(code) != local_state.get(code)]
    totals = {key: sum(lib[key] for lib in celery_state.values()) for key in ("records", "items", "quarantined")}
    report = {"dag_run": run_id, "state": state, "all_dag_runs": runs, "task_instances_by_worker": by_host,
              "libraries": len(celery_state), "totals": totals, "differences": differences,
              "celery_stack_seconds": round(dag_seconds, 1), "local_ingest_seconds": round(local_seconds, 1),
              "local_ingest_exit": local_exit}
    (SCALE_DIR / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    # Unpausing also makes the scheduler create the latest @daily run: a no-change re-run through Celery.
    print("DAG runs: " + ", ".join(f"{rid} {st}" for rid, st in sorted(runs.items())))
    print(f"Celery run: {len(by_host)} workers ran {sum(by_host.values())} task instances "
          + ", ".join(f"{host} {n}" for host, n in by_host.items()))
    print(f"warehouse {WAREHOUSE_DB} vs {LOCAL_DB}: {len(celery_state)} libraries, {totals['records']} current "
          f"records, {totals['items']} items, {totals['quarantined']} quarantined — "
          + ("identical" if not differences else f"{len(differences)} libraries differ"))
    for difference in differences:
        print(f"FAIL: {difference}")
    print(f"report: {SCALE_DIR / 'report.json'}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
