"""`lienthong fetch`: fetch one library's export with its registry transport, without ingesting it.

For checking a new library's server and connection before the DAG runs it: prints where the export came
from and the local file (or that there is none); never a credential.
"""
from __future__ import annotations

import hashlib
import sys

from lienthong.commands import print_json

EXIT_OK, EXIT_FAILED = 0, 1


def cmd_fetch(args) -> int:
    from lienthong import sources
    from lienthong.registry import load_registry

    registry = load_registry()
    library = registry.libraries.get(args.library)
    out = {"library": args.library}
    try:
        if library is None:
            raise sources.SourceError(f"library {args.library!r} is not in the registry {registry.path}")
        out.update(transport=library.source.transport, source=sources.location_label(library))
        path = sources.fetch_export(library)
    except sources.SourceError as exc:
        out.update(ok=False, error=str(exc))
        if args.json:
            print_json(out)
        else:
            print(f"lienthong fetch: {exc}", file=sys.stderr)
        return EXIT_FAILED
    out.update(ok=True, file=str(path) if path else None)
    if path is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        out.update(size_bytes=path.stat().st_size, sha256=digest.hexdigest())
    if args.json:
        print_json(out)
    elif path is None:
        print(f"{args.library}: no export ({out['source']})")
    else:
        print(f"{args.library}: {path} ({out['size_bytes']:,} bytes, sha256 {out['sha256'][:12]}…) "
              f"from {out['source']}")
    return EXIT_OK


def register(commands) -> None:
    parser = commands.add_parser("fetch", help="fetch one library's export with its transport (no ingest)")
    parser.add_argument("--library", required=True, metavar="CODE")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_fetch)
