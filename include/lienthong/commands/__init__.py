"""Command groups of the `lienthong` CLI, one module per area (quality, catalog, report, …).

Each module defines ``register(commands)``: it receives the top-level ``add_subparsers()`` object, adds its
parsers and sets ``func`` on each (a callable taking the parsed args and returning an exit code). The CLI
discovers the modules here, so an area adds its commands without touching ``cli.py``.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys


def print_json(data) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def selected_libraries(args, registry) -> list[str] | None:
    """The codes `--library CODE` / `--all` (with an optional `--file`) ask for; None after a usage message."""
    if args.all:
        codes = [lib.code for lib in registry.active_libraries()]
    elif args.library:
        codes = [args.library]
    else:
        print("give --library CODE or --all", file=sys.stderr)
        return None
    if args.file and len(codes) != 1:
        print("--file needs exactly one --library", file=sys.stderr)
        return None
    return codes


def register_all(commands) -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}").register(commands)
