"""Fuzz the export readers for a bounded time: `make fuzz` (FUZZ_SECONDS, default 60; FUZZ_TARGET marc|csv|all).

Hypothesis generates exports from scratch and by mutating valid ISO 2709 records and MARCXML (flipped bytes,
cut records, stray terminators, lying leaders and directories, entities). The property: the reader yields
only ParsedRecord / Unreadable (or refuses the whole file with ParseError naming it), and every record read
normalises. Any other exception is a crash: its input is kept in tests/fixtures/fuzz-crashes/ (replayed by
tests/test_hostile.py) and the run exits 1. Prints examples per second.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymarc import Field, Indicators, MARCWriter, Record, Subfield

from lienthong.normalise import to_canonical
from lienthong.parse import ParsedRecord, ParseError, Unreadable, read_records

ROOT = Path(__file__).resolve().parent.parent
CRASHES = ROOT / "tests" / "fixtures" / "fuzz-crashes"


def _seed_iso() -> bytes:
    out = io.BytesIO()
    writer = MARCWriter(out)
    for n, title in enumerate(("Toán 10", "Tiếng Việt 2 — tập một", "Lịch sử Hòa Bình")):
        record = Record(force_utf8=True)
        record.add_field(Field(tag="001", data=f"F-{n}"))
        record.add_field(Field(tag="008", data="220101s2022    vm            000 0 vie d"))
        record.add_field(Field(tag="020", indicators=Indicators(" ", " "), subfields=[Subfield("a", "9786040000000")]))
        record.add_field(Field(tag="245", indicators=Indicators("1", "0"), subfields=[Subfield("a", title)]))
        record.add_field(Field(tag="260", indicators=Indicators(" ", " "),
                               subfields=[Subfield("a", "H."), Subfield("b", "Giáo dục"), Subfield("c", "2022")]))
        record.add_field(Field(tag="952", indicators=Indicators(" ", " "),
                               subfields=[Subfield("a", "LIB"), Subfield("p", f"STK.{n:06d}")]))
        writer.write(record)
    return out.getvalue()


SEED_ISO = _seed_iso()
SEED_XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<collection xmlns="http://www.loc.gov/MARC21/slim">'
            b'<record><leader>00000nam a2200000 a 4500</leader><controlfield tag="001">X-1</controlfield>'
            b'<datafield tag="245" ind1="1" ind2="0"><subfield code="a">S\xc3\xa1ch</subfield></datafield>'
            b'</record><record><leader>00000nam a2200000 a 4500</leader><controlfield tag="001">X-2</controlfield>'
            b'<datafield tag="100" ind1="1" ind2=" "><subfield code="a">Nguy\xe1\xbb\x85n</subfield></datafield>'
            b'</record></collection>\n')
SEED_CSV = "Nhan de,Tac gia,DKCB,So luong\nToán 10,Nguyễn An,STK.1,1\nTiếng Việt,,STK.2,\n".encode()
INTERESTING = [b"\x1d", b"\x1e", b"\x1f", b"\x00", b"\xff", b"00000", b"99999", b"&lol;",
               b"<!DOCTYPE x [<!ENTITY a 'b'>]>", b"\xe1\xbb", b"\x1b(B", b"\r\n", b'"', b",", b";", b"\t",
               b"=cmd|' /C calc'!A0"]


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(("flip", "insert", "delete", "splice", "truncate", "digits")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(max_size=16)))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "splice":
            data[pos:pos] = data[draw(st.integers(0, max(len(data) - 1, 0))):][:draw(st.integers(1, 200))]
        elif op == "truncate":
            del data[pos:]
        elif op == "digits" and len(data) > pos + 5:
            data[pos:pos + 5] = str(draw(st.integers(0, 99999))).zfill(5).encode()
    return bytes(data)


MARC_INPUTS = st.one_of(st.binary(max_size=512), mutated(SEED_ISO), mutated(SEED_XML),
                        st.lists(st.sampled_from(INTERESTING), max_size=20).map(b"".join))
CSV_INPUTS = st.one_of(st.binary(max_size=512), mutated(SEED_CSV))


class Crash(Exception):
    def __init__(self, data: bytes, error: BaseException):
        super().__init__(f"{type(error).__name__}: {error}")
        self.data = data
        self.error = error


def check_marc(data: bytes) -> None:
    """No crash, a reason for every failure, and the ingest's LightRecord path gives the same canonical records."""
    try:
        entries = list(read_records(io.BytesIO(data)))
    except ParseError as exc:
        assert str(exc), "a ParseError must say why"
        return
    light = list(read_records(io.BytesIO(data), light=True))
    assert len(light) == len(entries), (len(light), len(entries))
    for entry, light_entry in zip(entries, light):
        assert isinstance(entry, (ParsedRecord, Unreadable)), type(entry)
        if isinstance(entry, ParsedRecord):
            canonical = to_canonical(entry, "FUZZ", item_field="952")
            assert canonical.record_hash
            assert isinstance(light_entry, ParsedRecord)
            assert to_canonical(light_entry, "FUZZ", item_field="952") == canonical
        else:
            assert entry.reason
            assert light_entry == entry


def check_csv(data: bytes, folder: Path) -> None:
    from lienthong.tabular import read_table

    path = folder / "fuzz.csv"
    path.write_bytes(data)
    try:
        with read_table(path, format="csv", expected_headers=["Nhan de", "DKCB"]) as table:
            for _number, cells in table.rows:
                assert len(cells) >= len(table.header)  # padded to the header, extra cells kept
    except ParseError as exc:
        assert "fuzz.csv" in str(exc), f"the message must name the file: {exc}"


def fuzz(target: str, seconds: float) -> int:
    counter = {"n": 0}
    last_failing: dict = {}
    folder = Path(tempfile.mkdtemp(prefix="lienthong-fuzz-"))
    strategy = MARC_INPUTS if target == "marc" else CSV_INPUTS

    @settings(max_examples=300, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(data: bytes) -> None:
        counter["n"] += 1
        try:
            check_marc(data) if target == "marc" else check_csv(data, folder)
        except BaseException as exc:
            last_failing["data"] = data
            raise Crash(data, exc) from exc

    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            one()
        except Crash as crash:
            CRASHES.mkdir(parents=True, exist_ok=True)
            name = CRASHES / f"{target}-{hashlib.sha256(crash.data).hexdigest()[:12]}.bin"
            name.write_bytes(crash.data)
            traceback.print_exception(crash.error)
            print(f"fuzz {target}: CRASH after {counter['n']} examples; input kept in {name}")
            return 1
    elapsed = time.monotonic() - start
    print(f"fuzz {target}: {counter['n']} examples in {elapsed:.0f} s ({counter['n'] / elapsed:.0f} examples/s), "
          f"no crash")
    return 0


def main() -> int:
    seconds = float(os.environ.get("FUZZ_SECONDS", "60"))
    target = os.environ.get("FUZZ_TARGET", "all")
    targets = ["marc", "csv"] if target == "all" else [target]
    status = 0
    for name in targets:
        status |= fuzz(name, seconds / len(targets))
    return status


if __name__ == "__main__":
    sys.exit(main())
