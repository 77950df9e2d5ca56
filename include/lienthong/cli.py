"""`lienthong`: the command line of the platform. Every result a script may read has ``--json``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lienthong.commands import print_json as _print_json, selected_libraries

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# ---------------------------------------------------------------- db
def cmd_db_init(args) -> int:
    from lienthong import dimensions, migrations, warehouse

    engine = warehouse.engine()
    before, after = migrations.upgrade(engine)
    loaded = dimensions.load_registry_dimensions(engine)
    result = {"embedded": warehouse.is_embedded(), "revision_before": before, "revision": after,
              "migrated": before != after, "registry": loaded}
    if args.json:
        _print_json(result)
    else:
        where = "embedded PostgreSQL" if result["embedded"] else "PostgreSQL server"
        change = f"migrated {before or 'empty'} → {after}" if result["migrated"] else f"already at {after}"
        print(f"warehouse ready ({where}): {change}; registry: {loaded['libraries']} libraries, "
              f"{loaded['groups']} groups, {loaded['memberships']} memberships")
    return EXIT_OK


def cmd_db_url(args) -> int:
    from lienthong import warehouse

    print(warehouse.psql_url(with_password=args.with_password))
    return EXIT_OK


def cmd_db_stop(args) -> int:
    from lienthong import warehouse

    if not warehouse.is_embedded():
        print("LIENTHONG_WAREHOUSE_URL is set: the server is not lienthong's to stop")
        return EXIT_OK
    print("embedded warehouse stopped" if warehouse.stop() else "embedded warehouse was not running")
    return EXIT_OK


def cmd_db_psql(args) -> int:
    from lienthong import warehouse

    url = warehouse.psql_url()
    binary = str(warehouse.psql_binary()) if warehouse.is_embedded() else "psql"
    if warehouse.password():  # through the environment, never on a command line other users can list
        os.environ["PGPASSWORD"] = warehouse.password()
    os.execvp(binary, [binary, url, *args.psql_args])
    return EXIT_FAILED  # unreachable: execvp replaces the process


# ---------------------------------------------------------------- registry
def cmd_registry_validate(args) -> int:
    from lienthong.registry import RegistryError, load_registry

    try:
        registry = load_registry(args.file)
    except RegistryError as exc:
        if args.json:
            _print_json({"valid": False, "problems": exc.problems})
        else:
            print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    summary = {"valid": True, "file": str(registry.path), "libraries": len(registry.libraries),
               "groups": len(registry.groups)}
    if args.json:
        _print_json(summary)
    else:
        print(f"{registry.path}: valid ({summary['libraries']} libraries, {summary['groups']} groups)")
    return EXIT_OK


def cmd_registry_show(args) -> int:
    from lienthong.registry import load_registry

    registry = load_registry(args.file)
    data = registry.to_dict()
    if args.json:
        _print_json(data)
        return EXIT_OK
    print(f"Registry {registry.path}")
    print(f"\nGroups ({len(data['groups'])}):")
    for group in data["groups"]:
        lead = registry.libraries[group["lead_library"]].name
        print(f"  {group['code']:<24} {group['linking_mode']:<20} lead: {lead} "
              f"({len(group['members'])} members)")
    print(f"\nLibraries ({len(data['libraries'])}):")
    for lib in data["libraries"]:
        print(f"  {lib['code']:<24} {lib['type']:<20} {lib['name']}")
    return EXIT_OK


# ---------------------------------------------------------------- demo
def cmd_demo_generate(args) -> int:
    from lienthong import config
    from lienthong.demo import generate_province
    from lienthong.demo_run import library_specs
    from lienthong.registry import load_registry

    registry = load_registry()
    out_root = Path(args.out) if args.out else config.drop_root()
    truth = generate_province(library_specs(registry), out_root, scale=args.scale, seed=args.seed)
    if args.json:
        _print_json({"out": str(out_root), "ground_truth": str(out_root / "ground_truth.json"),
                     "totals": truth["totals"], "libraries": len(truth["libraries"])})
    else:
        totals = truth["totals"]
        print(f"generated {len(truth['libraries'])} library exports in {out_root}: {totals['records']} records, "
              f"{totals['items']} items; injected defects: "
              + ", ".join(f"{rule} {n}" for rule, n in sorted(totals["defects"].items())))
        print(f"ground truth: {out_root / 'ground_truth.json'}")
    return EXIT_OK


def cmd_demo_run(args) -> int:
    from lienthong import demo_run

    return demo_run.run(scale=args.scale, seed=args.seed)


# ---------------------------------------------------------------- ingest
def _format_result(result) -> str:
    line = (f"{result.library}: {result.status} — read {result.read}, loaded {result.loaded}, "
            f"quarantined {result.quarantined}, unreadable {result.unreadable}")
    if result.message:
        line += f"\n  {result.message}"
    for rule, n in result.quarantine_reasons.items():
        line += f"\n  quarantined {n}: {rule}"
    for reason in result.unreadable_reasons[:5]:
        line += f"\n  unreadable: {reason}"
    return line


def cmd_ingest(args) -> int:
    from lienthong.ingest import IngestError, ingest_library
    from lienthong.registry import load_registry
    from lienthong.sources import SourceError

    registry = load_registry()
    codes = selected_libraries(args, registry)
    if codes is None:
        return EXIT_USAGE

    results, failed = [], False
    for code in codes:  # one library's failure must not stop the others
        try:
            result = ingest_library(code, args.file, registry=registry)
            results.append(result.to_dict())
            failed |= result.status == "failed"
            if not args.json:
                print(_format_result(result))
        except (IngestError, SourceError) as exc:
            failed = True
            results.append({"library": code, "status": "failed", "message": str(exc)})
            if not args.json:
                print(f"{code}: failed — {exc}", file=sys.stderr)
    if args.json:
        _print_json(results[0] if args.library else results)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_summary(args) -> int:
    from lienthong import warehouse
    from lienthong.summary import format_summary, province_summary

    summary = province_summary(warehouse.engine())
    if args.json:
        _print_json(summary)
    else:
        print(format_summary(summary))
    return EXIT_OK


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lienthong",
        description="Liên thông thư viện: pull library exports, check them, load the warehouse, build the "
                    "union catalogue and the period reports of Hòa Bình province.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="the PostgreSQL warehouse (embedded unless LIENTHONG_WAREHOUSE_URL is set)")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = db_commands.add_parser("init", help="start the embedded server if needed, apply migrations, load the "
                                            "registry (running it twice changes nothing)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_db_init)
    p = db_commands.add_parser("url", help="print a connection URL that psql accepts (password left out)")
    p.add_argument("--with-password", action="store_true", help="include the password of LIENTHONG_WAREHOUSE_URL")
    p.set_defaults(func=cmd_db_url)
    p = db_commands.add_parser("stop", help="stop the embedded server")
    p.set_defaults(func=cmd_db_stop)
    from lienthong.backup import add_commands as add_backup_commands

    add_backup_commands(db_commands)
    p = db_commands.add_parser("psql", help="open psql on the warehouse (extra arguments go to psql)")
    p.add_argument("psql_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_db_psql)

    reg = commands.add_parser("registry", help="the registry of libraries, groups and export sources")
    reg_commands = reg.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    p = reg_commands.add_parser("validate", help="check a registry file and report every problem with its line")
    p.add_argument("file", nargs="?", help="registry YAML (default: LIENTHONG_REGISTRY or the packaged one)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_registry_validate)
    p = reg_commands.add_parser("show", help="list groups and libraries")
    p.add_argument("--file", help="registry YAML (default: LIENTHONG_REGISTRY or the packaged one)")
    p.add_argument("--json", action="store_true", help="print {libraries: [...], groups: [...]} as JSON")
    p.set_defaults(func=cmd_registry_show)

    demo = commands.add_parser("demo", help="the sample province")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    p = demo_commands.add_parser("generate", help="write deterministic sample exports for every registry library "
                                                  "with a ground-truth manifest of injected defects")
    p.add_argument("--scale", type=float, default=1.0, help="multiplier of records per library (default 1)")
    p.add_argument("--seed", type=int, default=20261125, help="random seed (default 20261125)")
    p.add_argument("--out", help="root folder (default: the drop root, var/drop)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_demo_generate)
    p = demo_commands.add_parser("run", help="what `make demo` does: init, generate, run the ingest DAG through "
                                             "Airflow, print the province summary")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=20261125)
    p.set_defaults(func=cmd_demo_run)

    p = commands.add_parser("ingest", help="ingest a library's newest export (or --file) into the warehouse")
    p.add_argument("--library", help="library code from the registry")
    p.add_argument("--all", action="store_true", help="every active library in the registry")
    p.add_argument("--file", help="an export file instead of the newest one in the drop folder")
    p.add_argument("--json", action="store_true",
                   help="print read/loaded/quarantined/unreadable and the reasons as JSON")
    p.set_defaults(func=cmd_ingest)

    p = commands.add_parser("summary", help="the province summary: libraries, records, items, completeness")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_summary)

    from lienthong.commands import register_all

    register_all(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["db", "psql"] and argv[2:3] not in (["-h"], ["--help"]):
        # Everything after `db psql` belongs to psql (argparse would take `-c ...` as its own options).
        args = argparse.Namespace(func=cmd_db_psql, psql_args=argv[2:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error for users; tracebacks with LIENTHONG_DEBUG=1
        if os.environ.get("LIENTHONG_DEBUG"):
            raise
        print(f"lienthong: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
