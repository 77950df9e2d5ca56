"""`lienthong circulation …`: ingest loans, ILL, reader cards and rotation exports; print the figures."""
from __future__ import annotations

import datetime as _dt
import sys

from lienthong.commands import print_json, selected_libraries


def _format(result) -> str:
    line = (f"{result.library} {result.kind or '?'}: {result.status} — read {result.read}, loaded {result.loaded}, "
            f"quarantined {result.quarantined}, unreadable {result.unreadable}")
    if result.message:
        line += f"\n  {result.message}"
    for rule, n in result.quarantine_reasons.items():
        line += f"\n  quarantined {n}: {rule}"
    if result.dropped_personal_columns:
        line += f"\n  personal data dropped at reading: {', '.join(result.dropped_personal_columns)}"
    return line


def cmd_ingest(args) -> int:
    from lienthong.circulation import CirculationError, ingest_circulation
    from lienthong.privacy import PatronKeyError, Pseudonymiser
    from lienthong.registry import load_registry

    registry = load_registry()
    codes = selected_libraries(args, registry)
    if codes is None:
        return 2
    if args.demo_key:
        from lienthong.privacy import ensure_demo_key

        ensure_demo_key()
    try:
        pseudonymiser = Pseudonymiser()
    except PatronKeyError as exc:
        if args.json:
            print_json({"status": "failed", "message": str(exc)})
        else:
            print(f"lienthong: {exc}", file=sys.stderr)
        return 1
    results, failed = [], False
    for code in codes:
        try:
            for result in ingest_circulation(code, args.file, args.kind, registry=registry,
                                             pseudonymiser=pseudonymiser):
                results.append(result.to_dict())
                failed |= result.status == "failed"
                if not args.json:
                    print(_format(result))
        except CirculationError as exc:
            failed = True
            results.append({"library": code, "kind": args.kind, "status": "failed", "message": str(exc)})
            if not args.json:
                print(f"{code}: failed — {exc}", file=sys.stderr)
    if args.json:
        print_json(results)
    return 1 if failed else 0


def cmd_summary(args) -> int:
    from lienthong import warehouse
    from lienthong.circulation import format_summary, province_summary

    start = _dt.date.fromisoformat(args.start) if args.start else None
    end = _dt.date.fromisoformat(args.end) if args.end else None
    summary = province_summary(warehouse.engine(), start, end)
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def register(commands) -> None:
    circ = commands.add_parser("circulation", help="loans, inter-library loan, reader cards and rotation")
    sub = circ.add_subparsers(dest="circulation_command", required=True, metavar="ACTION")
    p = sub.add_parser("ingest", help="ingest a library's newest circulation exports (drop folder circulation/) "
                                      "or --file; needs LIENTHONG_PATRON_KEY")
    p.add_argument("--library", help="library code from the registry")
    p.add_argument("--all", action="store_true", help="every active library in the registry")
    p.add_argument("--file", help="one export file instead of the drop folder's newest")
    p.add_argument("--kind", choices=("loans", "ill", "cards", "rotation"),
                   help="the export's kind (default: recognised from its header)")
    p.add_argument("--demo-key", action="store_true",
                   help="sample province only: without a configured key, use a random one in var/demo-patron.key")
    p.add_argument("--json", action="store_true", help="print one result per export as JSON")
    p.set_defaults(func=cmd_ingest)
    p = sub.add_parser("summary", help="loans, readers, ILL (fill rate, turnaround by channel), cards, rotation, "
                                       "policy flags")
    p.add_argument("--start", help="first day YYYY-MM-DD (default: all history)")
    p.add_argument("--end", help="last day YYYY-MM-DD, inclusive")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_summary)
