"""Who may see what in the warehouse: logins in the four lienthong roles, stewards scoped to their groups.

The rules live in PostgreSQL (migration 0007, ``sql/007_access.sql``): group roles ``lienthong_pipeline``,
``lienthong_analyst``, ``lienthong_steward`` and ``lienthong_admin``, row-level security on the quality
tables, and the functions ``access.grant_login`` / ``access.revoke_login`` which check that the caller may
manage the role (the warehouse owner for every role, a lead library's administrator for its groups'
stewards). This module only calls them, so a steward's rights are the same whatever client is used.

A password never travels in SQL text: it is hashed (SCRAM-SHA-256) on the client and only the hash is sent.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import sqlalchemy as sa

from lienthong.migrations import sql_file

ROLE_KINDS = ("steward", "admin", "analyst", "pipeline")
PER_GROUP = ("steward", "admin")




class AccessError(RuntimeError):
    """A grant or revoke the warehouse refused; the message says why."""


@dataclass
class Change:
    kind: str
    login: str
    group: str | None
    outcome: str  # created | granted | revoked | unchanged

    def to_dict(self) -> dict:
        return {"role": self.kind, "login": self.login, "group": self.group, "outcome": self.outcome}


def _password_hash(raw_connection, login: str, password: str) -> str:
    from psycopg2.extensions import encrypt_password

    return encrypt_password(password, login, raw_connection, "scram-sha-256")


def _check(kind: str, group: str | None) -> None:
    if kind not in ROLE_KINDS:
        raise AccessError(f"unknown role {kind!r}: one of {', '.join(ROLE_KINDS)}")
    if kind in PER_GROUP and not group:
        raise AccessError(f"a {kind} belongs to a group: give --group")
    if kind not in PER_GROUP and group:
        raise AccessError(f"the {kind} role is province-wide: give no --group")


def _call(engine: sa.Engine, sql: str, params: dict) -> str:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            try:
                cursor.execute(sql, params)
                outcome = cursor.fetchone()[0]
            except Exception as exc:  # psycopg2 errors carry the server's message in pgerror
                raw.rollback()
                message = (getattr(exc, "pgerror", None) or str(exc)).strip().splitlines()[0]
                raise AccessError(message.removeprefix("ERROR:").strip()) from None
        raw.commit()
        return outcome
    finally:
        raw.close()


def grant(engine: sa.Engine, kind: str, login: str, group: str | None = None,
          password: str | None = None) -> Change:
    """Make ``login`` a member of the role (creating the login if needed); a steward also gets the group."""
    _check(kind, group)
    password_hash = None
    if password:
        raw = engine.raw_connection()
        try:
            password_hash = _password_hash(raw.driver_connection, login, password)
        finally:
            raw.close()
    outcome = _call(engine, "SELECT access.grant_login(%(kind)s, %(login)s, %(group)s, %(hash)s)",
                    {"kind": kind, "login": login, "group": group, "hash": password_hash})
    return Change(kind, login, group, outcome)


def revoke(engine: sa.Engine, kind: str, login: str, group: str | None = None) -> Change:
    """Take the group (or the role) from ``login``; the login keeps existing but loses the role's rights."""
    _check(kind, group)
    outcome = _call(engine, "SELECT access.revoke_login(%(kind)s, %(login)s, %(group)s)",
                    {"kind": kind, "login": login, "group": group})
    return Change(kind, login, group, outcome)


def password_from_env(variable: str | None) -> str | None:
    """Passwords come from the environment, never from the command line (visible to every local user)."""
    if not variable:
        return None
    value = os.environ.get(variable)
    if not value:
        raise AccessError(f"environment variable {variable} is empty or unset")
    return value


def list_access(engine: sa.Engine) -> dict:
    """Members of the lienthong roles, stewards and administrators with their groups (what the caller may see)."""
    with engine.connect() as conn:
        members = conn.execute(sa.text(
            """SELECT g.rolname AS role, m.rolname AS login, m.rolcanlogin AS can_login
               FROM pg_auth_members am
               JOIN pg_roles g ON g.oid = am.roleid
               JOIN pg_roles m ON m.oid = am.member
               WHERE g.rolname IN ('lienthong_pipeline', 'lienthong_analyst', 'lienthong_steward', 'lienthong_admin')
               ORDER BY g.rolname, m.rolname""")).mappings().all()
        stewards = conn.execute(sa.text(
            """SELECT sg.role_name AS login, sg.group_code AS "group", sg.granted_by, sg.granted_at,
                      (SELECT count(*) FROM core.group_membership gm WHERE gm.group_code = sg.group_code
                         AND gm.valid_from <= current_date
                         AND (gm.valid_to IS NULL OR gm.valid_to >= current_date)) AS libraries
               FROM access.steward_group sg ORDER BY sg.group_code, sg.role_name""")).mappings().all()
        admins = conn.execute(sa.text(
            """SELECT role_name AS login, group_code AS "group", granted_by, granted_at
               FROM access.group_admin ORDER BY group_code, role_name""")).mappings().all()
    logins_of: dict[str, list[str]] = {}
    for row in members:
        logins_of.setdefault(row["role"].removeprefix("lienthong_"), []).append(row["login"])
    return {
        "roles": {kind: sorted(logins_of.get(kind, [])) for kind in ROLE_KINDS},
        "stewards": [dict(row) for row in stewards],
        "admins": [dict(row) for row in admins],
    }


def ensure_roles(engine: sa.Engine) -> None:
    """Create the four group roles if this server lacks them (they are cluster-wide, made once)."""
    with engine.begin() as conn:
        conn.execute(sa.text(sql_file("007_access_roles.sql")))


def secure(engine: sa.Engine) -> list[dict]:
    """Re-apply grants and row-level security to every table now present (after feature migrations)."""
    with engine.begin() as conn:
        rows = conn.execute(sa.text("SELECT table_name, steward_readable FROM access.secure()")).all()
    return [{"table": name, "steward_readable": readable} for name, readable in rows]
