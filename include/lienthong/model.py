"""The canonical record: the contract between normalise, validate and load.

Every export format ends up as these two types, so later stages never see MARC, CSV or XLSX.
"""
from __future__ import annotations

import hashlib
from typing import ClassVar

import msgspec

# The hashed payload is compact JSON with sorted keys and raw UTF-8: byte for byte what
# json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")) writes (tests/test_model.py), so
# hashes stored before msgspec took over still match.
_HASH_JSON = msgspec.json.Encoder(order="sorted")


class Item(msgspec.Struct, gc=False):
    """One physical copy held by a library."""

    accession_number: str | None = None  # số đăng ký cá biệt (ĐKCB)
    call_number: str | None = None  # ký hiệu xếp giá
    barcode: str | None = None
    collection: str | None = None
    item_type: str | None = None
    location: str | None = None
    status: str | None = None


class CanonicalRecord(msgspec.Struct, gc=False):
    """One bibliographic record of one library, format-independent and NFC.

    A msgspec Struct that the garbage collector does not track (it holds text, numbers and lists of them, never
    a cycle): an ingest holds hundreds of thousands at once, and the collector would scan each several times.
    """

    library_code: str
    local_id: str
    record_index: int
    byte_offset: int | None = None
    title: str | None = None
    author: str | None = None
    pub_place: str | None = None
    publisher: str | None = None
    pub_year: str | None = None
    isbns: list[str] = []  # msgspec gives every instance its own empty list
    language: str | None = None
    keywords: list[str] = []
    subjects: list[str] = []
    call_number: str | None = None
    quantity: int | None = None
    encoding: str = "utf-8"
    repairs: list[str] = []
    items: list[Item] = []
    record_hash: str = ""

    CONTENT_FIELDS: ClassVar[tuple[str, ...]] = (
        "local_id", "title", "author", "pub_place", "publisher", "pub_year", "isbns", "language",
        "keywords", "subjects", "call_number", "quantity",
    )

    def compute_hash(self) -> str:
        """Hash of the content only (not the position in the file), so an unchanged record keeps its hash."""
        content = {name: getattr(self, name) for name in self.CONTENT_FIELDS}
        content["items"] = self.items  # each encoded as an object of all its fields, in sorted order
        self.record_hash = hashlib.sha256(_HASH_JSON.encode(content)).hexdigest()
        return self.record_hash
