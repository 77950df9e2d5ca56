"""Backup and restore of the warehouse (pg_dump/pg_restore, custom format) and of the landing store.

A backup is three files side by side:

* ``FILE``: the warehouse database, pg_dump custom format (its ``landing.delivery`` table is the landing
  manifest as the warehouse knows it);
* ``FILE.manifest.json``: the dump's sha256 and every landed file's sha256 and size, checked on disk;
* ``FILE.landing.tar`` (``--with-landing``): the landed files themselves, named by their digest.

Restore goes into an empty database in one transaction, so a failed restore leaves nothing half done.
Passwords go to pg_dump/pg_restore through the environment (PGPASSWORD), never on their command line.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import sqlalchemy as sa

from lienthong import config, landing, warehouse

MANIFEST_SUFFIX = ".manifest.json"
LANDING_SUFFIX = ".landing.tar"
_LANDED_NAME = re.compile(r"^([0-9a-f]{2})/(\1[0-9a-f]{62})$")
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


class BackupError(RuntimeError):
    """A backup or restore that did not happen; the message says which step and why."""


def _binary(name: str) -> str:
    return str(warehouse.psql_binary().with_name(name))


def _libpq(database: str | None = None) -> tuple[str, dict]:
    """A password-free libpq URL and the environment carrying the password."""
    url = warehouse.sqlalchemy_url(database).set(drivername="postgresql")
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = url.password
    return url.set(password=None).render_as_string(hide_password=False), env


def _run(args: list[str], env: dict, step: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{step} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def landing_manifest(engine: sa.Engine) -> list[dict]:
    """Every landed file the warehouse knows, with whether its bytes on disk still match the digest."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT DISTINCT sha256, size_bytes FROM landing.delivery ORDER BY sha256")).all()
    files = []
    for sha, size in rows:
        sha = sha.strip()
        path = landing.path_of(sha)
        state = "missing" if not path.is_file() else ("ok" if _sha256(path) == sha else "corrupt")
        files.append({"sha256": sha, "size_bytes": int(size), "path": f"{sha[:2]}/{sha}", "state": state})
    return files


def backup(out: str | Path, *, with_landing: bool = False, database: str | None = None) -> dict:
    """Dump the warehouse to ``out`` and write the landing manifest (and the landed files) beside it."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    url, env = _libpq(database)
    engine = warehouse.engine(database)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        _run([_binary("pg_dump"), "--format=custom", "--file", str(partial), "--dbname", url], env, "pg_dump")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    with engine.connect() as conn:
        tables = conn.execute(sa.text(
            "SELECT count(*) FROM pg_tables WHERE schemaname !~ '^(pg_|information_schema$)'")).scalar_one()
    files = landing_manifest(engine)
    tar_path = None
    if with_landing:
        tar_path = Path(f"{out}{LANDING_SUFFIX}")
        with tarfile.open(tar_path, "w") as tar:
            for entry in files:
                if entry["state"] == "ok":
                    tar.add(landing.path_of(entry["sha256"]), arcname=entry["path"], recursive=False)
    manifest = {
        "format": "lienthong backup 1",
        "database": engine.url.database,
        "dump": out.name,
        "dump_sha256": _sha256(out),
        "dump_bytes": out.stat().st_size,
        "tables": int(tables),
        "landing_tar": tar_path.name if tar_path else None,
        "landing_files": files,
    }
    Path(f"{out}{MANIFEST_SUFFIX}").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    not_ok = [f for f in files if f["state"] != "ok"]
    return {"file": str(out), "manifest": f"{out}{MANIFEST_SUFFIX}", "landing_tar": str(tar_path) if tar_path else None,
            "bytes": manifest["dump_bytes"], "sha256": manifest["dump_sha256"], "tables": manifest["tables"],
            "landing_files": len(files), "landing_not_ok": not_ok}


def _is_empty(database: str) -> bool:
    engine = sa.create_engine(warehouse.sqlalchemy_url(database), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT count(*) FROM pg_tables WHERE schemaname !~ '^(pg_|information_schema$)'"
            )).scalar_one() == 0
    finally:
        engine.dispose()


def _recreate(database: str) -> None:
    admin = sa.create_engine(warehouse.sqlalchemy_url("postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    finally:
        admin.dispose()
    warehouse.dispose_engines()


def _check_landing_tar(tar_path: Path, expected: set[str]) -> None:
    with tarfile.open(tar_path, "r") as tar:
        for member in tar:
            match = _LANDED_NAME.match(member.name)
            if not member.isfile() or not match or match.group(2) not in expected:
                raise BackupError(f"{tar_path.name}: member {member.name!r} is not a landed file of this backup")


def _restore_landing(tar_path: Path, expected: set[str]) -> dict:
    """Put landed files back, refusing any member that is not a digest-named regular file of the backup."""
    root = config.landing_root()
    restored = present = 0
    with tarfile.open(tar_path, "r") as tar:
        for member in tar:
            match = _LANDED_NAME.match(member.name)
            if not member.isfile() or not match or match.group(2) not in expected:
                raise BackupError(f"{tar_path.name}: member {member.name!r} is not a landed file of this backup")
            sha = match.group(2)
            target = landing.path_of(sha)
            if target.is_file() and _sha256(target) == sha:
                present += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".incoming-", delete=False) as tmp:
                digest = hashlib.sha256()
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    tmp.write(chunk)
            if digest.hexdigest() != sha:
                os.unlink(tmp.name)
                raise BackupError(f"{tar_path.name}: {member.name} does not match its sha256")
            os.replace(tmp.name, target)
            os.chmod(target, 0o444)
            restored += 1
    return {"restored": restored, "already_present": present}


def restore(file: str | Path, *, database: str | None = None, replace: bool = False) -> dict:
    """Restore a backup into ``database`` (default: the configured one), which must be empty unless ``replace``."""
    from lienthong import access

    file = Path(file).resolve()
    if not file.is_file():
        raise BackupError(f"backup file {file} does not exist")
    manifest_path = Path(f"{file}{MANIFEST_SUFFIX}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
    if manifest and manifest["dump_sha256"] != _sha256(file):
        raise BackupError(f"{file.name} does not match the sha256 in {manifest_path.name}: damaged or replaced")
    expected = {f["sha256"] for f in manifest["landing_files"]} if manifest else set()
    tar_path = file.with_name(manifest["landing_tar"]) if manifest and manifest.get("landing_tar") else None
    if tar_path is not None and tar_path.is_file():
        _check_landing_tar(tar_path, expected)  # before the database is touched
    target = database or warehouse.sqlalchemy_url().database
    if not _DATABASE_NAME.match(target):
        raise BackupError(f"database name {target!r} is not allowed (letters, digits, _ and -)")
    if not _is_empty(target):
        if not replace:
            raise BackupError(f"database {target} is not empty: restore into a new one (--database NAME) "
                              f"or pass --replace to drop it first")
        _recreate(target)
    url, env = _libpq(target)
    access.ensure_roles(warehouse.engine(target))  # grants in the dump name the cluster-wide roles
    _run([_binary("pg_restore"), "--single-transaction", "--exit-on-error", "--dbname", url, str(file)],
         env, "pg_restore")
    result = {"file": str(file), "database": target, "verified_sha256": manifest is not None}
    if manifest:
        if tar_path is not None and tar_path.is_file():
            result["landing"] = _restore_landing(tar_path, expected)
        result["landing_missing"] = sorted(sha for sha in expected if not landing.path_of(sha).is_file())
    return result


# ---------------------------------------------------------------- `lienthong db backup|restore`
def cmd_backup(args) -> int:
    from lienthong.commands import print_json

    try:
        result = backup(args.out, with_landing=args.with_landing)
    except BackupError as exc:
        print(f"lienthong db backup: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json(result)
    else:
        print(f"warehouse dumped to {result['file']} ({result['bytes']:,} bytes, {result['tables']} tables, "
              f"sha256 {result['sha256'][:12]}…); landing manifest {result['manifest']} "
              f"({result['landing_files']} files" + (f", archived in {result['landing_tar']})" if result["landing_tar"]
                                                     else ")"))
        for entry in result["landing_not_ok"]:
            print(f"  landing file {entry['path']}: {entry['state']}", file=sys.stderr)
    return 1 if result["landing_not_ok"] else 0


def cmd_restore(args) -> int:
    from lienthong.commands import print_json

    try:
        result = restore(args.file, database=args.database, replace=args.replace)
    except BackupError as exc:
        print(f"lienthong db restore: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json(result)
    else:
        print(f"restored {result['file']} into database {result['database']}"
              + (f"; landing files restored {result['landing']['restored']}" if "landing" in result else ""))
        for sha in result.get("landing_missing", []):
            print(f"  landing file {sha[:2]}/{sha} is missing (restore with the .landing.tar)", file=sys.stderr)
    return 0


def add_commands(db_commands) -> None:
    """The `db backup` and `db restore` parsers (called from cli.py next to `db stop`)."""
    p = db_commands.add_parser("backup", help="pg_dump the warehouse (custom format) with the landing manifest")
    p.add_argument("--out", required=True, help="the dump file; FILE.manifest.json (and FILE.landing.tar) beside it")
    p.add_argument("--with-landing", action="store_true", help="also archive the landed export files")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_backup)
    p = db_commands.add_parser("restore", help="pg_restore a backup into an empty database, in one transaction")
    p.add_argument("file", help="the dump written by `db backup`")
    p.add_argument("--database", help="target database (default: the configured warehouse database)")
    p.add_argument("--replace", action="store_true", help="drop and recreate the target database first")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_restore)
