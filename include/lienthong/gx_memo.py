"""Fixed costs Great Expectations pays per expectation and per run, whatever the rows, cut for our runs.

Many small exports (the province's ~600 libraries of ~1,700 records) are slower than one large one because of
costs like these. All five apply only inside :func:`remembered` (one validation, in the calling thread: see
``validate.run_suite_on``); outside it, and in other threads, GX behaves as shipped. Results are identical
(``tests/test_gx_memo.py``); together they take about two thirds off a small export's validation.

* GX 1.x's ``Expectation.configuration`` is a property that serialises the expectation (a pydantic ``dict()``,
  then a new ``ExpectationConfiguration``) each time it is read, and a run reads it about 120 times per
  expectation while it plans its metrics. In a run, the first configuration built for an expectation object
  is returned again for it. Not across runs: GX writes the run's suite parameters into the configurations it
  reads (in place). Objects are held until the run ends so that an ``id()`` is not reused within it.
* GX names each metric it plans (about 17 per expectation) by an md5 of its keywords, first converted to JSON
  by a function that tries some twenty types before it reaches ``None``. Keywords of plain values (text,
  numbers, booleans, None, lists and string-keyed dicts of them) convert to themselves, so they are hashed
  as they are: the same id.
* Before it computes anything, GX plans each expectation: a copy of its configuration with the batch's id,
  the metrics it needs (``get_validation_dependencies``), and their dependencies, recursively (a graph of
  about 17 metric configurations). For GX's column-map, pair and table expectations the plan is a function
  of the expectation's type and keywords, the run's result format, the kind of execution engine and the
  frame's columns and types; it never reads the rows (others, which may, are planned as shipped). The
  graph's edges are kept per process under those, so each chunk after the first plans by lookup (still
  copying the configuration and setting the batch id, and filling the result format's defaults into the
  run's settings, as GX's planning does). GX only reads the edges when it resolves metrics, and the metrics'
  values live in each run's own dictionary, so a kept plan carries nothing of an earlier batch but its shape.
* Once the metrics are computed, GX judges each expectation (``metrics_validate``), and to find its metrics
  it asks for the same dependencies again. Under the same key as the plan, those are kept too (a copy goes
  out each time: callers add and remove metrics in the object they get).

* A row condition (ours: the ĐKCB rule skips SGK register lines, which carry a quantity) is applied with
  ``DataFrame.query`` for each metric of the expectation that has it, about five times a run, each parsing
  and evaluating the expression again. In a run, the rows a condition keeps of a frame are computed once; the
  later metrics get a shallow copy of them (pandas copies on write, so no metric sees another's changes).
  The frame's column names and types, part of every plan's key, are likewise read once per run.

``LIENTHONG_GX_MEMO=0`` leaves GX as shipped (to compare, or should a GX release change what it reads).
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()
_installed = False
_install_lock = threading.Lock()
_plans: dict[tuple, tuple] = {}  # (type, keywords, settings, engine, columns) → (metric edges, settings after)
MAX_PLANS = 4096  # distinct expectations × policies; cleared when exceeded rather than grown without bound


def install() -> bool:
    """Wrap ``Expectation.configuration``, ``IDDict.to_id``, the validator's planning, the dependencies
    judged and the pandas engine's row conditions, once per process; False (GX left as shipped) when turned
    off or when the property is not what this module expects. Each of the others is skipped alone when GX's
    own differs from what it replaces."""
    global _installed
    with _install_lock:
        if _installed:
            return True
        if os.environ.get("LIENTHONG_GX_MEMO", "1") == "0":
            return False
        from great_expectations.expectations.expectation import Expectation

        built = getattr(Expectation, "configuration", None)
        if not isinstance(built, property) or built.fget is None or built.fset is not None:
            return False
        build = built.fget

        def configuration(self):
            runs = getattr(_state, "configurations", None)
            if runs is None:
                return build(self)
            kept = runs.get(id(self))
            if kept is None:
                kept = runs[id(self)] = (self, build(self))
            return kept[1]

        configuration.__doc__ = build.__doc__
        Expectation.configuration = property(configuration)
        _install_plain_ids()
        _install_plans()
        _install_dependencies()
        _install_row_conditions()
        _installed = True
        return True


_PLAIN_TYPES = frozenset((str, int, bool, type(None)))


def _plain(value) -> bool:
    """True when GX's convert_to_json_serializable would return ``value`` as it is."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return True
    if kind is float:
        return value == value  # NaN would become None
    if kind is dict:
        return all(type(key) is str and _plain(item) for key, item in value.items())
    if kind is list:
        return all(_plain(item) for item in value)
    return False


def _plain_id(data: dict) -> str:
    return hashlib.md5(json.dumps(data, sort_keys=True).encode("utf-8"), usedforsecurity=False).hexdigest()


def _install_plain_ids() -> None:
    """In a run, metric keywords of plain values are hashed without GX's conversion (see the module's doc).

    Not installed when a sample's id differs from GX's (a release that names metrics another way).
    """
    from great_expectations.core.id_dict import IDDict

    shipped = IDDict.to_id
    sample = IDDict({"column": "title", "row_condition": None, "mostly": 0.95, "result_format": {"a": [1, True]}})
    if _plain_id(dict(sample)) != shipped(sample):
        return

    def to_id(self, id_keys=None, id_ignore_keys=None):
        if getattr(_state, "configurations", None) is None:
            return shipped(self, id_keys, id_ignore_keys)
        keys = set(self.keys() if id_keys is None else id_keys) - set(
            self._id_ignore_keys if id_ignore_keys is None else id_ignore_keys)
        if len(keys) < 2:
            return shipped(self, id_keys, id_ignore_keys)
        data = {key: self[key] for key in keys}
        return _plain_id(data) if _plain(data) else shipped(self, id_keys, id_ignore_keys)

    to_id.__doc__ = shipped.__doc__
    IDDict.to_id = to_id


# Expectations whose own ``get_validation_dependencies`` was read and found not to look at the rows (GX's
# base classes are checked by module); others, e.g. expect_column_kl_divergence_to_be_less_than, which
# computes its bins from the data when none are given, are planned by GX on every run.
PLANNED_WITHOUT_ROWS = frozenset({"ExpectColumnValuesToBeNull"})
_planned_without_rows: dict[str, bool] = {}


def _plans_without_rows(expectation_type: str) -> bool:
    if expectation_type not in _planned_without_rows:
        from great_expectations.expectations.registry import get_expectation_impl

        try:
            method = inspect.unwrap(get_expectation_impl(expectation_type).get_validation_dependencies)
        except Exception:  # not registered: GX plans it, and reports why it cannot
            return False
        _planned_without_rows[expectation_type] = (
            method.__module__ == "great_expectations.expectations.expectation"
            or method.__qualname__.split(".")[0] in PLANNED_WITHOUT_ROWS)
    return _planned_without_rows[expectation_type]


def _columns(engine) -> tuple | None:
    """The active batch's column names and types (a plan may depend on them); None if not a pandas frame."""
    import pandas as pd

    manager = getattr(engine, "batch_manager", None)
    frame = getattr(getattr(manager, "active_batch_data", None), "dataframe", None)
    if not isinstance(frame, pd.DataFrame):
        return None
    return _per_frame(frame, "columns", lambda: tuple(zip(map(str, frame.columns), map(str, frame.dtypes))))


def _per_frame(frame, what, compute):
    """``compute()``, kept for the rest of the run under (id(frame), what); computed afresh outside a run.

    The entry holds the frame, so its id is not reused by another frame while the run lasts.
    """
    frames = getattr(_state, "frames", None)
    if frames is None:
        return compute()
    kept = frames.get((id(frame), what))
    if kept is None:
        kept = frames[(id(frame), what)] = (frame, compute())
    return kept[1]


def _plan_key(configuration, runtime_configuration: dict | None, engine, columns: tuple | None) -> tuple | None:
    """What GX's plan of one expectation depends on, as a hashable key; None to let GX plan it afresh."""
    kwargs, settings = configuration.kwargs, runtime_configuration or {}
    if columns is None or not (_plain(kwargs) and _plain(settings)) or not _plans_without_rows(configuration.type):
        return None
    return (configuration.type, json.dumps(kwargs, sort_keys=True), json.dumps(settings, sort_keys=True),
            type(engine), columns)


def _fill(settings: dict, planned: dict) -> None:
    """Planning fills the result format's defaults into the run's settings in place (GX's
    ``parse_result_format``); a plan looked up does the same, so the rest of the run sees what it would."""
    for name, value in planned.items():
        if isinstance(value, dict) and isinstance(settings.get(name), dict):
            _fill(settings[name], value)
        elif name not in settings or settings[name] != value:
            settings[name] = copy.deepcopy(value)


def _keep(store: dict, key: tuple, value: tuple) -> None:
    if len(store) >= MAX_PLANS:
        store.clear()
    store[key] = value


def _install_plans() -> None:
    """In a run, each expectation's metric graph is planned once per process (see the module's doc)."""
    from great_expectations.validator.validation_graph import ExpectationValidationGraph, ValidationGraph
    from great_expectations.validator.validator import Validator

    shipped = Validator._generate_metric_dependency_subgraphs_for_each_expectation_configuration
    expected = ["self", "expectation_configurations", "processed_configurations", "catch_exceptions",
                "runtime_configuration"]
    if list(inspect.signature(shipped).parameters) != expected:
        return

    def plan(self, expectation_configurations, processed_configurations, catch_exceptions,
             runtime_configuration=None):
        if getattr(_state, "configurations", None) is None:
            return shipped(self, expectation_configurations, processed_configurations, catch_exceptions,
                           runtime_configuration)
        graphs, results = [], []
        columns = _columns(self._execution_engine)
        for configuration in expectation_configurations:
            evaluated = copy.deepcopy(configuration)
            if self.active_batch_id:
                evaluated.kwargs.update({"batch_id": self.active_batch_id})
            key = _plan_key(evaluated, runtime_configuration, self._execution_engine, columns)
            kept = _plans.get(key) if key is not None else None
            if kept is None:
                planned, failed, _ = shipped(self, [configuration], [], catch_exceptions, runtime_configuration)
                if failed:  # GX could not plan it: its result says why, as without the memo
                    results.extend(failed)
                    continue
                kept = (list(planned[0].graph.edges), copy.deepcopy(runtime_configuration or {}))
                if key is not None:
                    _keep(_plans, key, kept)
            elif runtime_configuration is not None:
                _fill(runtime_configuration, kept[1])
            edges = kept[0]
            graph = ValidationGraph(execution_engine=self._execution_engine, edges=list(edges))
            graphs.append(ExpectationValidationGraph(configuration=evaluated, graph=graph))
            processed_configurations.append(evaluated)
        return graphs, results, processed_configurations

    plan.__doc__ = shipped.__doc__
    Validator._generate_metric_dependency_subgraphs_for_each_expectation_configuration = plan


_dependencies: dict[tuple, tuple] = {}  # a plan key → (GX's dependencies of the expectation, settings after)


def _install_dependencies() -> None:
    """In a run, what an expectation needs to judge its metrics is computed once per plan key (see the doc).

    ``Expectation.metrics_validate`` (GX's only definition) asks ``self.get_validation_dependencies`` again,
    which its subclasses define and extend through ``super()``. The outermost definition reached answers
    from the kept dependencies: a copy, since callers add and remove metrics in the object they get.
    """
    from great_expectations.expectations.expectation import Expectation
    from great_expectations.expectations.registry import _registered_expectations
    from great_expectations.validator.validator import ValidationDependencies

    judge = Expectation.metrics_validate
    if list(inspect.signature(judge).parameters)[:4] != ["self", "metrics", "runtime_configuration",
                                                          "execution_engine"]:
        return

    def copied(dependencies):
        return ValidationDependencies(metric_configurations=dict(dependencies.metric_configurations),
                                      result_format=copy.deepcopy(dependencies.result_format))

    def wrap(depend):
        def get_validation_dependencies(self, execution_engine=None, runtime_configuration=None, **kwargs):
            key = getattr(_state, "judging", None)
            if key is None:
                return depend(self, execution_engine, runtime_configuration, **kwargs)
            _state.judging = None  # calls through super() compute as shipped
            kept = _dependencies.get(key)
            if kept is not None:
                if runtime_configuration is not None:
                    _fill(runtime_configuration, kept[1])
                return copied(kept[0])
            dependencies = depend(self, execution_engine, runtime_configuration, **kwargs)
            _keep(_dependencies, key, (copied(dependencies), copy.deepcopy(runtime_configuration or {})))
            return dependencies

        get_validation_dependencies.__doc__ = depend.__doc__
        get_validation_dependencies.__wrapped__ = depend
        return get_validation_dependencies

    owners = {owner for expectation in list(_registered_expectations.values()) for owner in expectation.__mro__
              if "get_validation_dependencies" in vars(owner)}
    for owner in owners:
        owner.get_validation_dependencies = wrap(vars(owner)["get_validation_dependencies"])

    def metrics_validate(self, metrics, runtime_configuration=None, execution_engine=None, **kwargs):
        if getattr(_state, "configurations", None) is None:
            return judge(self, metrics, runtime_configuration, execution_engine, **kwargs)
        configuration = self.configuration
        _state.judging = _plan_key(configuration, runtime_configuration, execution_engine,
                                   _columns(execution_engine))
        try:
            return judge(self, metrics, runtime_configuration, execution_engine, **kwargs)
        finally:
            _state.judging = None

    metrics_validate.__doc__ = judge.__doc__
    Expectation.metrics_validate = metrics_validate


def _install_row_conditions() -> None:
    """In a run, the rows a row condition keeps of a frame are filtered once (see the module's doc)."""
    from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine

    shipped = getattr(PandasExecutionEngine, "_apply_row_condition_filter", None)
    if shipped is None or list(inspect.signature(shipped).parameters) != ["self", "data", "row_condition",
                                                                          "domain_kwargs"]:
        return

    def apply_row_condition(self, data, row_condition, domain_kwargs):
        if getattr(_state, "frames", None) is None:
            return shipped(self, data, row_condition, domain_kwargs)
        kept = _per_frame(data, (repr(row_condition), domain_kwargs.get("condition_parser")),
                          lambda: shipped(self, data, row_condition, domain_kwargs))
        return kept.copy(deep=False)

    apply_row_condition.__doc__ = shipped.__doc__
    PandasExecutionEngine._apply_row_condition_filter = apply_row_condition


@contextmanager
def remembered() -> Iterator[None]:
    """One validation, in this thread: configurations built once per expectation object, plain ids hashed as
    they are, plans and dependencies looked up, row conditions applied and column types read once per frame."""
    outer, outer_frames = getattr(_state, "configurations", None), getattr(_state, "frames", None)
    _state.configurations = {} if outer is None else outer
    _state.frames = {} if outer_frames is None else outer_frames  # see _per_frame
    try:
        yield
    finally:
        _state.configurations, _state.frames = outer, outer_frames
