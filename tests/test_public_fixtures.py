"""Every public MARC fixture (many broken on purpose) goes through `lienthong ingest --json` without a crash,
with read = loaded + quarantined + unreadable and a reason for every unreadable record."""
from __future__ import annotations

import json

import pytest

from lienthong.cli import main
from tests.conftest import MARC_PUBLIC

FIXTURES = sorted(p for p in MARC_PUBLIC.rglob("*") if p.is_file() and p.suffix in {".mrc", ".marc", ".xml"})


def test_fixtures_are_present():
    assert len(FIXTURES) >= 60, f"expected the public fixtures in {MARC_PUBLIC}"


@pytest.mark.parametrize("path", FIXTURES, ids=[p.relative_to(MARC_PUBLIC).as_posix() for p in FIXTURES])
def test_public_fixture_ingests_with_conservation(path, clean_warehouse, capsys):
    code = main(["ingest", "--library", "TV-TINH", "--file", str(path), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    assert result["status"] in {"applied", "held", "failed"}
    assert result["read"] == result["loaded"] + result["quarantined"] + result["unreadable"]
    assert result["conserved"] is True
    if result["status"] == "failed":
        assert path.name in result["message"]
    if result["unreadable"]:
        assert result["unreadable_reasons"] and all(result["unreadable_reasons"])
