"""gx_memo: GX's results are the same whether expectation configurations are remembered for a run or not."""
from __future__ import annotations

import threading

import pandas as pd
import pytest

from lienthong import gx_memo
from lienthong import validate as v
from tests.test_validate import batch, validity_batch


def _as_shipped(df, suite, parameters) -> list[dict]:
    """The same validation outside gx_memo.remembered(): GX building every configuration afresh."""
    with v._lock:
        found = v._get_batch_definition().get_batch(batch_parameters={"dataframe": df})
        result = found.validate(suite, result_format=v.RESULT_FORMAT, expectation_parameters=dict(parameters))
    return [entry.to_json_dict() for entry in result.results]


def _remembered(df, suite, parameters) -> list[dict]:
    result = v.run_suite_on(v._get_batch_definition(), df, suite, parameters)
    return [entry.to_json_dict() for entry in result.results]


@pytest.mark.parametrize("policy", [v.Policy(max_year=2027), v.Policy(call_number_scheme="BBK", min_year=1990)])
@pytest.mark.parametrize("suite_name", v.RECORD_SUITES)
def test_record_suites_give_the_same_results(suite_name, policy):
    v.get_context()
    df = pd.concat([v.records_frame(batch()), v.records_frame(validity_batch())], ignore_index=True)
    suite = v.load_suite(suite_name)
    parameters = v._parameters(policy)
    remembered = _remembered(df, suite, parameters)
    assert remembered == _as_shipped(df, suite, parameters)
    assert any(not entry["success"] for entry in remembered)  # the batch fails some rules: rows are compared


def test_parameters_are_those_of_each_run():
    """GX writes a run's suite parameters into the configurations it reads; nothing carries to the next run."""
    records = validity_batch()
    for scheme, failing in (("DDC", True), ("BBK", False), ("DDC", True)):
        result = v.validate_records(records, v.Policy(call_number_scheme=scheme, max_year=2027))
        assert any(f.rule == "call_number_scheme" and f.record_key == "8" for f in result.failures) is failing
        regex = next(entry["expectation_config"]["kwargs"]["regex"]
                     for entry in result.gx_results["record_validity"]["results"]
                     if entry["expectation_config"]["meta"]["rule"] == "call_number_scheme")
        assert regex == v.CALL_NUMBER_REGEX[scheme]


def test_batch_level_gives_the_same_results():
    v.get_context()
    df = v.batch_frame(120, {"title": [120, 120], "author": [60, 120], "accession_number": [0, 0]})
    suite = v.load_suite(v.BATCH_SUITE)
    parameters = {"min_records": 200.0, "min_completeness": 0.8}
    remembered = _remembered(df, suite, parameters)
    assert remembered == _as_shipped(df, suite, parameters)
    assert [entry["success"] for entry in remembered] == [False, False]


def test_remembered_only_in_its_thread_and_block():
    v.get_context()
    assert gx_memo.install() is True  # idempotent: already installed by get_context()
    expectation = v.load_suite(v.DEFAULT_SUITE).expectations[0]
    assert expectation.configuration is not expectation.configuration
    elsewhere: list[bool] = []
    with gx_memo.remembered():
        assert expectation.configuration is expectation.configuration
        with gx_memo.remembered():  # nested: the same run
            kept = expectation.configuration
        assert expectation.configuration is kept
        thread = threading.Thread(target=lambda: elsewhere.append(expectation.configuration is expectation.configuration))
        thread.start()
        thread.join()
    assert elsewhere == [False]
    assert expectation.configuration is not kept
    assert expectation.configuration == kept


@pytest.mark.parametrize("values", [
    {"column": "title", "batch_id": "lienthong_records-records", "row_condition": None, "condition_parser": None},
    {"column": "pub_year_number", "min_value": 1800, "max_value": 2027.0, "strict_min": False,
     "result_format": {"result_format": "COMPLETE", "partial_unexpected_count": 20}, "mostly": 1.0},
    {"value_set": ["vie", "eng", None], "parse_strings_as_datetimes": False},
])
def test_plain_metric_ids_are_gx_ids(values):
    from great_expectations.core.id_dict import IDDict

    v.get_context()
    first = next(iter(values))
    shipped = IDDict(values).to_id()  # outside a run: GX's own conversion
    shipped_without_first = IDDict(values).to_id(id_ignore_keys={first})
    with gx_memo.remembered():
        assert gx_memo._plain(dict(values))
        assert IDDict(values).to_id() == shipped
        assert IDDict(values).to_id(id_ignore_keys={first}) == shipped_without_first != shipped


def test_values_that_are_not_plain_go_through_gx():
    import numpy as np
    from great_expectations.core.id_dict import IDDict

    v.get_context()
    for values in ({"a": np.int64(3), "b": None}, {"a": float("nan"), "b": 1}, {"a": (1, 2), "b": 1},
                   {"a": {1: "numeric key"}, "b": 1}):
        assert not gx_memo._plain(values)
        shipped = IDDict(values).to_id()
        with gx_memo.remembered():
            assert IDDict(values).to_id() == shipped


def test_a_kept_plan_serves_another_batch():
    """Plans are kept across runs; a run planned by lookup gives what GX gives on its own rows."""
    v.get_context()
    gx_memo._plans.clear()
    gx_memo._dependencies.clear()
    parameters = v._parameters(v.Policy(max_year=2027))
    first, second = v.records_frame(batch()), v.records_frame(validity_batch())
    for suite_name in v.RECORD_SUITES:
        suite = v.load_suite(suite_name)
        before = _remembered(first, suite, parameters)
        planned, judged = len(gx_memo._plans), len(gx_memo._dependencies)
        assert planned >= len(suite.expectations) and judged >= len(suite.expectations)
        after = _remembered(second, suite, parameters)
        assert (len(gx_memo._plans), len(gx_memo._dependencies)) == (planned, judged)  # nothing planned again
        assert after == _as_shipped(second, suite, parameters)
        assert before == _as_shipped(first, suite, parameters)
        assert after != before


def test_a_new_policy_is_planned_afresh():
    v.get_context()
    gx_memo._plans.clear()
    suite = v.load_suite("record_validity")
    df = v.records_frame(validity_batch())
    _remembered(df, suite, v._parameters(v.Policy(call_number_scheme="DDC")))
    planned = len(gx_memo._plans)
    bbk = v._parameters(v.Policy(call_number_scheme="BBK", min_year=1990))
    assert _remembered(df, suite, bbk) == _as_shipped(df, suite, bbk)
    assert len(gx_memo._plans) > planned  # the regex and the year bounds are in the keywords


def test_plan_keys():
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    v.get_context()
    columns = (("title", "object"), ("pub_year_number", "Int64"))

    def key(kwargs, settings=None, columns=columns, kind="expect_column_values_to_not_be_null"):
        return gx_memo._plan_key(ExpectationConfiguration(type=kind, kwargs=kwargs), settings, object(), columns)

    assert key({"column": "title"}) == key({"column": "title"}, {})
    assert key({"column": "title"}) != key({"column": "author"})
    assert key({"column": "title"}, {"result_format": "COMPLETE"}) != key({"column": "title"})
    assert key({"column": "title"}) != key({"column": "title"}, columns=(("title", "string"),))
    assert key({"column": "title", "mostly": float("nan")}) is None  # not plain: planned by GX every run
    assert key({"column": "title"}, columns=None) is None  # not a pandas frame
    assert key({"column": "title"}, kind="expect_column_values_to_be_null") is not None  # its own plan was read
    # Plans that may read the rows (bins from the data, the column's type) are left to GX.
    assert key({"column": "title"}, kind="expect_column_kl_divergence_to_be_less_than") is None
    assert key({"column": "title", "type_": "str"}, kind="expect_column_values_to_be_of_type") is None
    assert key({"column": "title"}, kind="expect_no_such_thing") is None


def test_kept_dependencies_are_those_of_the_expectations_class():
    """expect_column_values_to_be_null removes a metric from what its parent class returns: what is kept is
    the subclass's answer, and each run's judgement is GX's."""
    v.get_context()
    gx_memo._dependencies.clear()
    suite = v.load_suite("record_validity")
    df = v.records_frame(validity_batch())
    parameters = v._parameters(v.Policy(max_year=2027))
    for _ in range(3):
        assert _remembered(df, suite, parameters) == _as_shipped(df, suite, parameters)
    kept = {key[0]: dependencies.metric_configurations for key, (dependencies, _) in gx_memo._dependencies.items()}
    assert "column_values.nonnull.unexpected_count" not in kept["expect_column_values_to_be_null"]
    assert "column_values.null.unexpected_count" in kept["expect_column_values_to_be_null"]
    assert "column_values.nonnull.unexpected_count" in kept["expect_column_values_to_match_regex"]


def test_row_condition_applied_once_per_run(monkeypatch):
    """The ĐKCB rule's row condition is evaluated once in a run, and its metrics still see only the rows it
    keeps (the SGK register line with a quantity and no ĐKCB is not a failure)."""
    v.get_context()
    queries: list[str] = []
    query = pd.DataFrame.query

    def counted(self, expr, **kwargs):
        queries.append(expr)
        return query(self, expr, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "query", counted)
    df, suite, parameters = v.records_frame(batch()), v.load_suite(v.DEFAULT_SUITE), v._parameters(v.Policy())
    remembered = _remembered(df, suite, parameters)
    assert len(queries) == 1
    queries.clear()
    assert _as_shipped(df, suite, parameters) == remembered
    assert len(queries) > 1
    accession = next(entry["result"] for entry in remembered
                     if entry["expectation_config"]["meta"]["rule"] == "missing_accession_number")
    assert accession["element_count"] == int(df["quantity"].isna().sum()) < len(df)
    queries.clear()
    other = v.records_frame(batch()[:5])
    with gx_memo.remembered():  # one run, two frames: each filtered for itself
        for frame in (df, other, df):
            v.run_suite_on(v._get_batch_definition(), frame, suite, parameters)
    assert len(queries) == 2


def test_column_types_read_once_per_frame_in_a_run():
    """A run asks for the frame's column types once per expectation; the first answer serves the run."""
    from types import SimpleNamespace

    frame = v.records_frame(batch())
    engine = SimpleNamespace(batch_manager=SimpleNamespace(active_batch_data=SimpleNamespace(dataframe=frame)))
    with gx_memo.remembered():
        first = gx_memo._columns(engine)
        assert gx_memo._columns(engine) is first
    assert first == tuple((str(name), str(dtype)) for name, dtype in frame.dtypes.items())
    assert gx_memo._columns(engine) == first and gx_memo._columns(engine) is not first  # outside a run: afresh
