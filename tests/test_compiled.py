"""The Cython build of the per-record hot path (setup.py) runs the same code as its Python source.

parse, normalise and vietnamese are compiled from their .py files when the package is installed with a C
compiler; lienthong/__init__.py imports the .py file instead of a build that no longer matches it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import lienthong
from lienthong import normalise, parse, vietnamese

FIXTURES = Path(__file__).parent / "fixtures" / "marc-public"
PACKAGE = Path(lienthong.__file__).parent

# Every public fixture, read the careful way and the light way, in both legacy and forced encodings.
_DUMP = r"""
import json, sys
from pathlib import Path
from lienthong import normalise, parse
from lienthong.parse import Unreadable, read_records
out = {"modules": [parse.__file__, normalise.__file__], "records": {}}
for name in sys.argv[1:]:
    path = Path(name)
    entries = []
    for light in (False, True):
        for encoding in (None, "cp1258"):
            for entry in read_records(path, encoding=encoding, light=light):
                if isinstance(entry, Unreadable):
                    entries.append(["unreadable", entry.index, entry.offset, entry.reason])
                else:
                    entries.append(["record", normalise.to_canonical(entry, "X").record_hash, entry.encoding,
                                    list(entry.repairs)])
    out["records"][path.name] = entries
print(json.dumps(out, ensure_ascii=False))
"""


def _dump(pure: bool) -> dict:
    env = {**os.environ, "LIENTHONG_PURE_PYTHON": "1" if pure else "0"}
    files = [str(p) for p in sorted(FIXTURES.glob("*/*.m*rc"))]
    done = subprocess.run([sys.executable, "-c", _DUMP, *files], env=env, capture_output=True, text=True,
                          timeout=600, check=True)
    return json.loads(done.stdout)


def _compiler() -> bool:
    return bool(shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]))


def test_the_build_compiled_the_hot_path_where_a_compiler_is_present():
    if not _compiler():
        pytest.skip("no C compiler here: lienthong installs and runs as pure Python")
    state = lienthong.compiled_modules()
    assert set(state) == set(lienthong.COMPILED)
    stale = sorted(name for name, usable in state.items() if not usable)
    assert not stale, f"the compiled build of {stale} is stale or for another system: run `make install`"


def test_a_current_build_is_imported_and_a_stale_one_is_not():
    state = lienthong.compiled_modules()
    pure = os.environ.get("LIENTHONG_PURE_PYTHON", "") not in ("", "0")
    for module in (parse, normalise, vietnamese):
        current = state.get(module.__name__.rpartition(".")[2]) is True
        assert module.__file__.endswith(".py") == (pure or not current), module.__file__


def test_compiled_and_pure_python_read_every_public_fixture_the_same():
    if not lienthong.compiled_modules():
        pytest.skip("not compiled here: there is only the Python source")
    compiled, pure = _dump(pure=False), _dump(pure=True)
    if all(lienthong.compiled_modules().values()):
        assert not any(f.endswith(".py") for f in compiled["modules"])
    assert all(f.endswith(".py") for f in pure["modules"])
    assert sum(len(entries) for entries in pure["records"].values()) > 10_000
    assert compiled["records"] == pure["records"]


def _package_copy(tmp_path) -> Path:
    state = lienthong.compiled_modules()
    if not state or not all(state.values()):
        pytest.skip("needs a current build of every compiled module")
    copy = tmp_path / "lienthong"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _imported_from(copy: Path) -> tuple[dict, str, str, bool]:
    """(compiled_modules(), normalise's file, parse's file, whether normalise was edited) in a fresh process."""
    probe = ("import json, lienthong, lienthong.normalise as n, lienthong.parse as p; "
             "print(json.dumps([lienthong.compiled_modules(), n.__file__, p.__file__, getattr(n, 'EDITED', False)]))")
    env = {**os.environ, "PYTHONPATH": str(copy.parent), "LIENTHONG_PURE_PYTHON": "0"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                          check=True)
    return tuple(json.loads(done.stdout))


def test_an_edited_module_is_imported_from_its_source_until_rebuilt(tmp_path):
    copy = _package_copy(tmp_path)
    with open(copy / "normalise.py", "a", encoding="utf-8") as source:
        source.write("\nEDITED = True\n")
    modules, normalise_file, parse_file, edited = _imported_from(copy)
    assert modules == {"parse": True, "normalise": False, "vietnamese": True}
    assert normalise_file == str(copy / "normalise.py") and edited is True
    assert parse_file.startswith(str(copy / "parse.")) and not parse_file.endswith(".py")


def test_a_build_for_another_c_library_is_not_loaded(tmp_path):
    """A host's build seen through a container's mount: the sources match, the interpreter or libc may not."""
    copy = _package_copy(tmp_path)
    built = json.loads((copy / "_compiled.json").read_text(encoding="utf-8"))
    assert built["built_for"] == lienthong.built_for()
    built["built_for"]["libc"] = "glibc 9.99"
    (copy / "_compiled.json").write_text(json.dumps(built), encoding="utf-8")
    modules, normalise_file, parse_file, _ = _imported_from(copy)
    assert modules == {"parse": False, "normalise": False, "vietnamese": False}
    assert normalise_file.endswith(".py") and parse_file.endswith(".py")
