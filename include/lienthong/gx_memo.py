"""Great Expectations rebuilds an expectation's configuration on every access; remember it for one validation.

GX 1.x's ``Expectation.configuration`` is a property that serialises the expectation (a pydantic ``dict()``,
then a new ``ExpectationConfiguration``) each time it is read, and one validation reads it about 120 times per
expectation while it plans its metrics (once per domain, success and runtime keyword, for every metric). For
an export of a few thousand records that was about 40 % of the validation's CPU, paid per expectation and per
run whatever the rows: the fixed cost that makes many small exports slower than one large one.

Inside :func:`remembered` (one validation, in the calling thread) the first configuration built for an
expectation object is returned again for that object; outside it, and in other threads, GX behaves as
shipped. The scope is one run because GX substitutes the run's suite parameters into the configurations it
gets (in place), so a configuration kept across runs would carry the previous run's parameters. Objects are
held until the run ends so that an ``id()`` is not reused by another expectation within it.
``LIENTHONG_GX_MEMO=0`` leaves GX as shipped (to compare, or should a GX release change what it reads).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()
_installed = False
_install_lock = threading.Lock()


def install() -> bool:
    """Wrap ``Expectation.configuration`` once per process; False (GX left as shipped) when turned off or
    when the property is not what this module expects."""
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
        _installed = True
        return True


@contextmanager
def remembered() -> Iterator[None]:
    """Within this block, in this thread, each expectation object's configuration is built once."""
    outer = getattr(_state, "configurations", None)
    _state.configurations = {} if outer is None else outer
    try:
        yield
    finally:
        _state.configurations = outer
