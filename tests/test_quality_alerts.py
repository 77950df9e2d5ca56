"""Lead libraries hear about a member's held export or tier drop by e-mail, once, through a real SMTP server
(the conftest's smtp_server)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from lienthong import quality_alerts
from lienthong.ingest import ingest_library
from lienthong.registry import load_registry
from tests.conftest import with_packaged_registry
from tests.marc_builders import book, write_marc


@pytest.fixture
def warehouse(clean_warehouse):
    return with_packaged_registry(clean_warehouse)


def _books(n: int):
    return [book(f"R{i}", f"Sách {i}", items=((f"STK.{i:05d}", "510 T406"),)) for i in range(n)]


def test_held_export_is_mailed_to_the_lead_library_once(warehouse, smtp_server, tmp_path):
    registry = load_registry()
    member = "THPT-NGUYENTRAI"
    group = registry.groups_of(member)[0]
    ingest_library(member, write_marc(tmp_path / "full.mrc", _books(10)), engine=warehouse)
    held = ingest_library(member, write_marc(tmp_path / "small.mrc", _books(2)), engine=warehouse)
    assert held.status == "held"

    result = quality_alerts.send(warehouse, registry)
    lead_address = registry.reporting.email_of(group.lead_library)
    assert [s["to"] for s in result["sent"]] == [lead_address]
    (_, recipients, message), = smtp_server.messages
    assert recipients == [lead_address]
    body = message.get_body(("html",)).get_content()
    assert member in body and "tạm giữ" in body and group.name in body
    assert "Chất lượng dữ liệu nhóm" in message["subject"]

    assert quality_alerts.send(warehouse, registry) == {"sent": [], "pending": 0}  # once only
    assert len(smtp_server.messages) == 1
    with warehouse.connect() as conn:
        kind, batch = conn.execute(sa.text("SELECT kind, batch_id FROM quality.alert")).one()
    assert (kind, batch) == ("held_batch", held.batch_id)


def test_without_an_smtp_connection_alerts_wait(warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("LIENTHONG_SMTP_CONN_ID", "smtp_nowhere_alerts")
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_NOWHERE_ALERTS", raising=False)
    member = "THPT-NGUYENTRAI"
    ingest_library(member, write_marc(tmp_path / "full.mrc", _books(10)), engine=warehouse)
    ingest_library(member, write_marc(tmp_path / "small.mrc", _books(2)), engine=warehouse)
    result = quality_alerts.send(warehouse, load_registry())
    assert result["sent"] == [] and result["pending"] == 1
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM quality.alert")).scalar_one() == 0
