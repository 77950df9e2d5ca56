"""Transports against real servers on loopback: HTTP (Basic auth, ETag), SFTP (paramiko), OAI-PMH (Koha-style).

Nothing of the transport is mocked: each test starts a server in a thread on 127.0.0.1 and the code under
test talks to it over a socket. Credentials are handed over only as AIRFLOW_CONN_<ID> variables.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import socket
import threading
import traceback
from dataclasses import replace
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import paramiko
import pytest
import sqlalchemy as sa

from lienthong import landing, sources
from lienthong.registry import ExportSource, RegistryError, load_registry
from lienthong.transports import FetchError
from lienthong.transports.connections import ConnectionProblem, get_connection, parse_json, parse_uri
from lienthong.transports.state import SourceState

OAI_FIXTURES = Path(__file__).parent / "fixtures" / "oai"
PASSWORD = "Mk-9f3Xq7!bv"  # what must never show up in a message or a log
LOGIN = "thuvien_chvt"


@pytest.fixture
def landing_dir(tmp_path, monkeypatch):
    """A private landing root, so fetch state and downloads of one test never leak into another."""
    monkeypatch.setenv("LIENTHONG_LANDING_ROOT", str(tmp_path / "landing"))
    monkeypatch.setenv("LIENTHONG_DROP_ROOT", str(tmp_path / "drop"))
    return tmp_path / "landing"


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def with_source(registry, code: str, **source) -> object:
    """The registry with library ``code`` switched to another source (the registry object, not the YAML)."""
    library = registry.libraries[code]
    libraries = dict(registry.libraries)
    libraries[code] = replace(library, source=ExportSource(**source))
    return replace(registry, libraries=libraries)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert quote(PASSWORD, safe="") not in text
        assert base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode() not in text


# ---------------------------------------------------------------- HTTP and OAI-PMH server

class _Handler(BaseHTTPRequestHandler):
    server: "_WebServer"

    def log_message(self, format, *args):  # keep the request line for assertions, off stderr
        self.server.log.append(self.path)

    def _authorised(self) -> bool:
        expected = "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.send_response(401, "Unauthorized")
        self.send_header("WWW-Authenticate", 'Basic realm="thu vien"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self):
        if not self._authorised():
            return
        parts = urlsplit(self.path)
        if parts.path == "/cgi-bin/koha/oai.pl":
            return self._oai(parse_qs(parts.query))
        if parts.path == "/endless":
            self.send_response(200)
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\x1d" * 65536)
            return
        export = self.server.exports.get(parts.path)
        if export is None:
            self.send_error(404)
            return
        body, name = export
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.server.full_downloads += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/marc")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", formatdate(1_790_000_000, usegmt=True))
        if name:
            self.send_header("Content-Disposition", f'attachment; filename="{name}"')
        self.end_headers()
        self.wfile.write(body)

    def _oai(self, query: dict[str, list[str]]):
        args = {k: v[0] for k, v in query.items()}
        self.server.oai_requests.append(args)
        verb = args.get("verb")
        if verb == "Identify":
            name = "identify.xml"
        elif verb == "ListRecords" and "resumptionToken" in args:
            token = "marc21/3/0001-01-01T00:00:00Z/2026-11-20T02:00:00Z//0/0"
            name = "listrecords-full-2.xml" if args["resumptionToken"] == token else "error-badresumptiontoken.xml"
        elif verb == "ListRecords" and args.get("metadataPrefix") == "marc21":
            name = {None: "listrecords-full-1.xml", "2026-11-20T02:00:00Z": "listrecords-from-2026-11-20.xml",
                    "2026-11-25T02:00:00Z": "listrecords-norecordsmatch.xml"}.get(args.get("from"))
        else:
            name = None
        name = self.server.oai_override.get(name, name)
        if name is None:
            self.send_error(400)
            return
        body = (OAI_FIXTURES / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _WebServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.exports: dict[str, tuple[bytes, str | None]] = {}
        self.full_downloads = 0
        self.log: list[str] = []
        self.oai_requests: list[dict[str, str]] = []
        self.oai_override: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        """The client hanging up on purpose (size cap) is expected; anything else fails loudly."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture
def web_server():
    server = _WebServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


# ---------------------------------------------------------------- SFTP server

class _SSHServer(paramiko.ServerInterface):
    def check_auth_password(self, username, password):
        ok = username == LOGIN and password == PASSWORD
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username):
        return "password"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _FolderSFTP(paramiko.SFTPServerInterface):
    """A read-only SFTP view of one local folder (the library's export folder on its server)."""

    opened: list[str] = []

    def __init__(self, server, root: Path, *args, **kwargs):
        super().__init__(server, *args, **kwargs)
        self.root = root.resolve()

    def _real(self, path: str) -> Path:
        real = (self.root / path.lstrip("/")).resolve()
        if real != self.root and self.root not in real.parents:
            raise PermissionError(path)
        return real

    def list_folder(self, path):
        try:
            folder = self._real(path)
            return [paramiko.SFTPAttributes.from_stat(child.stat(), filename=child.name)
                    for child in sorted(folder.iterdir())]
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or 2)

    def stat(self, path):
        try:
            return paramiko.SFTPAttributes.from_stat(self._real(path).stat())
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or 2)

    lstat = stat

    def open(self, path, flags, attr):
        if flags & (os.O_WRONLY | os.O_RDWR):
            return paramiko.SFTP_PERMISSION_DENIED
        try:
            real = self._real(path)
            handle = paramiko.SFTPHandle(flags)
            handle.filename = str(real)
            handle.readfile = open(real, "rb")
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or 2)
        _FolderSFTP.opened.append(real.name)
        return handle


class _SFTPServer:
    def __init__(self, root: Path):
        self.root = root
        self.host_key = paramiko.ECDSAKey.generate()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.transports: list[paramiko.Transport] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            transport = paramiko.Transport(client)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _FolderSFTP, self.root)
            self.transports.append(transport)
            # Negotiate in its own thread: a client that gives up mid-handshake (wrong host key) must not keep
            # the next client waiting for its banner.
            threading.Thread(target=self._negotiate, args=(transport,), daemon=True).start()

    @staticmethod
    def _negotiate(transport: paramiko.Transport) -> None:
        try:
            transport.start_server(server=_SSHServer())
        except (paramiko.SSHException, EOFError, OSError):
            transport.close()

    @property
    def host_key_line(self) -> str:
        return f"{self.host_key.get_name()} {self.host_key.get_base64()}"

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for transport in self.transports:
            transport.close()
        self.sock.close()


@pytest.fixture
def sftp_server(tmp_path):
    root = tmp_path / "sftp-root"
    (root / "exports" / "koha").mkdir(parents=True)
    server = _SFTPServer(root)
    _FolderSFTP.opened = []
    yield server
    server.close()


# ---------------------------------------------------------------- connections

@pytest.mark.parametrize("uri", [
    "sftp://thuvien_chvt:Mk-9f3Xq7%21bv@sftp.thpt-chvt.example.vn:2222/exports?no_host_key_check=true",
    "http://user%40truong:p%2Fw%3Ad@thuvien.example.vn/koha",
    "https://user:pw@example.vn:8443/oai?__extra__=%7B%22verify%22%3A+false%7D",
    "generic://@?token=abc",
])
def test_connection_uri_parsed_as_airflow_does(uri):
    """Our resolver and Airflow's own Connection agree field by field on the URI forms stewards will use."""
    from airflow.sdk import Connection as AirflowConnection

    ours = parse_uri(uri, "c")
    theirs = AirflowConnection.from_uri(uri, conn_id="c")
    fields = ("conn_type", "host", "login", "password", "schema", "port")
    assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) or None for f in fields]
    assert dict(ours.extra) == theirs.extra_dejson


def test_connection_from_env_json_and_uri(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_HTTP_CHVT", json.dumps(
        {"conn_type": "http", "login": LOGIN, "password": PASSWORD, "port": "443", "extra": {"verify": False}}))
    conn = get_connection("lienthong_http_chvt")
    assert (conn.login, conn.password, conn.port, conn.extra["verify"]) == (LOGIN, PASSWORD, 443, False)
    assert PASSWORD not in repr(conn)
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_HTTP_CHVT", f"http://{LOGIN}:{quote(PASSWORD, safe='')}@h.example.vn")
    assert get_connection("lienthong_http_chvt").password == PASSWORD
    assert parse_json('{"conn_type": "sftp", "extra": "{\\"host_key\\": \\"k\\"}"}', "x").extra == {"host_key": "k"}


def test_missing_or_broken_connection_is_named_without_its_value(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_LIENTHONG_NOWHERE", raising=False)
    with pytest.raises(ConnectionProblem, match="AIRFLOW_CONN_LIENTHONG_NOWHERE"):
        get_connection("lienthong_nowhere")
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_NOWHERE", '{"login": "a", "password": "' + PASSWORD + '", "port": "x"}')
    with pytest.raises(ConnectionProblem) as caught:
        get_connection("lienthong_nowhere")
    assert "port" in str(caught.value)
    assert_no_secret(str(caught.value))


# ---------------------------------------------------------------- registry keys

def _registry_with(tmp_path, source_line: str) -> Path:
    from lienthong.registry import PACKAGED_REGISTRY

    text = PACKAGED_REGISTRY.read_text(encoding="utf-8")
    anchor = "  - code: THPT-CHVT\n"
    assert text.count(anchor) == 1
    path = tmp_path / "registry.yaml"
    path.write_text(text.replace(anchor, anchor + f"    source: {source_line}\n"), encoding="utf-8")
    return path


def test_registry_accepts_remote_sources(tmp_path):
    path = _registry_with(tmp_path, "{transport: oai-pmh, location: 'https://thuvien.example.vn/cgi-bin/koha/oai.pl', "
                                    "connection: lienthong_oai_thpt_chvt, set: STK, metadata_prefix: marc21}")
    source = load_registry(path).libraries["THPT-CHVT"].source
    assert (source.transport, source.connection, source.set, source.metadata_prefix) == (
        "oai-pmh", "lienthong_oai_thpt_chvt", "STK", "marc21")
    path = _registry_with(tmp_path, "{transport: sftp, location: 'sftp://sftp.example.vn/exports', "
                                    "connection: lienthong_sftp_thpt_chvt, pattern: 'chvt-*.mrc'}")
    assert load_registry(path).libraries["THPT-CHVT"].source.pattern == "chvt-*.mrc"


@pytest.mark.parametrize("source_line, problem", [
    ("{transport: http, location: 'https://chvt:secret@thuvien.example.vn/export.mrc'}", "must not carry a user"),
    ("{transport: sftp, location: 'sftp://sftp.example.vn/exports'}", "source.connection: is required for"),
    ("{transport: sftp, location: 'sftp://h.example.vn/x', connection: 'bad id!'}", "not an Airflow connection id"),
    ("{transport: sftp, location: 'sftp://h.example.vn/x', connection: c, pattern: '../*.mrc'}", "no folder"),
    ("{transport: oai-pmh, location: 'ftp://h.example.vn/oai'}", "must be a URL starting with http:// or https://"),
    ("{transport: oai-pmh, location: 'https://h.example.vn/oai', metadata_prefix: 'marc 21'}", "metadataPrefix"),
])
def test_registry_rejects_bad_remote_sources(tmp_path, source_line, problem):
    with pytest.raises(RegistryError) as caught:
        load_registry(_registry_with(tmp_path, source_line))
    assert problem in str(caught.value)
    assert re.match(r"registry\.yaml:\d+: libraries\[\d+\]\.source", str(caught.value)), str(caught.value)


# ---------------------------------------------------------------- local drop folder

def test_local_transport_keeps_drop_folder_behaviour(landing_dir, registry, tmp_path):
    folder = tmp_path / "drop" / "THPT-CHVT"
    folder.mkdir(parents=True)
    (folder / "old.mrc").write_bytes(b"old")
    (folder / "new.mrc").write_bytes(b"new")
    (folder / "notes.txt").write_bytes(b"not an export")
    (folder / ".hidden.mrc").write_bytes(b"hidden")
    os.utime(folder / "old.mrc", (1_700_000_000, 1_700_000_000))
    outside = tmp_path / "secret.mrc"
    outside.write_bytes(b"outside")
    (folder / "zz-link.mrc").symlink_to(outside)
    os.utime(folder / "new.mrc", (1_700_000_100, 1_700_000_100))
    assert sources.fetch_export("THPT-CHVT", registry=registry) == folder / "new.mrc"
    reg = with_source(registry, "THPT-CHVT", transport="local", location="THPT-CHVT", pattern="old*")
    assert sources.fetch_export("THPT-CHVT", registry=reg) == folder / "old.mrc"
    assert sources.fetch_export("PTDTNT-TINH", registry=registry) is None


# ---------------------------------------------------------------- HTTP

def test_http_download_is_conditional_and_authenticated(landing_dir, registry, web_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_HTTP_THPT_CHVT",
                       f"http://{LOGIN}:{quote(PASSWORD, safe='')}@thuvien.example.vn")
    web_server.exports["/exports/chvt.mrc"] = (b"first export \x1d", "CHVT-20261120.mrc")
    reg = with_source(registry, "THPT-CHVT", transport="http", location=f"{web_server.url}/exports/chvt.mrc",
                      connection="lienthong_http_thpt_chvt")

    first = sources.fetch_export("THPT-CHVT", registry=reg)
    assert first.name == "CHVT-20261120.mrc" and first.read_bytes() == b"first export \x1d"
    assert landing_dir.resolve() in first.resolve().parents
    second = sources.fetch_export("THPT-CHVT", registry=reg)
    assert second == first and web_server.full_downloads == 1  # 304: not downloaded again

    web_server.exports["/exports/chvt.mrc"] = (b"second export \x1d", "CHVT-20261127.mrc")
    third = sources.fetch_export("THPT-CHVT", registry=reg)
    assert third.read_bytes() == b"second export \x1d" and web_server.full_downloads == 2
    assert not first.exists()  # the superseded download is not kept twice (landing keeps its bytes)
    assert_no_secret(caplog.text)


def test_http_errors_name_library_and_url_never_credentials(landing_dir, registry, web_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = PASSWORD[::-1]
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_HTTP_THPT_CHVT", json.dumps(
        {"conn_type": "http", "login": LOGIN, "password": wrong}))
    web_server.exports["/x.mrc"] = (b"data", None)
    reg = with_source(registry, "THPT-CHVT", transport="http", location=f"{web_server.url}/x.mrc",
                      connection="lienthong_http_thpt_chvt")
    with pytest.raises(FetchError) as caught:
        sources.fetch_export("THPT-CHVT", registry=reg)
    message = str(caught.value)
    assert "library THPT-CHVT" in message and f"{web_server.url}/x.mrc" in message and "HTTP 401" in message
    rendered = "".join(traceback.format_exception(caught.value))
    assert wrong not in rendered and wrong not in caplog.text

    reg = with_source(registry, "THPT-CHVT", transport="http", location="http://127.0.0.1:9/x.mrc",
                      connection="lienthong_http_thpt_chvt")
    with pytest.raises(FetchError, match=r"library THPT-CHVT, http://127.0.0.1:9/x.mrc: ConnectionError"):
        sources.fetch_export("THPT-CHVT", registry=reg)


def test_http_size_cap_stops_the_download(landing_dir, registry, web_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_HTTP_THPT_CHVT", f"http://{LOGIN}:{quote(PASSWORD, safe='')}@h")
    monkeypatch.setenv("LIENTHONG_FETCH_MAX_BYTES", str(1_000_000))
    reg = with_source(registry, "THPT-CHVT", transport="http", location=f"{web_server.url}/endless",
                      connection="lienthong_http_thpt_chvt")
    with pytest.raises(FetchError, match="limit of 1,000,000 bytes"):
        sources.fetch_export("THPT-CHVT", registry=reg)
    web_server.exports["/big.mrc"] = (b"x" * 1_000_001, None)
    reg = with_source(registry, "THPT-CHVT", transport="http", location=f"{web_server.url}/big.mrc",
                      connection="lienthong_http_thpt_chvt")
    with pytest.raises(FetchError, match="is 1,000,001 bytes, over the limit"):
        sources.fetch_export("THPT-CHVT", registry=reg)
    downloads = landing.workspace("THPT-CHVT") / "download"
    assert sorted(p.name for p in downloads.iterdir()) == []  # no partial file left behind


@pytest.mark.parametrize("hostile", ["../../../../tmp/evil.mrc", "..\\..\\boot.ini", "CON", "a\x1b[2Jb.mrc",
                                     "x" * 300 + ".mrc"])
def test_http_server_chosen_name_stays_in_the_landing_folder(landing_dir, registry, web_server, monkeypatch, hostile):
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_HTTP_THPT_CHVT", f"http://{LOGIN}:{quote(PASSWORD, safe='')}@h")
    web_server.exports["/e"] = (b"payload", hostile)
    reg = with_source(registry, "THPT-CHVT", transport="http", location=f"{web_server.url}/e",
                      connection="lienthong_http_thpt_chvt")
    path = sources.fetch_export("THPT-CHVT", registry=reg)
    assert path.parent == landing.workspace("THPT-CHVT") / "download"
    assert path.read_bytes() == b"payload" and len(path.name.encode()) <= 200
    assert not (landing_dir.parent / "tmp" / "evil.mrc").exists()


# ---------------------------------------------------------------- SFTP

def _sftp_env(monkeypatch, server: _SFTPServer, password: str = PASSWORD, host_key: str | None = None):
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_SFTP_THPT_CHVT", json.dumps({
        "conn_type": "sftp", "login": LOGIN, "password": password,
        "extra": {"host_key": host_key or server.host_key_line}}))


def test_sftp_newest_matching_file_streamed_once(landing_dir, registry, sftp_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    folder = sftp_server.root / "exports" / "koha"
    for name, mtime in (("chvt-20261101.mrc", 1_790_000_000), ("chvt-20261120.mrc", 1_790_100_000),
                        ("readme.txt", 1_790_200_000), ("other-20261125.mrc", 1_790_300_000)):
        (folder / name).write_bytes(name.encode() * 1000)
        os.utime(folder / name, (mtime, mtime))
    _sftp_env(monkeypatch, sftp_server)
    reg = with_source(registry, "THPT-CHVT", transport="sftp", connection="lienthong_sftp_thpt_chvt",
                      location=f"sftp://127.0.0.1:{sftp_server.port}/exports/koha", pattern="chvt-*.mrc")
    path = sources.fetch_export("THPT-CHVT", registry=reg)
    assert path.name == "chvt-20261120.mrc"
    assert path.read_bytes() == (folder / "chvt-20261120.mrc").read_bytes()
    assert sources.fetch_export("THPT-CHVT", registry=reg) == path
    assert _FolderSFTP.opened == ["chvt-20261120.mrc"]  # the unchanged file was not read again

    reg_any = with_source(registry, "THPT-CHVT", transport="sftp", connection="lienthong_sftp_thpt_chvt",
                          location=f"sftp://127.0.0.1:{sftp_server.port}/exports/koha")
    assert sources.fetch_export("THPT-CHVT", registry=reg_any).name == "other-20261125.mrc"
    assert_no_secret(caplog.text)


def test_sftp_refuses_wrong_host_key_and_wrong_password(landing_dir, registry, sftp_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    (sftp_server.root / "exports" / "koha" / "a.mrc").write_bytes(b"a")
    reg = with_source(registry, "THPT-CHVT", transport="sftp", connection="lienthong_sftp_thpt_chvt",
                      location=f"sftp://127.0.0.1:{sftp_server.port}/exports/koha")
    impostor = paramiko.ECDSAKey.generate()
    _sftp_env(monkeypatch, sftp_server, host_key=f"{impostor.get_name()} {impostor.get_base64()}")
    with pytest.raises(FetchError, match="host key does not match") as caught:
        sources.fetch_export("THPT-CHVT", registry=reg)
    assert "library THPT-CHVT" in str(caught.value)
    assert _FolderSFTP.opened == []

    wrong = "Zz" + PASSWORD
    _sftp_env(monkeypatch, sftp_server, password=wrong)
    with pytest.raises(FetchError, match="authentication failed") as caught:
        sources.fetch_export("THPT-CHVT", registry=reg)
    rendered = "".join(traceback.format_exception(caught.value))
    assert wrong not in rendered and wrong not in caplog.text and PASSWORD not in caplog.text


# ---------------------------------------------------------------- OAI-PMH

def _oai_registry(registry, web_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_OAI_THPT_CHVT", f"http://{LOGIN}:{quote(PASSWORD, safe='')}@h")
    return with_source(registry, "THPT-CHVT", transport="oai-pmh", connection="lienthong_oai_thpt_chvt",
                       location=f"{web_server.url}/cgi-bin/koha/oai.pl", metadata_prefix="marc21")


def _snapshot_ids(path: Path) -> list[str]:
    from lxml import etree

    root = etree.parse(str(path)).getroot()
    ns = {"m": "http://www.loc.gov/MARC21/slim"}
    return [r.findtext("m:controlfield[@tag='001']", namespaces=ns) for r in root.findall("m:record", ns)]


def test_oai_full_then_incremental_harvest(landing_dir, registry, web_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    reg = _oai_registry(registry, web_server, monkeypatch)

    snapshot = sources.fetch_export("THPT-CHVT", registry=reg)
    assert [r.get("verb") for r in web_server.oai_requests] == ["Identify", "ListRecords", "ListRecords"]
    assert "from" not in web_server.oai_requests[1]  # first harvest is full
    assert _snapshot_ids(snapshot) == ["1", "2", "3", "4", "5"]  # the deleted header of 7 is not a record
    state = SourceState("THPT-CHVT").get("oai")
    assert (state["response_date"], state["harvested"]) == ("2026-11-20T02:00:00Z", "full")

    web_server.oai_requests.clear()
    snapshot = sources.fetch_export("THPT-CHVT", registry=reg)
    assert web_server.oai_requests == [{"verb": "ListRecords", "metadataPrefix": "marc21",
                                        "from": "2026-11-20T02:00:00Z"}]
    assert _snapshot_ids(snapshot) == ["1", "2", "3", "5", "6"]  # 4 deleted; 6 new (001 from its identifier)
    assert "tái bản lần thứ 2" in snapshot.read_text(encoding="utf-8")
    first_bytes = snapshot.read_bytes()

    web_server.oai_requests.clear()
    again = sources.fetch_export("THPT-CHVT", registry=reg)
    assert web_server.oai_requests[0]["from"] == "2026-11-25T02:00:00Z"  # noRecordsMatch: nothing changed
    assert again.read_bytes() == first_bytes
    assert_no_secret(caplog.text)


def test_oai_failure_half_way_applies_nothing(landing_dir, registry, web_server, monkeypatch):
    reg = _oai_registry(registry, web_server, monkeypatch)
    web_server.oai_override["listrecords-full-2.xml"] = "error-badresumptiontoken.xml"
    with pytest.raises(FetchError, match="badResumptionToken .*nothing applied") as caught:
        sources.fetch_export("THPT-CHVT", registry=reg)
    assert "library THPT-CHVT" in str(caught.value)
    state = SourceState("THPT-CHVT")
    assert state.record_count() == 0 and state.get("oai") is None

    web_server.oai_override.clear()
    web_server.oai_override["identify.xml"] = "xxe.xml"
    with pytest.raises(FetchError, match="DOCTYPE; refused"):
        sources.fetch_export("THPT-CHVT", registry=reg)


@pytest.mark.integration
def test_oai_snapshot_ingest_closes_the_deleted_record(landing_dir, registry, web_server, monkeypatch,
                                                       clean_warehouse):
    from lienthong.ingest import ingest_library

    reg = _oai_registry(registry, web_server, monkeypatch)
    first = ingest_library("THPT-CHVT", registry=reg, engine=clean_warehouse)
    assert (first.status, first.read, first.loaded) == ("applied", 5, 5), first.to_dict()
    second = ingest_library("THPT-CHVT", registry=reg, engine=clean_warehouse)
    assert second.status == "applied" and second.loaded == 5, second.to_dict()
    third = ingest_library("THPT-CHVT", registry=reg, engine=clean_warehouse)
    assert third.status == "unchanged"

    with clean_warehouse.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT local_id, title, valid_to IS NULL AS current FROM core.record "
            "WHERE library_code = 'THPT-CHVT' ORDER BY local_id, valid_from")).all()
        delivery = conn.execute(sa.text(
            "SELECT source, original_name FROM landing.delivery WHERE library_code = 'THPT-CHVT' "
            "ORDER BY delivery_id")).all()
    current = {r.local_id: r.title for r in rows if r.current}
    closed = {r.local_id for r in rows if not r.current}
    assert sorted(current) == ["1", "2", "3", "5", "6"]
    assert closed == {"2", "4"}  # 4 deleted at the source; 2's earlier version superseded
    assert "tái bản" in current["2"]
    assert len(delivery) == 2 and delivery[0].original_name == "THPT-CHVT-oai-marc21.xml"
    assert delivery[0].source.startswith("oai-pmh:")


@pytest.mark.integration
def test_a_failing_remote_library_fails_alone(landing_dir, tmp_path, monkeypatch, clean_warehouse, caplog):
    """The DAG's task body: the unreachable library raises (its mapped task fails), the next one runs."""
    from lienthong import pipeline

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LIENTHONG_REGISTRY", str(_registry_with(
        tmp_path, "{transport: http, location: 'http://127.0.0.1:9/export.mrc', connection: lienthong_http_down}")))
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_HTTP_DOWN", f"http://{LOGIN}:{quote(PASSWORD, safe='')}@h")
    with pytest.raises(FetchError, match=r"^library THPT-CHVT, http://127\.0\.0\.1:9/export\.mrc: ConnectionError"):
        pipeline.ingest_one("THPT-CHVT")
    assert pipeline.ingest_one("PTDTNT-TINH")["status"] == "no_export"
    assert_no_secret(caplog.text)


def test_fetch_command_reports_the_file_or_the_failure(landing_dir, tmp_path, web_server, monkeypatch, capsys):
    from lienthong.cli import main

    web_server.exports["/chvt.mrc"] = (b"export bytes", None)
    monkeypatch.setenv("LIENTHONG_REGISTRY", str(_registry_with(
        tmp_path, f"{{transport: http, location: '{web_server.url}/chvt.mrc', connection: lienthong_http_cli}}")))
    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_HTTP_CLI", f"http://{LOGIN}:{quote(PASSWORD, safe='')}@h")
    assert main(["fetch", "--library", "THPT-CHVT", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["size_bytes"] == 12 and out["sha256"] == hashlib.sha256(b"export bytes").hexdigest()
    assert out["source"] == f"http {web_server.url}/chvt.mrc"

    monkeypatch.setenv("AIRFLOW_CONN_LIENTHONG_HTTP_CLI", f"http://{LOGIN}:wrong-{quote(PASSWORD, safe='')}@h")
    web_server.exports["/chvt.mrc"] = (b"changed", None)
    assert main(["fetch", "--library", "THPT-CHVT", "--json"]) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert not out["ok"] and "HTTP 401" in out["error"]
    assert_no_secret(captured.out, captured.err)
