"""Two fixed costs Great Expectations pays per expectation and per run, whatever the rows, cut for our runs.

Many small exports (the province's ~600 libraries of ~1,700 records) are slower than one large one because of
costs like these. Both apply only inside :func:`remembered` (one validation, in the calling thread: see
``validate.run_suite_on``); outside it, and in other threads, GX behaves as shipped. Results are identical
(``tests/test_gx_memo.py``); together they take about half off a small export's validation.

* GX 1.x's ``Expectation.configuration`` is a property that serialises the expectation (a pydantic ``dict()``,
  then a new ``ExpectationConfiguration``) each time it is read, and a run reads it about 120 times per
  expectation while it plans its metrics. In a run, the first configuration built for an expectation object
  is returned again for it. Not across runs: GX writes the run's suite parameters into the configurations it
  reads (in place). Objects are held until the run ends so that an ``id()`` is not reused within it.
* GX names each metric it plans (about 17 per expectation) by an md5 of its keywords, first converted to JSON
  by a function that tries some twenty types before it reaches ``None``. Keywords of plain values (text,
  numbers, booleans, None, lists and string-keyed dicts of them) convert to themselves, so they are hashed
  as they are: the same id.

``LIENTHONG_GX_MEMO=0`` leaves GX as shipped (to compare, or should a GX release change what it reads).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()
_installed = False
_install_lock = threading.Lock()


def install() -> bool:
    """Wrap ``Expectation.configuration`` and ``IDDict.to_id`` once per process; False (GX left as shipped)
    when turned off or when the property is not what this module expects."""
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


@contextmanager
def remembered() -> Iterator[None]:
    """One validation, in this thread: configurations built once per expectation object, plain ids hashed as
    they are."""
    outer = getattr(_state, "configurations", None)
    _state.configurations = {} if outer is None else outer
    try:
        yield
    finally:
        _state.configurations = outer
