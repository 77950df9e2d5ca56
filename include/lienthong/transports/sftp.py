"""SFTP: the newest export matching a pattern in a library's remote folder, downloaded streamed.

Host keys are verified: the connection's extra names the server key (``host_key``: "ssh-ed25519 AAAA…", as
in Airflow's SSH connection) or a ``known_hosts`` file, else the user's ``~/.ssh/known_hosts`` is used; only
an explicit ``"no_host_key_check": true`` accepts any key. Unchanged remote files (same name, size and
modification time as last time) are not downloaded again.
"""
from __future__ import annotations

import base64
import binascii
import fnmatch
import io
import logging
import os
import socket
import stat
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paramiko

from lienthong import landing
from lienthong.transports import base
from lienthong.transports.base import FetchError, SourceError, redact
from lienthong.transports.connections import Connection
from lienthong.transports.state import SourceState

log = logging.getLogger(__name__)

STATE_KEY = "sftp"
DEFAULT_PORT = 22


def _truthy(value) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"))


def _host_key(conn: Connection, where: str) -> paramiko.PKey | None:
    text = conn.extra.get("host_key")
    if not text:
        return None
    parts = str(text).split()
    key_type, data = (parts[0], parts[1]) if len(parts) >= 2 else ("ssh-rsa", parts[0])
    try:
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(data))
    except (binascii.Error, ValueError, paramiko.SSHException) as exc:
        raise SourceError(f"{where}: the connection's host_key is not a public key ({exc})") from None


def _private_key(conn: Connection, where: str) -> paramiko.PKey | None:
    text, path = conn.extra.get("private_key"), conn.extra.get("key_file")
    passphrase = conn.extra.get("private_key_passphrase") or None
    if not text and not path:
        return None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            if text:
                return cls.from_private_key(io.StringIO(str(text)), password=passphrase)
            return cls.from_private_key_file(str(path), password=passphrase)
        except (paramiko.SSHException, ValueError):
            continue
        except OSError as exc:
            raise SourceError(f"{where}: cannot read the key_file of the connection: {exc.strerror}") from None
    raise SourceError(f"{where}: the connection's private key is not an Ed25519, ECDSA or RSA key, "
                      f"or its passphrase is wrong")


def _client(conn: Connection, host: str, port: int, where: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    expected = _host_key(conn, where)
    if expected is not None:
        name = host if port == DEFAULT_PORT else f"[{host}]:{port}"
        client.get_host_keys().add(name, expected.get_name(), expected)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    elif _truthy(conn.extra.get("no_host_key_check")):
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    else:
        known = conn.extra.get("known_hosts")
        try:
            client.load_host_keys(str(known)) if known else client.load_system_host_keys()
        except OSError as exc:
            raise SourceError(f"{where}: cannot read known_hosts {known}: {exc.strerror}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def parse_location(location: str) -> tuple[str, int, str]:
    parts = urlsplit(location)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise SourceError(f"{base.public_url(location)}: invalid port") from None
    if not parts.hostname:
        raise SourceError(f"{base.public_url(location)}: no host in the SFTP location")
    return parts.hostname, port, unquote(parts.path) or "."


def fetch(library_code: str, location: str, conn: Connection, state: SourceState,
          pattern: str | None, suffixes: frozenset[str]) -> Path | None:
    """Download the newest regular file in the remote folder matching ``pattern`` (else a known suffix)."""
    host, port, folder = parse_location(location)
    where = f"library {library_code}, {base.public_url(location)}"
    secrets = conn.secrets()
    connect_timeout, read_timeout = base.timeouts()
    client = _client(conn, host, port, where)
    try:
        try:
            client.connect(host, port=port, username=conn.login, password=conn.password,
                           pkey=_private_key(conn, where), timeout=connect_timeout,
                           banner_timeout=connect_timeout, auth_timeout=connect_timeout,
                           allow_agent=False, look_for_keys=False)
        except paramiko.BadHostKeyException:
            raise FetchError(f"{where}: the server's host key does not match the one in the connection "
                             f"(possible impersonation); nothing was downloaded") from None
        except paramiko.AuthenticationException:
            raise FetchError(f"{where}: authentication failed (check the login and password or key of the "
                             f"connection {conn.conn_id})") from None
        except paramiko.SSHException as exc:
            raise FetchError(f"{where}: SSH error: {redact(str(exc), secrets)}") from None
        except (OSError, socket.timeout) as exc:
            raise FetchError(f"{where}: cannot connect: {redact(str(exc), secrets)}") from None
        try:
            with client.open_sftp() as sftp:
                sftp.get_channel().settimeout(read_timeout)
                return _download_newest(sftp, library_code, folder, where, state, pattern, suffixes)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise FetchError(f"{where}: SFTP error: {redact(str(exc) or type(exc).__name__, secrets)}") from None
    finally:
        client.close()


def _matches(name: str, pattern: str | None, suffixes: frozenset[str]) -> bool:
    if name.startswith("."):
        return False
    if pattern:
        return fnmatch.fnmatchcase(name, pattern)
    return os.path.splitext(name)[1].lower() in suffixes


def _download_newest(sftp: paramiko.SFTPClient, library_code: str, folder: str, where: str,
                     state: SourceState, pattern: str | None, suffixes: frozenset[str]) -> Path | None:
    entries = [e for e in sftp.listdir_attr(folder)
               if e.st_mode is not None and stat.S_ISREG(e.st_mode) and _matches(e.filename, pattern, suffixes)]
    if not entries:
        log.info("%s: no file matching %s", where, pattern or ", ".join(sorted(suffixes)))
        return None
    newest = max(entries, key=lambda e: (e.st_mtime or 0, e.filename))
    remote = {"folder": folder, "name": newest.filename, "size": newest.st_size, "mtime": newest.st_mtime}
    previous = state.get(STATE_KEY) or {}
    if previous.get("remote") == remote:
        kept = landing.download_path(library_code, previous["file"])
        if kept.is_file():
            log.info("%s: %s unchanged since the last download", where, newest.filename)
            return kept
    limit = base.max_bytes()
    if (newest.st_size or 0) > limit:
        raise FetchError(f"{where}: {newest.filename} is {newest.st_size:,} bytes, over the limit of {limit:,} "
                         f"(LIENTHONG_FETCH_MAX_BYTES)")
    target = landing.download_path(library_code, newest.filename)
    partial = target.with_name(f".partial-{target.name}")
    deadline = time.monotonic() + base.deadline_seconds()
    size = 0
    try:
        with sftp.open(f"{folder.rstrip('/')}/{newest.filename}", "rb") as src, open(partial, "wb") as out:
            src.prefetch(newest.st_size)
            while chunk := src.read(base.CHUNK):
                size += len(chunk)
                if size > limit:
                    raise FetchError(f"{where}: {newest.filename} passed the limit of {limit:,} bytes; stopped")
                if time.monotonic() > deadline:
                    raise FetchError(f"{where}: the download took longer than {base.deadline_seconds():.0f} s "
                                     f"(LIENTHONG_FETCH_DEADLINE)")
                out.write(chunk)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    if previous.get("file") and previous["file"] != target.name:
        landing.download_path(library_code, previous["file"]).unlink(missing_ok=True)
    state.put(STATE_KEY, {"remote": remote, "file": target.name, "size": size})
    log.info("%s: downloaded %s (%d bytes)", where, newest.filename, size)
    return target
