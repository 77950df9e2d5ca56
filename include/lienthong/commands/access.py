"""`lienthong access`: grant and revoke warehouse logins (stewards per group, admins, analysts, pipeline)."""
from __future__ import annotations

import sys

from lienthong.commands import print_json

EXIT_OK, EXIT_FAILED = 0, 1


def _grant_or_revoke(args, action: str) -> int:
    from lienthong import access, warehouse

    try:
        if action == "grant":
            password = access.password_from_env(args.password_env)
            change = access.grant(warehouse.engine(), args.role, args.login, args.group, password)
        else:
            change = access.revoke(warehouse.engine(), args.role, args.login, args.group)
    except access.AccessError as exc:
        if args.json:
            print_json({"ok": False, "action": action, "role": args.role, "login": args.login,
                        "group": args.group, "error": str(exc)})
        else:
            print(f"lienthong access {action}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print_json({"ok": True, "action": action, **change.to_dict()})
    else:
        scope = f" of group {change.group}" if change.group else ""
        print(f"{change.login}: {change.kind}{scope} — {change.outcome}")
    return EXIT_OK


def cmd_grant(args) -> int:
    return _grant_or_revoke(args, "grant")


def cmd_revoke(args) -> int:
    return _grant_or_revoke(args, "revoke")


def cmd_list(args) -> int:
    from lienthong import access, warehouse

    data = access.list_access(warehouse.engine())
    if args.json:
        print_json(data)
        return EXIT_OK
    for kind, logins in data["roles"].items():
        print(f"{kind:<9} {', '.join(logins) or '-'}")
    for row in data["stewards"]:
        print(f"steward   {row['login']:<24} group {row['group']} ({row['libraries']} libraries)")
    for row in data["admins"]:
        print(f"admin     {row['login']:<24} group {row['group']}")
    return EXIT_OK


def cmd_secure(args) -> int:
    from lienthong import access, warehouse

    tables = access.secure(warehouse.engine())
    if args.json:
        print_json({"tables": tables})
    else:
        for row in tables:
            state = "row-level secured for stewards" if row["steward_readable"] else "closed to stewards"
            print(f"{row['table']:<36} {state}")
    return EXIT_OK


def _login_args(p, action: str) -> None:
    p.add_argument("--login", required=True, help="the PostgreSQL login (3-63 of a-z, 0-9, _)")
    p.add_argument("--group", help="library group code (required for steward and admin)")
    p.add_argument("--role", default="steward", choices=("steward", "admin", "analyst", "pipeline"),
                   help=f"role to {action} (default steward)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def register(commands) -> None:
    acc = commands.add_parser("access", help="warehouse logins: stewards per group, lead-library admins, analysts")
    sub = acc.add_subparsers(dest="access_command", required=True, metavar="ACTION")
    p = sub.add_parser("grant", help="give a login a role (creating the login if needed); stewards see only "
                                     "their groups' quality results")
    _login_args(p, "grant")
    p.add_argument("--password-env", metavar="VAR",
                   help="name of an environment variable holding the login's password (never on the command line)")
    p.set_defaults(func=cmd_grant)
    p = sub.add_parser("revoke", help="take a group (or the role) from a login")
    _login_args(p, "revoke")
    p.set_defaults(func=cmd_revoke)
    p = sub.add_parser("list", help="logins of each role; stewards and admins with their groups")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("secure", help="re-apply grants and row-level security to every table (after migrations)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_secure)
