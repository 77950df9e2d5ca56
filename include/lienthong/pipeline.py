"""The task bodies of the DAGs: small functions returning small JSON-safe summaries for XCom."""
from __future__ import annotations

import logging

from lienthong import dimensions, migrations, warehouse
from lienthong.ingest import IngestError, ingest_library
from lienthong.registry import load_registry
from lienthong.summary import province_summary

log = logging.getLogger(__name__)


def prepare_warehouse() -> list[str]:
    """Migrate, load the registry dimensions, and name the libraries to ingest today."""
    engine = warehouse.engine()
    migrations.upgrade(engine)
    registry = load_registry()
    dimensions.load_registry_dimensions(engine, registry)
    return [library.code for library in registry.active_libraries()]


def ingest_one(library_code: str) -> dict:
    """Ingest one library; a failed export fails this task only, with the reason in the message."""
    result = ingest_library(library_code)
    summary = result.to_dict()
    log.info("%s: %s read=%s loaded=%s quarantined=%s unreadable=%s", library_code, result.status,
             result.read, result.loaded, result.quarantined, result.unreadable)
    if result.status == "failed":
        raise IngestError(result.message)
    return summary


def summarise() -> dict:
    summary = province_summary(warehouse.engine())
    log.info("province: %s", summary)
    return summary
