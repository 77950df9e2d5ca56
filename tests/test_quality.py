"""Record quality end to end on the real warehouse: row-level results, group rules, accepted exceptions,
fix lists, scorecards and Data Docs (real GX, real PostgreSQL, real files; nothing mocked)."""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from lienthong import scorecard
from lienthong.cli import main
from lienthong.ingest import ingest_library
from lienthong.registry import PACKAGED_REGISTRY, RegistryError, load_registry
from tests.conftest import with_packaged_registry
from tests.marc_builders import book as marc_book
from tests.marc_builders import write_marc

LIBRARY = "THPT-LUONGSON"
GROUP = "NLT-THPT-LUONGSON"
BAD_ISBN = "9786042096431"


@pytest.fixture
def clean_warehouse(clean_warehouse):
    """The conftest fixture, with the packaged registry's dimensions reloaded (see conftest)."""
    return with_packaged_registry(clean_warehouse)


def book(local_id: str, *args, **kwargs):
    """A test record whose copy has its own ĐKCB (the builder's default ĐKCB is shared)."""
    kwargs.setdefault("items", ((f"STK.{local_id}", "510 T406"),))
    return marc_book(local_id, *args, **kwargs)


def rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).mappings().all()


def run_cli(capsys, *argv) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in argv else out


def registry_with(tmp_path: Path, group: str, rules_line: str) -> Path:
    """A copy of the packaged registry with ``rules_line`` added to one group (YAML text edit)."""
    text = PACKAGED_REGISTRY.read_text(encoding="utf-8")
    anchor = f"  - code: {group}\n"
    assert text.count(anchor) == 1
    path = tmp_path / "registry.yaml"
    path.write_text(text.replace(anchor, anchor + f"    rules: {rules_line}\n"), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- row level


def test_row_level_results_with_conservation(clean_warehouse, tmp_path):
    records = [book(f"R{i}", f"Sách số {i}") for i in range(6)]
    records += [
        book("NOTITLE", None),                                                  # error
        book("BADISBN", "Tin học 10", isbn=BAD_ISBN),                           # warning
        book("DUP", "Vật lí 10", items=(("STK.R1", "530 V124"),)),              # R1's ĐKCB, two chunks later
        book("BBK", "Địa lí 10", call_number="91(V)", items=(("STK.BBK", "91(V)"),)),  # not Dewey
    ]
    result = ingest_library(LIBRARY, write_marc(tmp_path / "export.mrc", records), chunk_size=3)
    assert result.status == "applied" and result.conserved
    assert (result.read, result.loaded, result.quarantined) == (10, 8, 2)
    assert result.quarantine_reasons == {"missing_title": 1, "duplicate_accession_number": 1}
    assert result.warning_reasons == {"invalid_isbn": 1, "call_number_scheme": 1}

    failures = rows(clean_warehouse, "SELECT * FROM quality.check_failure ORDER BY record_index, rule")
    found = {(f["local_id"], f["rule"], f["field"], f["value"], f["severity"]) for f in failures}
    assert found == {
        ("NOTITLE", "missing_title", "title", None, "error"),
        ("BADISBN", "invalid_isbn", "isbns", BAD_ISBN, "warning"),
        ("DUP", "duplicate_accession_number", "accession_numbers", "STK.R1", "error"),
        ("BBK", "call_number_scheme", "call_number", "91(V)", "warning"),
    }
    assert {f["batch_id"] for f in failures} == {result.batch_id}
    assert {f["library_code"] for f in failures} == {LIBRARY}
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["record_hash"]) for f in failures)
    assert all(f["default_severity"] == f["severity"] and not f["accepted"] for f in failures)
    assert all("ĐKCB" in f["message_vi"] or f["rule"] != "duplicate_accession_number" for f in failures)

    quarantined = rows(clean_warehouse, "SELECT local_id, reasons FROM quality.quarantine ORDER BY local_id")
    assert [(q["local_id"], q["reasons"]) for q in quarantined] == [
        ("DUP", ["duplicate_accession_number"]), ("NOTITLE", ["missing_title"])]
    batch = rows(clean_warehouse, "SELECT * FROM core.batch WHERE batch_id = :b", b=result.batch_id)[0]
    assert batch["records_read"] == batch["records_loaded"] + batch["records_quarantined"] + batch["records_unreadable"]

    checks = rows(clean_warehouse, "SELECT rule, field, success, severity FROM quality.batch_check")
    assert len(checks) == 8 and all(c["success"] for c in checks)
    suites = rows(clean_warehouse, "SELECT suite, count(*) AS n FROM quality.gx_result GROUP BY suite ORDER BY suite")
    assert [(s["suite"], s["n"]) for s in suites] == [
        ("batch_level", 1), ("mandatory_elements", 4), ("record_validity", 4)]  # 4 chunks of 3

    card = rows(clean_warehouse, "SELECT * FROM marts.library_scorecard WHERE library_code = :l", l=LIBRARY)[0]
    assert (card["records"], card["complete_records"], card["error_records"], card["warning_records"]) == (10, 9, 2, 2)
    assert card["valid_records"] == 7  # BADISBN, DUP, BBK
    assert float(card["title"]) == pytest.approx(0.9) and float(card["author"]) == 1.0
    assert float(card["validity"]) == pytest.approx(0.7)
    assert card["tier"] == "D" and result.tier == "D"  # validity 70 % is below tier C's 75 %


def test_batch_count_drop_is_held_by_the_batch_suite(clean_warehouse, tmp_path):
    ingest_library(LIBRARY, write_marc(tmp_path / "full.mrc", [book(f"R{i}") for i in range(10)]))
    result = ingest_library(LIBRARY, write_marc(tmp_path / "small.mrc", [book("R1")]))
    assert result.status == "held" and result.batch_checks["record_count_drop:record_count"] is False
    check = rows(clean_warehouse, "SELECT observed, expected_min, success, severity FROM quality.batch_check "
                                  "WHERE batch_id = :b AND rule = 'record_count_drop'", b=result.batch_id)[0]
    assert (check["observed"], check["expected_min"], check["success"], check["severity"]) == (1, 5, False, "error")


# ------------------------------------------------------------------------------------------- group rules


def test_group_rules_tighten_the_province_defaults(clean_warehouse, tmp_path):
    export = write_marc(tmp_path / "export.mrc", [book("A"), book("NOAUTHOR", author=None)])
    default = ingest_library(LIBRARY, export)
    assert (default.loaded, default.quarantined) == (2, 0)
    assert default.warning_reasons == {"missing_author": 1}

    strict = load_registry(registry_with(tmp_path, GROUP, "{quality: {errors: [missing_author]}}"))
    export2 = write_marc(tmp_path / "export2.mrc", [book("A"), book("NOAUTHOR", "Toán 11", author=None)])
    tightened = ingest_library(LIBRARY, export2, registry=strict)
    assert (tightened.loaded, tightened.quarantined) == (1, 1)
    failure = rows(clean_warehouse, "SELECT severity, default_severity FROM quality.check_failure "
                                    "WHERE batch_id = :b", b=tightened.batch_id)[0]
    assert (failure["severity"], failure["default_severity"]) == ("error", "warning")


def test_registry_rejects_loosening_or_unknown_quality_rules(tmp_path):
    path = registry_with(tmp_path, GROUP, "{quality: {errors: [missing_autor, 7], min_completeness: 0.5, "
                                          "severity: low}}")
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    problems = caught.value.problems
    line = next(n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if "missing_autor" in text)
    assert any(p.startswith(f"registry.yaml:{line}: ") and ".rules.quality.errors[0]" in p
               and "did you mean 'missing_author'" in p for p in problems), problems
    assert any(".rules.quality.errors[1]" in p for p in problems)
    assert any(".rules.quality.min_completeness" in p and "0.8" in p for p in problems)
    assert any(".rules.quality.severity" in p and "unknown key" in p for p in problems)


# ------------------------------------------------------------------------------------------- exceptions


def _record_state(engine, local_id: str) -> dict:
    current = rows(engine, "SELECT record_hash FROM core.record WHERE library_code = :l AND local_id = :id "
                           "AND valid_to IS NULL", l=LIBRARY, id=local_id)
    last = rows(engine, "SELECT max(batch_id) AS b FROM core.batch WHERE library_code = :l", l=LIBRARY)[0]["b"]
    quarantined = rows(engine, "SELECT 1 FROM quality.quarantine WHERE batch_id = :b AND local_id = :id",
                       b=last, id=local_id)
    failure = rows(engine, "SELECT accepted, exception_id FROM quality.check_failure WHERE batch_id = :b "
                           "AND local_id = :id", b=last, id=local_id)
    return {"loaded": bool(current), "quarantined": bool(quarantined),
            "accepted": [f["accepted"] for f in failure], "exception": [f["exception_id"] for f in failure]}


def test_accepted_exception_lifecycle(clean_warehouse, tmp_path, capsys):
    v1 = write_marc(tmp_path / "v1.mrc", [book("A", None), book("B", "Sinh học 10"), book("C", "Hóa học 10")])
    first = ingest_library(LIBRARY, v1)
    assert first.quarantine_reasons == {"missing_title": 1}
    assert _record_state(clean_warehouse, "A") == {"loaded": False, "quarantined": True, "accepted": [False],
                                                   "exception": [None]}

    code, accepted = run_cli(capsys, "quality", "accept", "--record", f"{LIBRARY}:A", "--rule", "missing_title",
                             "--reason", "Tài liệu rời không có nhan đề, đã đối chiếu bản gốc", "--by", "cô Lan",
                             "--json")
    assert code == 0 and accepted["already_accepted"] is False and accepted["accepted_by"] == "cô Lan"
    code, again = run_cli(capsys, "quality", "accept", "--record", f"{LIBRARY}:A", "--rule", "missing_title",
                          "--reason", "lần hai", "--json")
    assert code == 0 and again["already_accepted"] and again["exception_id"] == accepted["exception_id"]

    # The same export again: checked again because an exception was accepted; the record now loads.
    rerun = ingest_library(LIBRARY, v1)
    assert rerun.status == "applied" and rerun.batch_id != first.batch_id and rerun.conserved
    assert (rerun.loaded, rerun.quarantined, rerun.accepted) == (3, 0, 1)
    state = _record_state(clean_warehouse, "A")
    assert state == {"loaded": True, "quarantined": False, "accepted": [True],
                     "exception": [accepted["exception_id"]]}
    assert ingest_library(LIBRARY, v1).status == "unchanged"

    # Another export where A is unchanged: the exception survives the re-import.
    v2 = write_marc(tmp_path / "v2.mrc", [book("A", None), book("B", "Sinh học 10 (tái bản)"), book("C", "Hóa học 10")])
    second = ingest_library(LIBRARY, v2)
    assert (second.loaded, second.quarantined, second.accepted) == (3, 0, 1)
    assert _record_state(clean_warehouse, "A")["accepted"] == [True]

    # A changes: the exception is re-opened, the record is quarantined again.
    v3 = write_marc(tmp_path / "v3.mrc", [book("A", None, author="Lê, Văn Bình"), book("B", "Sinh học 10 (tái bản)"),
                                          book("C", "Hóa học 10")])
    third = ingest_library(LIBRARY, v3)
    assert (third.loaded, third.quarantined, third.accepted) == (2, 1, 0)
    state = _record_state(clean_warehouse, "A")
    assert state["quarantined"] and state["accepted"] == [False]
    audit = rows(clean_warehouse, "SELECT * FROM quality.exception")
    assert len(audit) == 1
    assert audit[0]["status"] == "reopened" and audit[0]["reopened_by_batch"] == third.batch_id
    assert audit[0]["accepted_by"] == "cô Lan" and audit[0]["reason"].startswith("Tài liệu rời")
    assert audit[0]["accepted_at"] < audit[0]["reopened_at"]

    code, listed = run_cli(capsys, "quality", "exceptions", "--library", LIBRARY, "--json")
    assert code == 0 and [e["status"] for e in listed["exceptions"]] == ["reopened"]


def test_accept_refuses_what_it_cannot_accept(clean_warehouse, tmp_path, capsys):
    ingest_library(LIBRARY, write_marc(tmp_path / "e.mrc", [book("A", None), book("B")]))
    code, out = run_cli(capsys, "quality", "accept", "--record", f"{LIBRARY}:B", "--rule", "missing_title",
                        "--reason", "x", "--json")
    assert code == 1 and "không vi phạm" in out["error"]
    code, out = run_cli(capsys, "quality", "accept", "--record", "B", "--rule", "missing_title", "--reason", "x",
                        "--json")
    assert code == 1 and "THƯ_VIỆN:MÃ_BIỂU_GHI" in out["error"]
    code, out = run_cli(capsys, "quality", "accept", "--record", f"{LIBRARY}:A", "--rule", "missing_title",
                        "--reason", "   ", "--json")
    assert code == 1 and "lý do" in out["error"]
    code, out = run_cli(capsys, "quality", "accept", "--record", f"{LIBRARY}:A", "--rule", "missing_title",
                        "--reason", "đã kiểm tra", "--json")
    from lienthong.quality import current_user

    assert code == 0 and out["accepted_by"] == current_user()


def test_a_failed_run_does_not_hide_the_problems_to_fix(clean_warehouse, tmp_path, capsys):
    ingest_library(LIBRARY, write_marc(tmp_path / "e.mrc", [book("A", None), book("B")]))
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"\x00\x01 not MARC")
    assert ingest_library(LIBRARY, junk).status in {"failed", "held"}
    code, listed = run_cli(capsys, "quality", "list", "--library", LIBRARY, "--json")
    assert code == 0 and [(r["local_id"], r["rule"]) for r in listed["rows"]] == [("A", "missing_title")]


# ------------------------------------------------------------------------------------------- steward lists


# Titles a spreadsheet would run as formulas (leading tab and CR are stripped by normalise; see below).
DANGEROUS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1:A2)"]


def test_list_and_fixlist(clean_warehouse, tmp_path, capsys):
    records = [book(f"X{i}", title, keywords=()) for i, title in enumerate(DANGEROUS)]
    records.append(book("NOTITLE", None))
    ingest_library(LIBRARY, write_marc(tmp_path / "export.mrc", records))

    code, listed = run_cli(capsys, "quality", "list", "--library", LIBRARY, "--json")
    assert code == 0 and listed["problems"] == len(DANGEROUS) + 1
    assert listed["by_rule"] == {"missing_keywords": len(DANGEROUS), "missing_title": 1}
    assert [(c["rule"], c["field"]) for c in listed["batch_checks"]] == [("low_completeness", "keywords")]
    code, text = run_cli(capsys, "quality", "list", "--library", LIBRARY)
    assert code == 0 and "NOTITLE" in text and "Nhan đề (245$a)" in text and "low_completeness" in text
    code, by_group = run_cli(capsys, "quality", "list", "--group", GROUP, "--json")
    assert code == 0 and by_group["rows"] == listed["rows"]
    code, other = run_cli(capsys, "quality", "list", "--library", "THPT-CHVT", "--json")
    assert code == 0 and other["problems"] == 0
    code, bad = run_cli(capsys, "quality", "list", "--library", "NO-SUCH", "--json")
    assert code == 1 and "NO-SUCH" in bad["error"]

    out = tmp_path / "sua" / "danh-sach.xlsx"
    code, made = run_cli(capsys, "quality", "fixlist", "--library", LIBRARY, "--out", str(out), "--json")
    assert code == 0 and made["problems"] == len(DANGEROUS) + 1 and out.is_file()

    from openpyxl import load_workbook

    sheet = load_workbook(out)[LIBRARY]
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][:8] == ["Mã biểu ghi", "Nhan đề", "Số ĐKCB", "Trường", "Giá trị hiện tại", "Mức độ", "Lỗi",
                             "Cách sửa"]
    problems = [row for row in values[1:] if row[0] is not None and row[6] is not None]
    assert len(problems) == len(DANGEROUS) + 1
    by_id = {row[0]: row for row in problems}
    title_row = by_id["NOTITLE"]
    assert title_row[2] == "STK.NOTITLE" and title_row[3] == "Nhan đề (245$a)"
    assert title_row[5].startswith("Lỗi") and "nhan đề" in title_row[6] and "245$a" in title_row[7]
    assert by_id["X0"][6] == "Biểu ghi không có từ khóa." and by_id["X0"][3] == "Từ khóa (653$a)"
    for i, dangerous in enumerate(DANGEROUS):
        assert by_id[f"X{i}"][1] == "'" + dangerous  # inert: shown as text, never evaluated
    for row in sheet.iter_rows():
        for cell in row:
            assert cell.data_type != "f", cell.coordinate
            if isinstance(cell.value, str):
                assert not cell.value.startswith(("=", "+", "-", "@", "\t", "\r")), cell.coordinate


def test_fixlist_cells_starting_with_tab_or_cr_are_inert(tmp_path):
    from openpyxl import load_workbook

    from lienthong.quality import write_fixlist

    row = ("\tID", "\rTitle", "=1+1", "Nhan đề (245$a)", "@x", "Cảnh báo", "-x", "+x", "Trường THPT")
    path = write_fixlist({"THPT-X": [row]}, tmp_path / "f.xlsx")
    cells = list(load_workbook(path)["THPT-X"].iter_rows(min_row=2, max_row=2))[0]
    assert [c.value for c in cells] == ["'" + v if v[0] in "\t\r=@-+" else v for v in row]
    assert all(c.data_type == "s" for c in cells)


# ------------------------------------------------------------------------------------------- scorecards


def test_tier_thresholds():
    assert scorecard.tier(0.95, 0.98, 10) == "A"
    assert scorecard.tier(0.949, 0.99, 10) == "B"
    assert scorecard.tier(0.99, 0.97, 10) == "B"
    assert scorecard.tier(0.85, 0.90, 10) == "B"
    assert scorecard.tier(0.84, 0.99, 10) == "C"
    assert scorecard.tier(0.70, 0.75, 10) == "C"
    assert scorecard.tier(0.69, 1.0, 10) == "D"
    assert scorecard.tier(1.0, 1.0, 0) == "D"  # an empty export earns nothing


def test_scorecards_roll_up_and_trend(clean_warehouse, tmp_path, capsys):
    good = [book(f"G{i}", f"Sách {i}") for i in range(20)]
    ingest_library(LIBRARY, write_marc(tmp_path / "good.mrc", good))
    worse = [book(f"G{i}", f"Sách {i}", keywords=() if i < 4 else ("Toán học",)) for i in range(20)]
    ingest_library(LIBRARY, write_marc(tmp_path / "worse.mrc", worse))
    other = "THPT-CHVT"
    ingest_library(other, write_marc(tmp_path / "other.mrc", [book(f"O{i}", f"Văn {i}") for i in range(10)]))

    trend = rows(clean_warehouse, "SELECT tier, records FROM marts.scorecard_trend WHERE library_code = :l "
                                  "ORDER BY batch_id", l=LIBRARY)
    assert [(t["tier"], t["records"]) for t in trend] == [("A", 20), ("C", 20)]  # keywords 80 %

    code, out = run_cli(capsys, "quality", "scorecard", "--refresh", "--json")
    assert code == 0
    refreshed = out["refresh"]
    drops = refreshed["tier_drops"]
    assert [(d["library_code"], d["previous_tier"], d["tier"]) for d in drops] == [(LIBRARY, "A", "C")]
    assert refreshed["province"]["records"] == 30
    assert refreshed["province"]["completeness_min"] == pytest.approx(26 / 30)
    assert refreshed["province"]["tier"] == "B"
    cards = {c["library_code"]: c for c in out["scorecards"]}
    assert cards[LIBRARY]["keywords"] == pytest.approx(0.8) and cards[other]["tier"] == "A"

    rollup = rows(clean_warehouse, "SELECT level, code, libraries, records, tier FROM marts.quality_rollup "
                                   "WHERE level <> 'library' AND records > 0 ORDER BY level, code")
    groups = {r["code"]: r for r in rollup if r["level"] == "group"}
    assert groups[GROUP]["records"] == 20 and groups[GROUP]["tier"] == "C"
    assert [r["code"] for r in rollup if r["level"] == "province"] == ["PROVINCE"]
    second = scorecard.refresh(clean_warehouse, load_registry())
    assert second["refresh_id"] == refreshed["refresh_id"] + 1
    total = rows(clean_warehouse, "SELECT count(DISTINCT refresh_id) AS n FROM quality.scorecard_rollup")[0]["n"]
    assert total == 2


def test_data_docs_and_group_fixlists(clean_warehouse, tmp_path, capsys):
    ingest_library(LIBRARY, write_marc(tmp_path / "e.mrc", [book("A"), book("B", None), book("C", isbn=BAD_ISBN)]))
    docs = tmp_path / "docs"
    code, built = run_cli(capsys, "quality", "docs", "--out", str(docs), "--json")
    assert code == 0 and built["batches"] == 1 and built["validation_results"] == 3
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert "record_validity" in index and "mandatory_elements" in index
    pages = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.html"))
    assert any(p.startswith("validations/record_validity/") and p.endswith(f"/{LIBRARY}.html") for p in pages)
    assert any(p.startswith("expectations/") for p in pages)
    validity_page = next(p for p in docs.rglob("*.html") if "validations/record_validity" in p.as_posix())
    assert "isbns_invalid" in validity_page.read_text(encoding="utf-8")
    page = (docs / "scorecards.html").read_text(encoding="utf-8")
    assert LIBRARY in page and "Bảng điểm" in page

    written = scorecard.write_group_fixlists(clean_warehouse, load_registry(), tmp_path / "fix")
    assert written["groups"][GROUP]["problems"] == 2

    from openpyxl import load_workbook

    book_ = load_workbook(written["groups"][GROUP]["file"])
    assert LIBRARY in book_.sheetnames
    assert book_[LIBRARY].max_row >= 3


# ------------------------------------------------------------------------------------------- ground truth


# The generator's defects → the rules that must fire, each on exactly the records it names.
DEFECT_TO_RULES = {
    "missing_title": ("missing_title",),
    "missing_author": ("missing_author",),
    "missing_publication": ("missing_pub_place", "missing_publisher", "missing_pub_year"),
    "missing_keywords": ("missing_keywords",),
    "missing_subject": ("missing_subject",),
    "missing_accession_number": ("missing_accession_number",),
    "missing_call_number": ("missing_call_number",),
    "bad_isbn_checksum": ("invalid_isbn",),
    "duplicate_accession_number": ("duplicate_accession_number",),
}


def test_failures_per_rule_equal_the_injected_defects(clean_warehouse, demo_province):
    truth = demo_province["libraries"]
    chosen, covered = [], set()
    for code in sorted(truth, key=lambda c: (-sum(bool(v) for v in truth[c]["defects"].values()), c)):
        if set(truth[code]["defects"]) - covered or len(chosen) < 4:
            gained = {rule for rule, ids in truth[code]["defects"].items() if ids} - covered
            if gained or len(chosen) < 4:
                chosen.append(code)
                covered |= gained
        if covered == set(DEFECT_TO_RULES) and len(chosen) >= 4:
            break
    assert covered == set(DEFECT_TO_RULES)

    for code in chosen:
        result = ingest_library(code)
        assert result.status == "applied" and result.conserved, result.to_dict()
        assert result.unreadable == 0
        found: dict[str, set[str]] = defaultdict(set)
        for f in rows(clean_warehouse, "SELECT rule, local_id FROM quality.check_failure WHERE batch_id = :b",
                      b=result.batch_id):
            found[f["rule"]].add(f["local_id"])
        expected: dict[str, set[str]] = defaultdict(set)
        for defect, ids in truth[code]["defects"].items():
            for rule in DEFECT_TO_RULES[defect]:
                expected[rule] |= set(ids)
        assert {r: ids for r, ids in found.items() if ids} == {r: ids for r, ids in expected.items() if ids}, code
        card = rows(clean_warehouse, "SELECT complete_records FROM quality.scorecard WHERE batch_id = :b",
                    b=result.batch_id)[0]
        assert card["complete_records"] == truth[code]["complete_records"]
