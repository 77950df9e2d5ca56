"""Small builders of real MARC files for tests (pymarc writes them; nothing is mocked)."""
from __future__ import annotations

from pathlib import Path

from pymarc import Field, Indicators, MARCWriter, Record, Subfield


def book(local_id: str, title: str | None = "Toán 10", *, author: str | None = "Nguyễn, Văn An",
         place: str | None = "H.", publisher: str | None = "Nxb. Giáo dục Việt Nam", year: str | None = "2022",
         keywords: tuple[str, ...] = ("Toán học",), subjects: tuple[str, ...] = ("Toán học -- Sách giáo khoa",),
         call_number: str | None = "510", items: tuple[tuple[str | None, str | None], ...] = (("STK.000001", "510 T406"),),
         isbn: str | None = None) -> Record:
    record = Record(force_utf8=True)
    record.leader = record.leader[:9] + "a" + record.leader[10:]
    record.add_field(Field(tag="001", data=local_id))
    record.add_field(Field(tag="008", data="220101s2022    vm            000 0 vie d"))
    if isbn:
        record.add_field(Field(tag="020", indicators=Indicators(" ", " "), subfields=[Subfield("a", isbn)]))
    if call_number:
        record.add_field(Field(tag="082", indicators=Indicators("0", "4"), subfields=[Subfield("a", call_number)]))
    if author:
        record.add_field(Field(tag="100", indicators=Indicators("1", " "), subfields=[Subfield("a", author)]))
    if title:
        record.add_field(Field(tag="245", indicators=Indicators("1", "0"), subfields=[Subfield("a", title)]))
    pub = [Subfield(code, value) for code, value in (("a", place), ("b", publisher), ("c", year)) if value]
    if pub:
        record.add_field(Field(tag="260", indicators=Indicators(" ", " "), subfields=pub))
    for subject in subjects:
        record.add_field(Field(tag="650", indicators=Indicators(" ", "7"), subfields=[Subfield("a", subject)]))
    for keyword in keywords:
        record.add_field(Field(tag="653", indicators=Indicators(" ", " "), subfields=[Subfield("a", keyword)]))
    for accession, item_call in items:
        subfields = [Subfield("a", "LIB"), Subfield("b", "LIB")]
        if item_call:
            subfields.append(Subfield("o", item_call))
        if accession:
            subfields.append(Subfield("p", accession))
        record.add_field(Field(tag="952", indicators=Indicators(" ", " "), subfields=subfields))
    return record


def write_marc(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        writer = MARCWriter(handle)
        for record in records:
            writer.write(record)
    return path
