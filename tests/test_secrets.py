"""Secrets live only in the environment or Airflow connections: a real DAG run (dag.test) with a warehouse
password in LIENTHONG_WAREHOUSE_URL and a password in an AIRFLOW_CONN_* variable, then every task log, the
Airflow metadata database (XComs included) and the console are searched for them.
"""
from __future__ import annotations

import json
import re
import sqlite3
import urllib.parse
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lienthong import access, dimensions, warehouse
from lienthong.cli import main
from lienthong.registry import load_registry
from tests.marc_builders import book, write_marc
from tests.test_access import logins  # noqa: F401  (fixture: unique logins, dropped afterwards)

GROUP_LIBRARIES = 3


def _small_registry(folder: Path) -> tuple[Path, list[str]]:
    """The packaged registry cut down to one group, so the DAG maps over a handful of libraries."""
    data = yaml.safe_load(Path(load_registry().path).read_text(encoding="utf-8"))
    group = next(g for g in data["groups"] if len(g["members"]) >= GROUP_LIBRARIES)
    group["members"] = group["members"][:GROUP_LIBRARIES]
    codes = [m["library"] for m in group["members"]]
    if group["lead_library"] not in codes:
        group["lead_library"] = codes[0]
    data["groups"] = [group]
    data["libraries"] = [lib for lib in data["libraries"] if lib["code"] in codes]
    data["reporting"].pop("contacts", None)
    path = folder / "registry.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    load_registry(path)  # valid, or the test stops here with file:line:key
    return path, codes


def _found(secret: str, haystack: bytes) -> bool:
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    return any(form.encode() in haystack for form in forms)


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.skipif(not warehouse.is_embedded(), reason="builds a password URL to the embedded server")
def test_dag_run_leaks_no_secret_to_logs_xcoms_or_console(clean_warehouse, airflow_db, logins, tmp_path,  # noqa: F811
                                                          monkeypatch, capfd):
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import ROOT

    registry_path, codes = _small_registry(tmp_path)
    from lienthong import config

    for code in codes[:-1]:
        write_marc(config.drop_root() / code / "export.mrc", [book(f"{code}-1"), book(f"{code}-2", title=None)])
    bad = config.drop_root() / codes[-1] / "export.mrc"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"this is not MARC at all\n" * 10)  # one failing task: error paths are searched too

    login = logins("dagpipe")
    warehouse_secret = f"wh-{uuid.uuid4().hex}"
    conn_secret = f"conn-{uuid.uuid4().hex}"
    assert access.grant(clean_warehouse, "pipeline", login, password=warehouse_secret).outcome == "created"
    url = warehouse.sqlalchemy_url().set(drivername="postgresql", username=login, password=warehouse_secret)
    monkeypatch.setenv("LIENTHONG_WAREHOUSE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_SECRET_PROBE", json.dumps(
        {"conn_type": "sftp", "host": "127.0.0.1", "login": "probe", "password": conn_secret}))
    monkeypatch.setenv("LIENTHONG_REGISTRY", str(registry_path))
    warehouse.dispose_engines()
    try:
        dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("ingest_library_exports")
        run = dag.test()
    finally:
        monkeypatch.delenv("LIENTHONG_WAREHOUSE_URL")
        monkeypatch.delenv("LIENTHONG_REGISTRY")
        warehouse.dispose_engines()
        dimensions.load_registry_dimensions(clean_warehouse, load_registry())
    console = capfd.readouterr()
    assert run.state == "success"  # summarise runs whatever happened; the garbage export failed only its task

    with clean_warehouse.connect() as conn:
        batches = dict(conn.execute(sa.text("SELECT library_code, status FROM core.batch")).all())
    assert batches == {**{code: "applied" for code in codes[:-1]}, codes[-1]: "failed"}

    evidence: dict[str, bytes] = {"console": (console.out + console.err).encode()}
    for path in _files_under(airflow_db / "logs") if (airflow_db / "logs").exists() else []:
        evidence[str(path)] = path.read_bytes()
    for path in airflow_db.glob("airflow.db*"):
        evidence[str(path)] = path.read_bytes()  # every table, XComs included, and the journal
    with sqlite3.connect(airflow_db / "airflow.db") as db:
        xcoms = [row[0] for row in db.execute("SELECT value FROM xcom WHERE dag_id = 'ingest_library_exports'")]
    evidence["xcom"] = b"\n".join(v if isinstance(v, bytes) else str(v).encode() for v in xcoms)

    # The search is not vacuous: the run left its traces where the secrets would be.
    assert codes[0].encode() in evidence["xcom"]
    assert any(codes[0].encode() in value for where, value in evidence.items() if where != "xcom")
    assert codes[-1].encode() in evidence["console"]  # the failing task's log reached the console
    for secret in (warehouse_secret, conn_secret):
        leaks = [where for where, value in evidence.items() if _found(secret, value)]
        assert leaks == [], f"secret found in {leaks}"


def test_unreachable_warehouse_error_names_no_password(monkeypatch, capsys, tmp_path):
    secret = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("LIENTHONG_WAREHOUSE_URL",
                       f"postgresql://pipeline:{secret}@/lienthong?host={tmp_path}/no-server-here")
    warehouse.dispose_engines()
    try:
        assert main(["db", "init", "--json"]) == 1
        assert main(["summary", "--json"]) == 1
    finally:
        warehouse.dispose_engines()
    out = capsys.readouterr()
    assert "no-server-here" in out.err  # a clear message: where it tried to connect
    assert secret not in out.out + out.err


SECRET_KEY = re.compile(r"^\s*[\"']?([A-Za-z_]*(?:PASSWORD|SECRET|TOKEN|FERNET_KEY)[A-Za-z_]*)[\"']?\s*[:=]\s*(.*)$",
                        re.IGNORECASE)
URL_CREDENTIAL = re.compile(r"://[^:/@\s'\"]+:([^@\s'\"]+)@")
PLACEHOLDERS = {"", "change-me", "null", "~"}


def test_no_secret_committed_in_the_repository():
    """Shipped configuration takes every credential from ${VAR} (compose .env) or AIRFLOW_CONN_*; the example
    env file holds placeholders only."""
    from tests.conftest import ROOT

    files = [ROOT / "docker-compose.yml", ROOT / ".env.example", ROOT / "Dockerfile",
             *(ROOT / "include").rglob("*.yaml"), *(ROOT / "dags").glob("*.py")]
    suspicious = []
    for path in (p for p in files if p.is_file()):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            values = URL_CREDENTIAL.findall(line)
            match = SECRET_KEY.match(line)
            if match and not match.group(2).lstrip().startswith(("{", "[")):
                values.append(match.group(2).strip().strip("'\","))
            for value in values:
                if value.strip().lower() not in PLACEHOLDERS and "${" not in value and "{{" not in value:
                    suspicious.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert suspicious == []
