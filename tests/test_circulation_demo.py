"""The sample province's circulation through the pipeline: the marts equal the generator's own figures."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from lienthong.circulation import KINDS, ingest_circulation
from lienthong.privacy import Pseudonymiser
from lienthong.registry import load_registry
from tests.conftest import REGISTRY_TABLES, STAGE_SCHEMAS

pytestmark = pytest.mark.integration

DISTRICT = "Đà Bắc"  # its public library rotates books to its schools; every school lends, requests and issues cards


def _truncate(engine) -> None:
    with engine.begin() as conn:
        tables = [f"{schema}.{name}" for schema, name in conn.execute(sa.text(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:s)"), {"s": list(STAGE_SCHEMAS)})]
        conn.execute(sa.text(f"TRUNCATE {', '.join(sorted(set(tables) - REGISTRY_TABLES))} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="module")
def district(warehouse_engine, demo_province):
    """The district's libraries ingested (TV-TINH's catalogue first: its "Kho mượn" may be lent out)."""
    from lienthong.ingest import ingest_library

    _truncate(warehouse_engine)
    registry = load_registry()
    codes = [lib.code for lib in registry.active_libraries() if lib.admin_unit == DISTRICT]
    assert ingest_library("TV-TINH", registry=registry, engine=warehouse_engine).status == "applied"
    pseudonymiser = Pseudonymiser(b"demo-province-key-0123456789abcdef")
    results = [r for code in codes for r in ingest_circulation(code, registry=registry, engine=warehouse_engine,
                                                                pseudonymiser=pseudonymiser)]
    yield codes, results, demo_province["circulation"]
    _truncate(warehouse_engine)


def query(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).mappings().all()


def test_every_export_applied_and_conserved(district):
    codes, results, truth = district
    assert {r.library for r in results} == set(codes)
    for result in results:
        assert result.status == "applied" and result.conserved, result
        entry = truth["libraries"][result.library]
        assert result.read == entry["rows"][result.kind], result
        assert result.quarantined == entry["quarantined"].get(result.kind, 0), result
        assert result.unreadable == 0
    for code in codes:
        assert {r.kind for r in results if r.library == code} == set(truth["libraries"][code]["files"])
    assert {r.kind for r in results} == set(KINDS)
    assert sum(r.quarantined for r in results) >= 2


def _summary_row(row) -> dict:
    out = {k: row[k] for k in ("loans", "active_readers", "ill_requests", "ill_filled", "cards_issued",
                               "rotated_items")}
    median = row["ill_median_turnaround_days"]
    out["ill_median_turnaround_days"] = None if median is None else str(Decimal(median).quantize(Decimal("0.01")))
    return out


def test_period_summary_equals_the_ground_truth(district, warehouse_engine):
    codes, _, truth = district
    window = truth["window"]
    summary = {r["library_code"]: r for r in query(
        warehouse_engine, "SELECT * FROM marts.circulation_summary(:s, :e)", s=window["start"], e=window["end"])}
    for code in codes:
        expected = {k: truth["libraries"][code][k] for k in _summary_row(summary[code])}
        assert _summary_row(summary[code]) == expected, code
    assert sum(summary[c]["loans"] for c in codes) > 100 and sum(summary[c]["rotated_items"] for c in codes) > 0

    for code in codes:  # month by month, as the period reports slice it
        for month, expected in truth["libraries"][code]["by_month"].items():
            first = dt.date.fromisoformat(f"{month}-01")
            last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
            (row,) = query(warehouse_engine, "SELECT * FROM marts.circulation_summary(:s, :e) WHERE library_code = :l",
                           s=max(first, dt.date.fromisoformat(window["start"])), e=last, l=code)
            assert _summary_row(row) == expected, (code, month)


def test_loan_policy_flags_equal_the_ground_truth(district, warehouse_engine):
    codes, _, truth = district
    rows = {r["library_code"]: r for r in query(warehouse_engine, """
        SELECT library_code, sum(renewals) AS renewals, sum(returned) AS returned, sum(overdue) AS overdue,
               sum(over_limit) AS over_limit, sum(loans_of_rotated_items) AS rotated
        FROM marts.circulation_loans GROUP BY library_code""")}
    nothing = {"renewals": 0, "returned": 0, "overdue": 0, "over_limit": 0, "rotated": 0}
    for code in codes:
        t = truth["libraries"][code]
        got = rows.get(code, nothing)
        assert (got["renewals"], got["returned"], got["overdue"], got["over_limit"], got["rotated"]) == (
            t["renewals"], t["returned"], t["overdue_loans"], t["over_limit_loans"], t["loans_of_rotated_items"]), code
    assert sum(truth["libraries"][c]["overdue_loans"] for c in codes) > 0


def test_ill_pairs_channels_and_flags_equal_the_ground_truth(district, warehouse_engine):
    codes, _, truth = district
    pairs = query(warehouse_engine, """
        SELECT requesting_library, owning_library, sum(requests) AS requests, sum(filled) AS filled,
               sum(refused) AS refused, sum(cancelled) AS cancelled
        FROM marts.ill_requests GROUP BY requesting_library, owning_library""")
    got = {f"{p['requesting_library']}>{p['owning_library']}":
           (p["requests"], p["filled"], p["refused"], p["cancelled"]) for p in pairs}
    expected = {pair: (v["requests"], v["filled"], v["refused"], v["cancelled"])
                for pair, v in truth["ill_pairs"].items() if pair.split(">")[0] in codes}
    assert got == expected
    (stored,) = query(warehouse_engine, "SELECT count(*) AS n FROM circulation.ill_request")
    assert stored["n"] == sum(v[0] for v in expected.values()) > 0
    by_channel = {c["channel"]: c for c in query(warehouse_engine, "SELECT * FROM marts.ill_by_channel")}
    assert sum(c["requests"] for c in by_channel.values()) == stored["n"]
    assert set(by_channel) <= {"home_library", "at_owner", "post", "online"}


def test_ill_access_level_flags_equal_the_ground_truth(district, warehouse_engine):
    """Flags depend on the owner's registry access level and the copy's collection (TV-TINH's catalogue)."""
    from lienthong.demo_circulation import NOT_LENDABLE_CHANNELS

    from lienthong.circulation import FORBIDDEN_CHANNELS

    assert NOT_LENDABLE_CHANNELS == FORBIDDEN_CHANNELS
    codes, _, truth = district
    (row,) = query(warehouse_engine, "SELECT count(*) FILTER (WHERE access_forbidden) AS forbidden, "
                                     "count(*) FILTER (WHERE overdue) AS overdue FROM circulation.ill_request")
    forbidden = sum(truth["libraries"][c].get("ill_access_forbidden", 0) for c in codes)
    overdue = sum(truth["libraries"][c].get("ill_overdue", 0) for c in codes)
    assert (row["forbidden"], row["overdue"]) == (forbidden, overdue)


def test_cards_where_used_and_rotation_equal_the_ground_truth(district, warehouse_engine):
    codes, _, truth = district
    use = {f"{u['issuing_library']}>{u['using_library']}": {"readers": u["readers"], "loans": u["loans"]}
           for u in query(warehouse_engine, "SELECT * FROM marts.card_use")}
    expected = {pair: v for pair, v in truth["card_use"].items()
                if pair.split(">")[0] in codes and pair.split(">")[1] in codes}
    assert use == expected
    assert any(a != b for a, b in (pair.split(">") for pair in use))  # some cards are used at another library
    assert all(u["all_within_validity"] for u in query(warehouse_engine, "SELECT * FROM marts.card_use"))
    cards = query(warehouse_engine, "SELECT issuing_library, sum(cards_issued) AS n FROM marts.reader_cards "
                                    "GROUP BY issuing_library")
    assert {c["issuing_library"]: c["n"] for c in cards} == {code: truth["libraries"][code]["cards"] for code in codes}

    rotation = {r["rotation_ref"]: r for r in query(warehouse_engine, "SELECT * FROM marts.rotation")}
    expected = {ref: v for ref, v in truth["rotation"].items() if v["from"] in codes}
    assert set(rotation) == set(expected) and expected
    for ref, v in expected.items():
        r = rotation[ref]
        assert (r["from_library"], r["to_library"], r["items_sent"], r["items_received"], r["items_returned"],
                r["loans_at_receiver"]) == (v["from"], v["to"], v["items_sent"], v["items_received"],
                                            v["items_returned"], v["loans_at_receiver"]), ref
