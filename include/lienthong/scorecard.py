"""Scorecards: how complete and valid each library's records are, its tier, and the group and province roll-ups.

A scorecard is written for every batch (quality.scorecard + quality.scorecard_element), so a library's trend
is the sequence of its batches. The quality_review DAG refreshes the roll-ups (one set of rows per
refresh in quality.scorecard_rollup), rebuilds the GX Data Docs and writes each group's fix list.

Tiers, in the spirit of Europeana's metadata tiers (docs/quality.md): the weakest mandatory element and the
share of valid records decide.
"""
from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from lienthong import config
from lienthong.registry import Registry
from lienthong.validate import ELEMENTS

log = logging.getLogger(__name__)

#: (tier, least completeness of every mandatory element, least validity); below C is D.
TIERS = (("A", 0.95, 0.98), ("B", 0.85, 0.90), ("C", 0.70, 0.75))
TIER_ORDER = {"A": 0, "B": 1, "C": 2, "D": 3}
TIER_VI = {
    "A": "A: đạt chuẩn liên thông",
    "B": "B: khá, còn thiếu sót nhỏ",
    "C": "C: cần bổ sung nhiều",
    "D": "D: chưa đạt, cần rà soát lại",
}
ELEMENT_VI = {
    "title": "Nhan đề", "author": "Tác giả", "publication": "Thông tin xuất bản", "keywords": "Từ khóa",
    "subject": "Chủ đề", "accession_number": "Số ĐKCB", "call_number": "Mã xếp giá",
}


def quality_dir() -> Path:
    """``$LIENTHONG_QUALITY_DIR``, else ``var/quality``: Data Docs and fix lists."""
    value = os.environ.get("LIENTHONG_QUALITY_DIR")
    return Path(value).resolve() if value else config.var_dir() / "quality"


def tier(completeness_min: float, validity: float, records: int) -> str:
    if records <= 0:
        return "D"
    for name, least_completeness, least_validity in TIERS:
        if completeness_min >= least_completeness and validity >= least_validity:
            return name
    return "D"


def _ratios(elements: Mapping[str, Sequence[int]]) -> dict[str, float]:
    return {name: (elements[name][0] / elements[name][1] if elements.get(name) and elements[name][1] else 1.0)
            for name in ELEMENTS}


@dataclass
class Score:
    records: int
    valid: int
    elements: dict[str, list[int]]

    @property
    def completeness(self) -> dict[str, float]:
        return _ratios(self.elements)

    @property
    def completeness_min(self) -> float:
        return min(self.completeness.values()) if self.elements else 1.0

    @property
    def validity(self) -> float:
        return self.valid / self.records if self.records else 1.0

    @property
    def tier(self) -> str:
        return tier(self.completeness_min, self.validity, self.records)


def write_batch_scorecard(conn: sa.Connection, batch_id: int, library_code: str, *, records: int, complete: int,
                          valid: int, errors: int, warnings: int, accepted: int,
                          elements: Mapping[str, Sequence[int]]) -> str:
    """The scorecard of one batch (called inside the ingest transaction); returns its tier."""
    score = Score(records, valid, {k: list(v) for k, v in elements.items()})
    conn.execute(
        sa.text("""INSERT INTO quality.scorecard (batch_id, library_code, records, complete_records, valid_records,
                                                  error_records, warning_records, accepted_failures,
                                                  completeness_min, validity, tier)
                   VALUES (:b, :l, :records, :complete, :valid, :errors, :warnings, :accepted, :cmin, :validity,
                           :tier)"""),
        {"b": batch_id, "l": library_code, "records": records, "complete": complete, "valid": valid,
         "errors": errors, "warnings": warnings, "accepted": accepted, "cmin": round(score.completeness_min, 6),
         "validity": round(score.validity, 6), "tier": score.tier})
    conn.execute(
        sa.text("""INSERT INTO quality.scorecard_element (batch_id, element, present, evaluated)
                   VALUES (:b, :element, :present, :evaluated)"""),
        [{"b": batch_id, "element": name, "present": int(elements[name][0]), "evaluated": int(elements[name][1])}
         for name in ELEMENTS if name in elements])
    return score.tier


_LATEST = """
SELECT DISTINCT ON (s.library_code) s.library_code, s.batch_id, s.records, s.valid_records, s.tier
FROM quality.scorecard s ORDER BY s.library_code, s.batch_id DESC
"""


def latest_scores(conn: sa.Connection) -> dict[str, tuple[int, Score, str]]:
    """library → (batch_id, score, tier as stored) of its newest scored batch."""
    latest = conn.execute(sa.text(_LATEST)).mappings().all()
    elements: dict[int, dict[str, list[int]]] = {}
    if latest:
        for row in conn.execute(
                sa.text("SELECT batch_id, element, present, evaluated FROM quality.scorecard_element "
                        "WHERE batch_id = ANY(:ids)"), {"ids": [r["batch_id"] for r in latest]}):
            elements.setdefault(row.batch_id, {})[row.element] = [row.present, row.evaluated]
    return {r["library_code"]: (r["batch_id"], Score(r["records"], r["valid_records"],
                                                     elements.get(r["batch_id"], {})), r["tier"])
            for r in latest}


def _pool(scores: Sequence[Score]) -> Score:
    elements = {name: [sum(s.elements.get(name, [0, 0])[0] for s in scores),
                       sum(s.elements.get(name, [0, 0])[1] for s in scores)] for name in ELEMENTS}
    return Score(sum(s.records for s in scores), sum(s.valid for s in scores), elements)


def tier_drops(conn: sa.Connection) -> list[dict]:
    """Libraries whose newest scorecard has a worse tier than the one before it."""
    rows = conn.execute(sa.text(
        """SELECT library_code, batch_id, tier, previous_tier FROM (
               SELECT library_code, batch_id, tier,
                      lag(tier) OVER (PARTITION BY library_code ORDER BY batch_id) AS previous_tier,
                      row_number() OVER (PARTITION BY library_code ORDER BY batch_id DESC) AS newest
               FROM quality.scorecard) s
           WHERE newest = 1 AND previous_tier IS NOT NULL""")).mappings().all()
    return [dict(r) for r in rows if TIER_ORDER[r["tier"]] > TIER_ORDER[r["previous_tier"]]]


def refresh(engine: sa.Engine, registry: Registry) -> dict:
    """Write one set of library, group and province roll-ups from each library's newest scorecard."""
    with engine.begin() as conn:
        latest = latest_scores(conn)
        refresh_id = conn.execute(sa.text("SELECT nextval('quality.scorecard_refresh_seq')")).scalar_one()
        rows = []

        def add(level: str, code: str, scores: list[Score], libraries: int) -> dict:
            pooled = _pool(scores)
            row = {"refresh_id": refresh_id, "level": level, "code": code, "libraries": libraries,
                   "records": pooled.records,
                   "completeness": json.dumps({k: round(v, 6) for k, v in pooled.completeness.items()}),
                   "completeness_min": round(pooled.completeness_min, 6), "validity": round(pooled.validity, 6),
                   "tier": pooled.tier}
            rows.append(row)
            return row

        for code, (_, score, _) in sorted(latest.items()):
            add("library", code, [score], 1)
        groups = {}
        for group in registry.active_groups():
            members = [latest[m][1] for m in group.member_codes() if m in latest]
            groups[group.code] = add("group", group.code, members, len(members))["tier"]
        province = add("province", "PROVINCE", [s for _, s, _ in latest.values()], len(latest))
        if rows:
            conn.execute(sa.text(
                """INSERT INTO quality.scorecard_rollup (refresh_id, level, code, libraries, records, completeness,
                                                         completeness_min, validity, tier)
                   VALUES (:refresh_id, :level, :code, :libraries, :records, CAST(:completeness AS jsonb),
                           :completeness_min, :validity, :tier)"""), rows)
        drops = tier_drops(conn)
    tiers: dict[str, int] = {}
    for _, _, stored in latest.values():
        tiers[stored] = tiers.get(stored, 0) + 1
    return {"refresh_id": int(refresh_id), "libraries": len(latest), "groups": len(groups),
            "library_tiers": dict(sorted(tiers.items())), "group_tiers": groups,
            "province": {"records": province["records"], "completeness_min": province["completeness_min"],
                         "validity": province["validity"], "tier": province["tier"]},
            "tier_drops": drops}


def library_scorecards(engine: sa.Engine, libraries: Sequence[str] | None = None) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            """SELECT * FROM marts.library_scorecard
               WHERE CAST(:l AS text[]) IS NULL OR library_code = ANY(CAST(:l AS text[]))
               ORDER BY library_code"""), {"l": None if libraries is None else list(libraries)}).mappings().all()
    out = []
    for row in rows:
        item = {k: (float(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, (int, bool)) else v)
                for k, v in dict(row).items()}
        item["computed_at"] = row["computed_at"].isoformat()
        out.append(item)
    return out


# ---------------------------------------------------------------- Data Docs


def _suite_result(data: dict):
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    results = [ExpectationValidationResult(success=entry["success"], result=entry.get("result") or {},
                                           expectation_config=ExpectationConfiguration(**entry["expectation_config"]),
                                           meta=entry.get("meta") or {}, exception_info=entry.get("exception_info"))
               for entry in data.get("results") or []]
    return ExpectationSuiteValidationResult(success=data["success"], results=results, suite_name=data["suite_name"],
                                            statistics=data.get("statistics") or {}, meta=data.get("meta") or {},
                                            suite_parameters=data.get("suite_parameters") or {})


def build_docs(engine: sa.Engine, out_dir: Path | None = None, *, batches_per_library: int = 1) -> dict:
    """GX Data Docs (an ephemeral context with a filesystem site at ``out_dir``) of each library's newest
    batches, from the GX results stored at ingest, plus ``scorecards.html`` for stewards."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    from lienthong.validate import BATCH_SUITE, RECORD_SUITES, load_suite

    out_dir = Path(out_dir or quality_dir() / "data_docs").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)
    context.add_data_docs_site(site_name="lienthong", site_config={
        "class_name": "SiteBuilder", "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
    for name in (*RECORD_SUITES, BATCH_SUITE):
        context.suites.add(load_suite(name))
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            """WITH ranked AS (
                   SELECT b.batch_id, b.library_code, b.started_at,
                          dense_rank() OVER (PARTITION BY b.library_code ORDER BY b.batch_id DESC) AS k
                   FROM core.batch b WHERE EXISTS (SELECT 1 FROM quality.gx_result g WHERE g.batch_id = b.batch_id))
               SELECT g.batch_id, g.library_code, g.suite, g.chunk, g.result, r.started_at
               FROM ranked r JOIN quality.gx_result g USING (batch_id)
               WHERE r.k <= :n ORDER BY g.batch_id, g.suite, g.chunk"""), {"n": batches_per_library}).mappings().all()
    for row in rows:
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=row["suite"]),
            run_id=RunIdentifier(run_name=f"batch-{row['batch_id']}-chunk-{row['chunk']}",
                                 run_time=row["started_at"]),
            batch_identifier=row["library_code"])
        context.validation_results_store.set(key, _suite_result(row["result"]))
    urls = context.build_data_docs(site_names=["lienthong"])
    scorecards = _write_scorecard_page(engine, out_dir / "scorecards.html")
    return {"out": str(out_dir), "index": str(out_dir / "index.html"), "validation_results": len(rows),
            "batches": len({r["batch_id"] for r in rows}), "scorecards": str(scorecards),
            "site_url": urls.get("lienthong")}


def _write_scorecard_page(engine: sa.Engine, path: Path) -> Path:
    """A plain static page of every library's newest scorecard, readable without GX."""
    cards = library_scorecards(engine)
    head = "".join(f"<th>{html.escape(ELEMENT_VI[e])}</th>" for e in ELEMENTS)
    body = []
    for card in cards:
        cells = "".join(f"<td>{'' if card.get(e) is None else f'{card[e]:.1%}'}</td>" for e in ELEMENTS)
        body.append(f"<tr><td>{html.escape(card['library_code'])}</td><td>{html.escape(card['library_name'])}</td>"
                    f"<td>{card['records']}</td>{cells}<td>{card['validity']:.1%}</td>"
                    f"<td title=\"{html.escape(TIER_VI[card['tier']])}\">{card['tier']}</td></tr>")
    thresholds = "; ".join(f"{t}: mọi yếu tố ≥ {c:.0%}, hợp lệ ≥ {v:.0%}" for t, c, v in TIERS)
    page = (f"<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>Bảng điểm chất lượng biểu ghi</title>"
            f"<body><h1>Bảng điểm chất lượng biểu ghi</h1><p>Hạng: {html.escape(thresholds)}; dưới C là D.</p>"
            f"<table border=\"1\"><tr><th>Mã</th><th>Thư viện</th><th>Biểu ghi</th>{head}<th>Hợp lệ</th>"
            f"<th>Hạng</th></tr>{''.join(body)}</table><p><a href=\"index.html\">Great Expectations Data Docs</a>"
            f"</p></body></html>")
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------- fix lists per group


def write_group_fixlists(engine: sa.Engine, registry: Registry, out_dir: Path | None = None) -> dict:
    """One workbook per active group in ``out_dir`` (default var/quality/fixlists), a sheet per member library."""
    from lienthong import quality

    out_dir = Path(out_dir or quality_dir() / "fixlists")
    written = {}
    rows = quality.problems(engine)
    by_library: dict[str, list[dict]] = {}
    for row in rows:
        by_library.setdefault(row["library_code"], []).append(row)
    for group in registry.active_groups():
        sheets = {code: quality.fix_rows(by_library.get(code, [])) for code in group.member_codes()}
        path = quality.write_fixlist(sheets, out_dir / f"{group.code}.xlsx",
                                     note=f"Nhóm {group.name}; thư viện chủ trì {group.lead_library}")
        written[group.code] = {"file": str(path), "problems": sum(len(v) for v in sheets.values())}
    return {"out": str(out_dir), "groups": written, "problems": len(rows)}


# ---------------------------------------------------------------- task bodies of the quality_review DAG


def review_refresh() -> dict:
    """Roll-ups of the newest scorecards; small JSON for XCom."""
    from lienthong import warehouse
    from lienthong.registry import load_registry

    summary = refresh(warehouse.engine(), load_registry())
    summary["tier_drops"] = [{k: (int(v) if k == "batch_id" else v) for k, v in d.items()}
                             for d in summary["tier_drops"]]
    log.info("scorecards refreshed: %s", summary)
    return summary


def review_docs() -> dict:
    from lienthong import warehouse

    result = build_docs(warehouse.engine())
    return {k: result[k] for k in ("index", "batches", "validation_results", "scorecards")}


def review_fixlists() -> dict:
    from lienthong import warehouse
    from lienthong.registry import load_registry

    result = write_group_fixlists(warehouse.engine(), load_registry())
    return {"out": result["out"], "problems": result["problems"],
            "groups": {code: entry["problems"] for code, entry in result["groups"].items()}}
