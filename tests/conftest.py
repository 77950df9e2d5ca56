"""Test fixtures: a real PostgreSQL warehouse (embedded, database ``lienthong_test``) and a private Airflow home.

Set LIENTHONG_TEST_WAREHOUSE_URL to run against a server instead; its database is wiped by the tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A byte-for-byte copy of ../shared/data/marc-public (see its PROVENANCE.md), so a clone tests on its own.
MARC_PUBLIC = ROOT / "tests" / "fixtures" / "marc-public"

# Airflow reads its configuration at import: point it at a private home before anything imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="lienthong-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["LIENTHONG_TASK_RETRIES"] = "0"
if os.environ.get("LIENTHONG_TEST_WAREHOUSE_URL"):
    os.environ["LIENTHONG_WAREHOUSE_URL"] = os.environ["LIENTHONG_TEST_WAREHOUSE_URL"]
else:
    os.environ.pop("LIENTHONG_WAREHOUSE_URL", None)
    # LIENTHONG_TEST_DB lets several checkouts or sessions test side by side on one embedded server.
    os.environ["LIENTHONG_WAREHOUSE_DB"] = os.environ.get("LIENTHONG_TEST_DB", "lienthong_test")

# Tables that hold the registry's dimensions survive clean_warehouse; everything else is emptied.
REGISTRY_TABLES = {"core.library", "core.library_group", "core.group_membership", "core.administrative_unit"}
STAGE_SCHEMAS = ("landing", "staging", "core", "quality", "catalog", "circulation", "reporting", "access")

@pytest.fixture(scope="session")
def state_dir(tmp_path_factory) -> Path:
    """Drop folders and landing store of the test session (the server's data stays in var/pgdata)."""
    path = tmp_path_factory.mktemp("lienthong-var")
    os.environ["LIENTHONG_DROP_ROOT"] = str(path / "drop")
    os.environ["LIENTHONG_LANDING_ROOT"] = str(path / "landing")
    return path


@pytest.fixture(scope="session")
def warehouse_engine(state_dir):
    """A migrated, empty warehouse database for the session."""
    import sqlalchemy as sa

    from lienthong import config, dimensions, migrations, warehouse

    if warehouse.is_embedded():
        admin = sa.create_engine(warehouse.sqlalchemy_url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{config.embedded_database()}" WITH (FORCE)'))
        admin.dispose()
    else:
        engine = warehouse.engine()
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {', '.join(STAGE_SCHEMAS)}, marts CASCADE"))
            conn.execute(sa.text("DROP TABLE IF EXISTS public.alembic_version"))
    warehouse.dispose_engines()
    engine = warehouse.engine()
    migrations.upgrade(engine)
    dimensions.load_registry_dimensions(engine)
    yield engine
    warehouse.dispose_engines()


def empty_warehouse(engine) -> None:
    """No batches, records or deliveries left, identities restarted (registry dimensions kept)."""
    import sqlalchemy as sa

    with engine.begin() as conn:
        tables = [f"{schema}.{name}" for schema, name in conn.execute(sa.text(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:s)"), {"s": list(STAGE_SCHEMAS)})]
        tables = [t for t in tables if t not in REGISTRY_TABLES]
        conn.execute(sa.text(f"TRUNCATE {', '.join(sorted(tables))} RESTART IDENTITY CASCADE"))


@pytest.fixture
def clean_warehouse(warehouse_engine):
    """The session warehouse with no batches, records or deliveries (registry dimensions kept)."""
    empty_warehouse(warehouse_engine)
    return warehouse_engine



def with_packaged_registry(engine):
    """The packaged registry's dimensions reloaded: another module's test may have left a different registry in
    core.library. For modules that override ``clean_warehouse`` with it."""
    from lienthong import dimensions
    from lienthong.registry import PACKAGED_REGISTRY, load_registry

    dimensions.load_registry_dimensions(engine, load_registry(PACKAGED_REGISTRY))
    return engine


@pytest.fixture(scope="session")
def airflow_db(state_dir):
    """Airflow's SQLite metadata database, migrated once for the DAG tests."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    subprocess.run([str(airflow), "pools", "set", "lienthong_warehouse", "4", "lienthong tasks that write the warehouse"],
                   check=True, capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def demo_province(state_dir) -> dict:
    """The sample province at a small scale in the session's drop folders; returns its ground truth."""
    from lienthong import config
    from lienthong.demo import generate_province
    from lienthong.demo_run import library_specs
    from lienthong.registry import load_registry

    return generate_province(library_specs(load_registry()), config.drop_root(), scale=0.25, seed=7)


class SmtpInbox:
    """What a real SMTP server on loopback received: (mail_from, recipients, parsed message) per mail."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        import email
        import email.policy

        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch):
    """aiosmtpd on a free loopback port, reachable as the Airflow SMTP connection lienthong sends through."""
    import json
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = SmtpInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("LIENTHONG_SMTP_CONN_ID", "smtp_test_lienthong")
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_TEST_LIENTHONG", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 10}}))
    yield inbox
    controller.stop()
