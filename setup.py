"""Build lienthong: the metadata is in pyproject.toml; this file only compiles the per-record hot path.

parse, normalise and vietnamese run once for every record of every export. Cython compiles these same
Python files to C (nothing is rewritten, the .py files stay the source of truth), which takes about a third
off the decode workers' CPU. Where no C compiler is found the build goes on without them and lienthong runs
the same code as plain Python. `lienthong/__init__.py` skips a compiled module whose source has changed since
it was built, so an edit takes effect without a rebuild.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PACKAGE = Path(__file__).parent / "include" / "lienthong"
COMPILED = ("parse", "normalise", "vietnamese")  # keep in step with lienthong.COMPILED


class BuildHotPath(build_ext):
    """build_ext that records what each module was compiled from and for (lienthong/_compiled.json)."""

    def run(self) -> None:
        super().run()
        if not self.extensions:
            return
        sources = {}
        for extension in self.extensions:
            name = extension.name.rsplit(".", 1)[1]
            if Path(self.get_ext_fullpath(extension.name)).exists():
                sources[name] = hashlib.sha256((PACKAGE / f"{name}.py").read_bytes()).hexdigest()
        target = Path(self.get_ext_fullpath(self.extensions[0].name)).parent / "_compiled.json"
        built = {"built_for": _built_for(), "sources": sources}
        target.write_text(json.dumps(built, indent=1, sort_keys=True) + "\n")


def _built_for() -> dict:
    """The interpreter and C library this build is for, computed by the package's own code, which checks them
    at import (lienthong/__init__.py needs nothing but the standard library)."""
    spec = importlib.util.spec_from_file_location("_lienthong_package", PACKAGE / "__init__.py")
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    return package.built_for()


def extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    modules = cythonize([Extension(f"lienthong.{name}", [f"include/lienthong/{name}.py"]) for name in COMPILED],
                        compiler_directives={"language_level": 3}, build_dir="build/cython", quiet=True)
    for module in modules:
        module.optional = True  # no compiler: warn and install the .py files alone (cythonize drops this flag)
    return modules


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildHotPath})
