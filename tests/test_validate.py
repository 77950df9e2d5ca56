"""validate.py: the mandatory-element suite run with real Great Expectations (no mocks)."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lienthong import validate as v
from lienthong.model import CanonicalRecord, Item

PROJECT = Path(__file__).resolve().parents[1]
SUITE_FILE = PROJECT / "expectations" / "mandatory_elements.json"

ERROR_RULES = {"missing_title", "missing_accession_number", "missing_call_number"}
WARNING_RULES = {
    "missing_author", "missing_pub_place", "missing_publisher", "missing_pub_year",
    "missing_keywords", "missing_subject",
}


def complete(index: int, **changes) -> CanonicalRecord:
    """A record with all seven mandatory elements; `changes` removes or alters some."""
    values = dict(
        library_code="THCS-DABAC",
        local_id=f"BIB{index:04d}",
        record_index=index,
        title="Dế Mèn phiêu lưu ký",
        author="Tô Hoài",
        pub_place="Hà Nội",
        publisher="Kim Đồng",
        pub_year="2019",
        keywords=["Truyện", "Thiếu nhi"],
        subjects=["Văn học thiếu nhi"],
        call_number=None,
        items=[
            Item(accession_number=f"STK.{index:05d}", call_number="8(V)23 / T450H", item_type="STK"),
            Item(accession_number=f"STK.{index:05d}b", call_number="8(V)23 / T450H", item_type="STK"),
        ],
    )
    values.update(changes)
    return CanonicalRecord(**values)


def batch() -> list[CanonicalRecord]:
    return [
        complete(0),
        complete(1, title=None),
        complete(2, author=None),
        complete(3, pub_place=None),
        complete(4, publisher=None),
        complete(5, pub_year=None),
        complete(6, keywords=[]),
        complete(7, subjects=[]),
        complete(8, items=[Item(accession_number=None, call_number="8(V)23"), Item(accession_number="  ")]),
        complete(9, call_number=None, items=[Item(accession_number="STK.00009", call_number=None)]),
        # SGK register line: a quantity instead of ĐKCB, no items; the call number is record-level.
        complete(10, title="Toán 6 - Tập 1", quantity=40, items=[], call_number="51 / T406"),
        complete(11, title="   \t "),  # blank-only title, normalised to None
        complete(12, local_id="", keywords=["  ", ""], call_number="895.922 / T450H", items=[
            Item(accession_number="STK.00012", call_number=None),
        ]),
    ]


EXPECTED = {
    "0": set(),
    "1": {("missing_title", "title", "error")},
    "2": {("missing_author", "author", "warning")},
    "3": {("missing_pub_place", "pub_place", "warning")},
    "4": {("missing_publisher", "publisher", "warning")},
    "5": {("missing_pub_year", "pub_year", "warning")},
    "6": {("missing_keywords", "keywords", "warning")},
    "7": {("missing_subject", "subjects", "warning")},
    "8": {("missing_accession_number", "accession_numbers", "error")},
    "9": {("missing_call_number", "call_number", "error")},
    "10": set(),
    "11": {("missing_title", "title", "error")},
    "12": {("missing_keywords", "keywords", "warning")},
}


def failure_sets(result: v.BatchValidation) -> dict[str, set[tuple[str, str, str]]]:
    found: dict[str, set] = {}
    for f in result.failures:
        found.setdefault(f.record_key, set()).add((f.rule, f.field, f.severity))
    return found


def assert_plain_json(value) -> None:
    """Only dict/list/str/int/float(finite)/bool/None, as json.dumps(allow_nan=False) needs."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))
        if type(value) is float:
            assert math.isfinite(value)


@pytest.fixture(scope="module")
def result() -> v.BatchValidation:
    return v.validate_batch(batch())


# ------------------------------------------------------------------------------------------- the suite


def test_suite_loads_with_meta_contract():
    suite = v.load_suite()
    assert suite.name == "mandatory_elements"
    metas = [e.meta for e in suite.expectations]
    assert {m["rule"] for m in metas} == ERROR_RULES | WARNING_RULES
    for m in metas:
        assert set(m) >= {"rule", "field", "severity", "message_vi", "fix_vi"}
        assert m["severity"] == ("error" if m["rule"] in ERROR_RULES else "warning")
        assert m["message_vi"].strip() and m["fix_vi"].strip()
    fields = {m["rule"]: m["field"] for m in metas}
    assert fields["missing_title"] == "title"
    assert fields["missing_accession_number"] == "accession_numbers"
    assert {fields[r] for r in ("missing_pub_place", "missing_publisher", "missing_pub_year")} == {
        "pub_place", "publisher", "pub_year"
    }
    assert "severity_policy" in suite.meta
    # The file is plain JSON loadable without lienthong.
    import great_expectations as gx

    with SUITE_FILE.open(encoding="utf-8") as f:
        assert len(gx.ExpectationSuite(**json.load(f)).expectations) == 9


def test_every_suite_column_is_in_the_frame():
    suite = v.load_suite()
    for expectation in suite.expectations:
        assert expectation.column in v.COLUMNS


# ------------------------------------------------------------------------------------------- the frame


def test_records_frame_shape_and_values():
    df = v.records_frame(batch())
    assert list(df.columns) == list(v.COLUMNS) + list(v.DERIVED_COLUMNS)
    assert len(df) == 13
    assert df["record_key"].tolist() == [str(i) for i in range(13)]
    assert df["record_key"].is_unique
    for name in v.TEXT_COLUMNS:
        assert df[name].dtype == object, name
        assert all(value is None or type(value) is str for value in df[name]), name
    assert str(df["quantity"].dtype) == "Int64"
    assert str(df["record_index"].dtype) == "int64"

    row = df.iloc[0]
    assert row["keywords"] == "Truyện; Thiếu nhi"
    assert row["subjects"] == "Văn học thiếu nhi"
    assert row["accession_numbers"] == "STK.00000; STK.00000b"
    assert row["call_number"] == "8(V)23 / T450H"  # first item's, the record has none
    assert df.iloc[8]["accession_numbers"] is None  # None and blank ĐKCB only
    assert df.iloc[9]["call_number"] is None
    assert df.iloc[10]["quantity"] == 40 and df.iloc[10]["accession_numbers"] is None
    assert df.iloc[11]["title"] is None
    assert df.iloc[12]["keywords"] is None
    assert df.iloc[12]["call_number"] == "895.922 / T450H"  # record-level wins
    assert df.iloc[12]["local_id"] == "idx:12"
    assert pd.isna(df.iloc[0]["quantity"])


def test_records_frame_empty_has_all_columns():
    df = v.records_frame([])
    assert list(df.columns) == list(v.COLUMNS) + list(v.DERIVED_COLUMNS) and len(df) == 0


# ------------------------------------------------------------------------------------------- results


def test_exact_failures_per_record(result):
    found = failure_sets(result)
    assert {key: found.get(key, set()) for key in EXPECTED} == EXPECTED
    assert set(found) <= set(EXPECTED)
    assert len(result.failures) == sum(len(s) for s in EXPECTED.values())
    assert result.success is False


def test_failure_details(result):
    suite_meta = {e.meta["rule"]: e.meta for e in v.load_suite().expectations}
    for f in result.failures:
        assert f.value is None  # null checks
        assert f.message_vi == suite_meta[f.rule]["message_vi"]
        assert f.fix_vi == suite_meta[f.rule]["fix_vi"]
        assert f.record_index == int(f.record_key)
        assert type(f.record_index) is int
    title = [f for f in result.failures if f.record_key == "1"][0]
    assert title.local_id == "BIB0001"
    assert "nhan đề" in title.message_vi and "245$a" in title.fix_vi
    assert [f.local_id for f in result.failures if f.record_key == "12"] == ["idx:12"]
    # Sorted by position in the file.
    assert [f.record_index for f in result.failures] == sorted(f.record_index for f in result.failures)
    json.dumps([f.to_dict() for f in result.failures], ensure_ascii=False)


def test_textbook_line_with_quantity_is_exempt_from_accession_rule(result):
    assert result.failures_for("10") == []
    assert "10" not in result.error_keys() | result.warning_keys()


def test_error_and_warning_keys(result):
    assert result.error_keys() == {"1", "8", "9", "11"}
    assert result.warning_keys() == {"2", "3", "4", "5", "6", "7", "12"}


def test_statistics(result):
    stats = result.statistics
    assert_plain_json(stats)
    json.dumps(stats, allow_nan=False)
    assert stats["records"] == 13
    assert stats["evaluated_expectations"] == 9
    assert stats["successful_expectations"] == 0
    assert stats["unsuccessful_expectations"] == 9
    assert stats["failures"] == 11
    assert stats["failures_by_rule"] == {
        "missing_title": 2, "missing_author": 1, "missing_pub_place": 1, "missing_publisher": 1,
        "missing_pub_year": 1, "missing_keywords": 2, "missing_subject": 1,
        "missing_accession_number": 1, "missing_call_number": 1,
    }
    assert stats["failures_by_severity"] == {"error": 4, "warning": 7}
    assert stats["complete_records"] == 2  # record 0 and the SGK line
    assert stats["records_with_errors"] == 4
    assert stats["records_with_warnings_only"] == 7
    expected = {
        "title": 11 / 13, "author": 12 / 13, "pub_place": 12 / 13, "publisher": 12 / 13,
        "pub_year": 12 / 13, "keywords": 11 / 13, "subjects": 12 / 13,
        "accession_numbers": 11 / 12,  # the SGK line is not evaluated
        "call_number": 12 / 13,
    }
    assert stats["completeness"].keys() == expected.keys()
    for name, ratio in expected.items():
        assert type(stats["completeness"][name]) is float
        assert stats["completeness"][name] == pytest.approx(ratio)


def test_complete_batch_succeeds():
    outcome = v.validate_batch([complete(0), complete(1, quantity=40, items=[], call_number="51")])
    assert outcome.success is True
    assert outcome.failures == []
    assert outcome.statistics["complete_records"] == 2
    assert set(outcome.statistics["completeness"].values()) == {1.0}


def test_empty_batch():
    outcome = v.validate_batch([])
    assert outcome.failures == []
    assert outcome.success is True
    assert outcome.error_keys() == set() and outcome.warning_keys() == set()
    stats = outcome.statistics
    assert_plain_json(stats)
    json.dumps(stats, allow_nan=False)
    assert stats["records"] == 0 and stats["complete_records"] == 0
    assert set(stats["completeness"].values()) == {1.0}
    assert set(stats["failures_by_rule"].values()) == {0}


def test_two_consecutive_validations_in_one_process():
    context = v.get_context()
    first = v.validate_batch([complete(0, title=None), complete(1)])
    second = v.validate_batch([complete(0), complete(1, author=None)])
    assert v.get_context() is context
    assert failure_sets(first) == {"0": {("missing_title", "title", "error")}}
    assert failure_sets(second) == {"1": {("missing_author", "author", "warning")}}
    assert first.statistics["completeness"]["title"] == 0.5
    assert second.statistics["completeness"]["title"] == 1.0


def test_results_keep_no_per_row_lists_and_no_frame_fingerprint():
    """Failures are read from GX's per-row lists, then the stored result drops them; GX does not hash the frame."""
    batch = v.validate_records([complete(0, title=None), complete(1, title=None), complete(2)])
    assert [f.record_key for f in batch.failures if f.rule == "missing_title"] == ["0", "1"]
    for suite, result in batch.gx_results.items():
        assert "pandas_data_fingerprint" not in result["meta"]["batch_markers"], suite
        for entry in result["results"]:
            assert not {"unexpected_list", "unexpected_index_list"} & set(entry["result"]), suite
    title = next(e for e in batch.gx_results["mandatory_elements"]["results"]
                 if e["expectation_config"]["kwargs"]["column"] == "title")
    assert title["result"]["unexpected_count"] == 2 and title["result"]["element_count"] == 3


def test_result_json_is_what_gx_serialises():
    """suite_result_json equals GX's to_json_dict on passing, failing and raised expectations of every suite."""
    parameters = v._parameters(v.Policy())
    runs = [(v.records_frame(batch()), "mandatory_elements"), (v.records_frame([complete(0)]), "mandatory_elements"),
            (v.records_frame(validity_batch()), "record_validity"),
            (v.records_frame(batch()).drop(columns=["call_number"]), "record_validity")]
    seen = set()
    for df, suite_name in runs:
        result = v.run_suite_on(v._get_batch_definition(), df, v.load_suite(suite_name), parameters)
        assert v.suite_result_json(result) == result.to_json_dict(), suite_name
        seen |= {"raised" if v._raised(e.exception_info) else e.success for e in result.results}
    summary = v.run_suite_on(v._get_batch_definition(), v.batch_frame(3, {"title": [1, 3]}),
                             v.load_suite("batch_level"), {"min_records": 5.0, "min_completeness": 0.9})
    assert v.suite_result_json(summary) == summary.to_json_dict()
    assert seen == {True, False, "raised"}


# ------------------------------------------------------------------------------------------- frame input


def test_dataframe_input_with_pandas_string_dtype():
    """A caller's frame with pandas 3 str columns (NaN for missing) and blank strings still works."""
    df = v.records_frame([complete(0), complete(1), complete(2)])
    df = df.astype({name: "str" for name in v.TEXT_COLUMNS})
    df.loc[1, "publisher"] = float("nan")
    df.loc[2, "title"] = "  "
    df.loc[0, "quantity"] = 40
    df.loc[0, "accession_numbers"] = float("nan")
    outcome = v.validate_batch(df)
    assert failure_sets(outcome) == {
        "1": {("missing_publisher", "publisher", "warning")},
        "2": {("missing_title", "title", "error")},
    }
    assert all(f.value is None for f in outcome.failures)


def test_failures_name_the_right_record_whatever_the_callers_index():
    """Failures are found by row position; a caller's frame with its own index (here reversed labels) is
    renumbered first, so each failure still carries its own row's key, local id and value."""
    df = v.records_frame([complete(0), complete(1), complete(2)])
    df.loc[2, "pub_year"] = "19x5"
    df.loc[0, "title"] = None
    df.index = [7, 5, 3]
    outcome = v.validate_batch(df, "record_validity")
    found = [(f.record_key, f.local_id, f.rule, f.value) for f in outcome.failures]
    assert [failure for failure in found if failure[2] != "call_number_scheme"] == [
        ("2", df.loc[3, "local_id"], "invalid_pub_year", "19x5")]
    assert [key for key, _, rule, _ in found if rule == "call_number_scheme"] == ["0", "1", "2"]
    assert [(f.record_key, f.rule) for f in v.validate_batch(df).failures] == [("0", "missing_title")]
    with pytest.raises(ValueError, match="RangeIndex"):
        v._run_suite(df, "record_validity", v._parameters(v.Policy()))


def test_duplicate_record_keys_rejected():
    df = v.records_frame([complete(0), complete(1)])
    df["record_key"] = "same"
    with pytest.raises(ValueError, match="unique"):
        v.validate_batch(df)


def test_frame_missing_columns_rejected():
    df = v.records_frame([complete(0)]).drop(columns=["call_number"])
    with pytest.raises(ValueError, match="call_number"):
        v.validate_batch(df)


# ------------------------------------------------------------------------------------------- suite errors


def _suite_dir(tmp_path, monkeypatch, expectations: list[dict]) -> None:
    data = json.loads(SUITE_FILE.read_text(encoding="utf-8"))
    data["name"] = "custom"
    data["expectations"] = expectations
    (tmp_path / "custom.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("LIENTHONG_EXPECTATIONS_DIR", str(tmp_path))


def test_suite_dir_from_environment(tmp_path, monkeypatch):
    shutil.copy(SUITE_FILE, tmp_path / "mandatory_elements.json")
    monkeypatch.setenv("LIENTHONG_EXPECTATIONS_DIR", str(tmp_path))
    assert v.expectations_dir() == tmp_path
    assert len(v.load_suite().expectations) == 9
    with pytest.raises(v.SuiteError, match="not found"):
        v.load_suite("nope")


def test_invalid_expectation_is_not_silently_dropped(tmp_path, monkeypatch):
    meta = {"rule": "r", "field": "title", "severity": "error", "message_vi": "m", "fix_vi": "f"}
    _suite_dir(tmp_path, monkeypatch, [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "title"}, "meta": meta},
        {"type": "expect_column_values_to_be_lovely", "kwargs": {"column": "title"}, "meta": meta},
    ])
    with pytest.raises(v.SuiteError, match="1 of 2"):
        v.load_suite("custom")


def test_meta_contract_enforced(tmp_path, monkeypatch):
    meta = {"rule": "r", "field": "title", "severity": "fatal", "message_vi": "m", "fix_vi": "f"}
    _suite_dir(tmp_path, monkeypatch, [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "title"}, "meta": meta},
    ])
    with pytest.raises(v.SuiteError, match="severity"):
        v.load_suite("custom")


def test_gx_evaluation_error_is_raised_not_passed(tmp_path, monkeypatch):
    meta = {"rule": "r", "field": "isbn", "severity": "error", "message_vi": "m", "fix_vi": "f"}
    _suite_dir(tmp_path, monkeypatch, [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "isbn"}, "meta": meta},
    ])
    with pytest.raises(v.ValidationRunError, match="isbn"):
        v.validate_batch([complete(0)], suite_name="custom")


# ------------------------------------------------------------------------------------------- validity


VALID_ISBN13, BAD_ISBN13 = "9786042096430", "9786042096431"  # the second has a wrong check digit
VALID_ISBN10, BAD_ISBN10 = "0306406152", "0306406153"


def rules_of(result: v.BatchValidation, key: str) -> dict[str, tuple[str, str | None]]:
    return {f.rule: (f.severity, f.value) for f in result.failures if f.record_key == key}


def ddc(index: int, **changes) -> CanonicalRecord:
    """A complete record shelved by Dewey (the province's default scheme)."""
    changes.setdefault("items", [Item(accession_number=f"STK.{index:05d}", call_number="510 T406")])
    return complete(index, **changes)


def validity_batch() -> list[CanonicalRecord]:
    return [
        ddc(0, isbns=[VALID_ISBN13, VALID_ISBN10], language="vie", call_number="895.922 T450H"),
        ddc(1, isbns=[VALID_ISBN13, BAD_ISBN13]),
        ddc(2, isbns=[BAD_ISBN10]),
        ddc(3, pub_year="19"),
        ddc(4, pub_year="2999"),
        ddc(5, pub_year="1450"),
        ddc(6, language="vn"),
        ddc(7, language="VIE"),                         # case is forgiven: MARC codes are lower-case
        ddc(8, call_number="8(V)23 / T450H"),           # BBK under a DDC library
        ddc(9, items=[Item(accession_number="STK.00000", call_number="510 T406")]),  # record 0's ĐKCB
        ddc(10, items=[Item(accession_number="SGK.1", call_number="510"), Item(accession_number="sgk. 1")]),
        CanonicalRecord(library_code="THCS-DABAC", local_id="ORPHAN", record_index=11, title=None,
                        items=[Item(accession_number="STK.99999", call_number="510")]),
        ddc(12, title="Toán 6", quantity=40, items=[], call_number="510 T406", pub_year=None),
    ]


@pytest.fixture(scope="module")
def validity() -> v.BatchValidation:
    return v.validate_records(validity_batch(), v.Policy(max_year=2027))


def test_isbn_check_digits(validity):
    assert "invalid_isbn" not in rules_of(validity, "0")
    assert rules_of(validity, "1")["invalid_isbn"] == ("warning", BAD_ISBN13)  # only the bad one is named
    assert rules_of(validity, "2")["invalid_isbn"] == ("warning", BAD_ISBN10)


def test_publication_year(validity):
    assert rules_of(validity, "3")["invalid_pub_year"] == ("warning", "19")
    assert "implausible_pub_year" not in rules_of(validity, "3")  # not a year at all: one failure, not two
    assert rules_of(validity, "4")["implausible_pub_year"] == ("warning", "2999")
    assert rules_of(validity, "5")["implausible_pub_year"] == ("warning", "1450")
    assert not {"invalid_pub_year", "implausible_pub_year"} & set(rules_of(validity, "0"))


def test_language_code(validity):
    assert rules_of(validity, "6")["invalid_language"] == ("warning", "vn")
    assert "invalid_language" not in rules_of(validity, "7")
    assert "invalid_language" not in rules_of(validity, "0")


def test_call_number_against_the_declared_scheme(validity):
    assert rules_of(validity, "8")["call_number_scheme"] == ("warning", "8(V)23 / T450H")
    assert "call_number_scheme" not in rules_of(validity, "0")
    bbk = v.validate_records(validity_batch(), v.Policy(call_number_scheme="BBK"))
    assert "call_number_scheme" not in rules_of(bbk, "8")
    letters = v.validate_records([ddc(0, call_number="Văn học")], v.Policy(call_number_scheme="BBK"))
    assert rules_of(letters, "0")["call_number_scheme"] == ("warning", "Văn học")
    for good in ("53(075)", "63.3(2)", "8(V)23", "84(2=V)6 / T450H"):
        assert re.match(v.CALL_NUMBER_REGEX["BBK"], good), good
    pattern = v.validate_records([ddc(0, call_number="KHO-A/12"), ddc(1, call_number="510")],
                                 v.Policy(call_number_scheme="pattern:^KHO-[A-Z]/[0-9]+$"))
    assert [f.record_key for f in pattern.failures if f.rule == "call_number_scheme"] == ["1"]


def test_accession_numbers_unique_across_the_export(validity):
    assert rules_of(validity, "9")["duplicate_accession_number"] == ("error", "STK.00000")
    assert "duplicate_accession_number" not in rules_of(validity, "0")  # the first use keeps it
    assert rules_of(validity, "10")["duplicate_accession_number"] == ("error", "sgk. 1")  # same copy twice
    seen: set[str] = set()
    first = v.validate_records([ddc(0)], accession_seen=seen)
    second = v.validate_records([ddc(5, items=[Item(accession_number="stk.00000", call_number="510")])],
                                accession_seen=seen)  # the next chunk of the same export
    assert first.failures == []
    assert [(f.rule, f.value) for f in second.failures] == [("duplicate_accession_number", "stk.00000")]


def test_items_must_belong_to_a_bibliographic_record(validity):
    orphan = rules_of(validity, "11")
    assert orphan["orphan_items"] == ("error", "STK.99999")
    assert "orphan_items" not in rules_of(validity, "1")


def test_textbook_register_line_passes_on_quantity(validity):
    assert set(rules_of(validity, "12")) == {"missing_pub_year"}  # no ĐKCB needed, a quantity is enough


def test_every_failure_carries_hash_and_default_severity(validity):
    hashes = {str(r.record_index): r.record_hash for r in validity_batch()}
    for f in validity.failures:
        assert f.default_severity == f.severity
        assert f.record_hash == hashes[f.record_key]
        assert f.message_vi and f.fix_vi


def test_group_rules_raise_severity():
    records = [ddc(0, author=None, isbns=[BAD_ISBN13]), ddc(1)]
    default = v.validate_records(records)
    tightened = v.validate_records(records, v.Policy(errors=frozenset({"missing_author", "invalid_isbn"})))
    assert {f.rule: f.severity for f in default.failures} == {"missing_author": "warning", "invalid_isbn": "warning"}
    assert {f.rule: (f.severity, f.default_severity) for f in tightened.failures} == {
        "missing_author": ("error", "warning"), "invalid_isbn": ("error", "warning")}
    assert tightened.error_keys() == {"0"} and default.error_keys() == set()


def test_element_counts_for_the_scorecard(validity):
    elements = validity.statistics["elements"]
    assert list(elements) == list(v.ELEMENTS)
    assert elements["title"] == [12, 13]
    assert elements["accession_number"] == [12, 12]  # the SGK line is not evaluated
    assert elements["publication"] == [11, 13]  # the orphan and the SGK line (no year)
    assert_plain_json(validity.statistics)
    assert set(validity.gx_results) == {"mandatory_elements", "record_validity"}
    json.dumps(validity.gx_results, allow_nan=False)
    assert "unexpected_index_list" not in json.dumps(validity.gx_results)


def test_batch_level_checks():
    elements = {name: [9, 10] for name in v.ELEMENTS}
    elements["keywords"] = [5, 10]
    checks, result = v.validate_export(10, elements, min_records=12.5, policy=v.Policy(min_completeness=0.8))
    by = {(c.rule, c.field): c for c in checks}
    assert not by[("record_count_drop", "record_count")].success
    assert by[("record_count_drop", "record_count")].severity == "error"
    assert not by[("low_completeness", "keywords")].success and by[("low_completeness", "title")].success
    assert by[("low_completeness", "keywords")].observed == 0.5
    assert [c.field for c in checks] == ["record_count", *v.ELEMENTS]
    assert "653$a" in by[("low_completeness", "keywords")].fix_vi and "245$a" in by[("low_completeness", "title")].fix_vi
    assert {c.expected_min for c in checks if c.rule == "low_completeness"} == {0.8}
    stricter, _ = v.validate_export(10, elements, min_records=5, policy=v.Policy(min_completeness=0.95))
    assert [c.field for c in stricter if not c.success] == list(v.ELEMENTS)
    assert result["success"] is False
    # The per-row lists are trimmed; the counts say which share of the element rows failed.
    completeness = next(r for r in result["results"] if r["expectation_config"]["kwargs"]["column"] == "completeness")
    assert completeness["result"]["unexpected_count"] == 1 and completeness["result"]["element_count"] == 7


def test_batch_level_suite_texts_every_element():
    suite = v.load_suite(v.BATCH_SUITE)
    by_rule = {e.meta["rule"]: e for e in suite.expectations}
    assert set(by_rule) == {"record_count_drop", "low_completeness"}
    texts = by_rule["low_completeness"].meta["elements"]
    assert set(texts) == set(v.ELEMENTS)
    assert all(text["message_vi"] and text["fix_vi"] for text in texts.values())


def test_all_suites_follow_the_meta_contract():
    for name in (*v.RECORD_SUITES, v.BATCH_SUITE):
        suite = v.load_suite(name)
        assert suite.expectations
        for expectation in suite.expectations:
            assert expectation.meta["message_vi"] and expectation.meta["fix_vi"]
