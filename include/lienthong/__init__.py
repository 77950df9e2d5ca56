"""lienthong: the data platform linking the libraries of Hòa Bình province.

parse, normalise and vietnamese may be compiled by Cython when the package is installed (setup.py): the same
source, about a third less CPU per record. A compiled module whose .py file changed after it was built, or that
was built for another interpreter or C library (a host's build seen through a container's mount), is not used;
the .py file is imported in its place, so an edit takes effect at once (`make install` rebuilds).
LIENTHONG_PURE_PYTHON=1 imports every .py file (source lines in tracebacks, cProfile sees every function).
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from pathlib import Path

COMPILED = ("parse", "normalise", "vietnamese")  # keep in step with setup.py


def built_for() -> dict:
    """This interpreter and C library, as setup.py records them for a build."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        libc = None
    return {"cache_tag": sys.implementation.cache_tag, "platform": sysconfig.get_platform(), "libc": libc}


def compiled_modules() -> dict[str, bool]:
    """module → whether its compiled build is usable (True) or not (False); absent when not compiled."""
    here = Path(__file__).parent
    try:
        built = json.loads((here / "_compiled.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        built = {}
    sources = built.get("sources", {}) if built.get("built_for") == built_for() else {}
    state = {}
    for name in COMPILED:
        if any((here / f"{name}{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            state[name] = sources.get(name) == hashlib.sha256((here / f"{name}.py").read_bytes()).hexdigest()
    return state


class _SourceOverStaleBuild:
    """A meta path finder: imports the .py file of a module whose compiled build is not usable."""

    def __init__(self, stale: set[str]) -> None:
        self.stale = stale

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.stale:
            return None
        source = Path(__file__).parent / f"{fullname.rpartition('.')[2]}.py"
        return importlib.util.spec_from_file_location(fullname, source)


_pure = os.environ.get("LIENTHONG_PURE_PYTHON", "") not in ("", "0")
_stale = {f"{__name__}.{name}" for name, current in compiled_modules().items() if _pure or not current}
if _stale:
    sys.meta_path.insert(0, _SourceOverStaleBuild(_stale))
