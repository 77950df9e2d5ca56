"""OAI-PMH harvest (Koha serves it at ``/cgi-bin/koha/oai.pl``, metadataPrefix ``marc21``).

Ingest loads full snapshots of a library, so the harvester keeps the library's current records itself, in
its fetch state: the first harvest is full (no ``from``); each later one asks only for records changed since
the previous harvest's ``responseDate``, applies upserts and deletions (``<header status="deleted">``), and
then writes the complete MARCXML snapshot that ingest loads. A harvest that fails half-way changes nothing.

Responses are parsed with lxml with entities and network access refused, and a response carrying a DOCTYPE
is rejected outright (no XXE, no entity expansion).
"""
from __future__ import annotations

import copy
import logging
import os
import re
import time
from pathlib import Path

import requests
from lxml import etree

from lienthong import landing
from lienthong.transports import base
from lienthong.transports.base import FetchError, public_url, redact
from lienthong.transports.connections import Connection
from lienthong.transports.http import session_for
from lienthong.transports.state import SourceState

log = logging.getLogger(__name__)

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
MARC_NS = "http://www.loc.gov/MARC21/slim"
NS = {"oai": OAI_NS, "marc": MARC_NS}
STATE_KEY = "oai"
DEFAULT_METADATA_PREFIX = "marc21"
MAX_PAGES = 100_000
MAX_PAGE_BYTES = 256 * 1024**2
RETRIES_503 = 3
MAX_RETRY_AFTER = 60.0
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def secure_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_blank_text=True)


def parse_response(body: bytes, what: str) -> etree._Element:
    """One OAI-PMH response; a DOCTYPE (the door to entity attacks) or malformed XML is a FetchError."""
    try:
        root = etree.fromstring(body, secure_parser())
    except etree.XMLSyntaxError as exc:
        raise FetchError(f"{what}: the response is not well-formed XML ({exc})") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise FetchError(f"{what}: the response declares a DOCTYPE; refused (entities are never expanded)")
    if root.tag != f"{{{OAI_NS}}}OAI-PMH":
        raise FetchError(f"{what}: not an OAI-PMH response (root element {root.tag})")
    return root


class _Client:
    """GET requests to one OAI-PMH base URL, with flow control (503 + Retry-After) honoured a few times."""

    def __init__(self, library_code: str, base_url: str, conn: Connection | None):
        self.base_url = base_url
        self.where = f"library {library_code}, {public_url(base_url)}"
        self.secrets = conn.secrets() if conn else []
        self.session = session_for(conn)
        self.limit = min(base.max_bytes(), MAX_PAGE_BYTES)
        self.requests = 0

    def close(self) -> None:
        self.session.close()

    def get(self, params: dict[str, str]) -> etree._Element:
        what = f"{self.where} ({params.get('verb')}"
        what += ", resumptionToken)" if "resumptionToken" in params else ")"
        for attempt in range(RETRIES_503 + 1):
            try:
                with self.session.get(self.base_url, params=params, stream=True, timeout=base.timeouts()) as resp:
                    self.requests += 1
                    if resp.status_code == 503 and attempt < RETRIES_503:
                        time.sleep(_retry_after(resp.headers.get("Retry-After")))
                        continue
                    if resp.status_code != 200:
                        raise FetchError(f"{what}: the server answered HTTP {resp.status_code} "
                                         f"{redact(resp.reason or '', self.secrets)}")
                    body = bytearray()
                    for chunk in resp.iter_content(base.CHUNK):
                        body += chunk
                        if len(body) > self.limit:
                            raise FetchError(f"{what}: a response passed {self.limit:,} bytes; stopped")
            except requests.RequestException as exc:
                raise FetchError(f"{what}: {type(exc).__name__}: {redact(str(exc), self.secrets)}") from None
            return parse_response(bytes(body), what)
        raise FetchError(f"{what}: the server stayed busy (HTTP 503) after {RETRIES_503} retries")


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER)) if value else 5.0
    except ValueError:
        return 5.0


def _oai_error(root: etree._Element) -> tuple[str, str] | None:
    error = root.find("oai:error", NS)
    if error is None:
        return None
    return error.get("code", "unknown"), " ".join((error.text or "").split())


def _local_id(identifier: str) -> str:
    """Koha's identifiers end in the biblionumber: ``oai:koha.example:12345`` → ``12345``."""
    return identifier.rsplit(":", 1)[-1].rsplit("/", 1)[-1] or identifier


def record_bytes(marc: etree._Element, identifier: str) -> bytes:
    """The MARCXML record on its own (no OAI namespaces); a record without 001 gets one from its identifier,
    so the record keeps a stable local id across snapshots."""
    record = copy.deepcopy(marc)
    if record.find("marc:controlfield[@tag='001']", NS) is None:
        field = etree.Element(f"{{{MARC_NS}}}controlfield", tag="001")
        field.text = _local_id(identifier)
        leader = record.find("marc:leader", NS)
        record.insert(0 if leader is None else record.index(leader) + 1, field)
    etree.cleanup_namespaces(record, top_nsmap={None: MARC_NS})
    return etree.tostring(record, encoding="utf-8")


def _from_value(response_date: str, granularity: str | None) -> str:
    if granularity == "YYYY-MM-DD" or _DAY.match(response_date):
        return response_date[:10]
    return response_date


def harvest(library_code: str, base_url: str, conn: Connection | None, state: SourceState, *,
            metadata_prefix: str = DEFAULT_METADATA_PREFIX, oai_set: str | None = None,
            full: bool = False) -> Path:
    """Bring the library's record store up to date and return its complete MARCXML snapshot."""
    previous = state.get(STATE_KEY) or {}
    scope = {"base_url": base_url, "metadata_prefix": metadata_prefix, "set": oai_set}
    incremental = (not full and previous.get("response_date")
                   and all(previous.get(k) == v for k, v in scope.items()))
    client = _Client(library_code, base_url, conn)
    try:
        granularity = previous.get("granularity") if incremental else None
        if not incremental:
            granularity = _identify(client)
        params = {"verb": "ListRecords", "metadataPrefix": metadata_prefix}
        if oai_set:
            params["set"] = oai_set
        if incremental:
            params["from"] = _from_value(previous["response_date"], granularity)
        with state.transaction() as db:
            if not incremental:
                db.execute("DELETE FROM oai_record")
            counts, response_date = _list_records(client, params, db)
            state.put(STATE_KEY, {**scope, "granularity": granularity, "response_date": response_date,
                                  "harvested": "incremental" if incremental else "full",
                                  "upserted": counts["upserted"], "deleted": counts["deleted"]}, conn=db)
    finally:
        client.close()
    snapshot = landing.download_path(library_code, f"{library_code}-oai-{metadata_prefix}.xml")
    changed = counts["upserted"] or counts["deleted"] or not incremental
    if changed or not snapshot.is_file():
        _write_snapshot(state, snapshot)
    log.info("library %s: %s harvest of %s: %d upserted, %d deleted, %d records now (%d requests)",
             library_code, "incremental" if incremental else "full", public_url(base_url),
             counts["upserted"], counts["deleted"], state.record_count(), client.requests)
    return snapshot


def _identify(client: _Client) -> str | None:
    root = client.get({"verb": "Identify"})
    error = _oai_error(root)
    if error:
        raise FetchError(f"{client.where}: Identify failed: {error[0]} {error[1]}")
    return root.findtext("oai:Identify/oai:granularity", namespaces=NS)


def _list_records(client: _Client, params: dict[str, str], db) -> tuple[dict[str, int], str]:
    counts = {"upserted": 0, "deleted": 0}
    response_date = None
    tokens: set[str] = set()
    for _ in range(MAX_PAGES):
        root = client.get(params)
        response_date = response_date or (root.findtext("oai:responseDate", namespaces=NS) or "").strip()
        error = _oai_error(root)
        if error and error[0] == "noRecordsMatch":
            break
        if error:
            hint = ""
            if error[0] == "cannotDisseminateFormat":
                hint = f" (metadataPrefix {params.get('metadataPrefix')!r}; see the server's ListMetadataFormats)"
            raise FetchError(f"{client.where}: ListRecords failed: {error[0]} {error[1]}{hint}; nothing applied")
        listing = root.find("oai:ListRecords", NS)
        if listing is None:
            raise FetchError(f"{client.where}: ListRecords response without ListRecords element")
        for record in listing.findall("oai:record", NS):
            _apply(record, db, counts, client.where)
        token_el = listing.find("oai:resumptionToken", NS)
        token = (token_el.text or "").strip() if token_el is not None else ""
        if not token:
            break
        if token in tokens:
            raise FetchError(f"{client.where}: the server repeated a resumptionToken; harvest stopped")
        tokens.add(token)
        params = {"verb": "ListRecords", "resumptionToken": token}
    else:
        raise FetchError(f"{client.where}: more than {MAX_PAGES} pages; harvest stopped")
    if not response_date:
        raise FetchError(f"{client.where}: the response has no responseDate")
    return counts, response_date


def _apply(record: etree._Element, db, counts: dict[str, int], where: str) -> None:
    header = record.find("oai:header", NS)
    identifier = (header.findtext("oai:identifier", namespaces=NS) or "").strip() if header is not None else ""
    if not identifier:
        raise FetchError(f"{where}: a record without header/identifier")
    datestamp = (header.findtext("oai:datestamp", namespaces=NS) or "").strip()
    if header.get("status") == "deleted":
        counts["deleted"] += db.execute("DELETE FROM oai_record WHERE identifier = ?", (identifier,)).rowcount
        return
    marc = record.find("oai:metadata/marc:record", NS)
    if marc is None:
        raise FetchError(f"{where}: record {identifier} has no MARC21 record in its metadata")
    db.execute("INSERT INTO oai_record (identifier, datestamp, marcxml) VALUES (?, ?, ?) "
               "ON CONFLICT (identifier) DO UPDATE SET datestamp = excluded.datestamp, marcxml = excluded.marcxml",
               (identifier, datestamp, record_bytes(marc, identifier)))
    counts["upserted"] += 1


def _write_snapshot(state: SourceState, target: Path) -> None:
    """The library's whole current catalogue as one MARCXML collection, in identifier order."""
    partial = target.with_name(f".partial-{target.name}")
    try:
        with open(partial, "wb") as out:
            out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<collection xmlns="{MARC_NS}">\n'.encode())
            for _, blob in state.records():
                out.write(blob)
                out.write(b"\n")
            out.write(b"</collection>\n")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
