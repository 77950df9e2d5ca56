"""lienthong.vietnamese and the encoding decisions of lienthong.parse: legacy tables, detection, tone placement.

TCVN3 is checked against glibc's own TCVN5712-1 converter (iconv), byte by byte; VNI and Windows-1258 against
spellings written out independently here. MARC files are real ISO 2709 bytes written as legacy software does.
"""
from __future__ import annotations

import io
import random
import shutil
import subprocess
import unicodedata

import pymarc
import pytest

from lienthong.demo import marc_bytes
from lienthong.parse import ParsedRecord, Unreadable, read_records
from lienthong.vietnamese import (
    CANDIDATES,
    LEGACY_ENCODINGS,
    VIETNAMESE_LETTERS,
    decode_legacy,
    detect_vietnamese_encoding,
    encode_legacy,
    is_vietnamese_syllable,
    normalise_text,
)
from tests.marc_builders import book

SENTENCES = (
    "Tôi thấy hoa vàng trên cỏ xanh",
    "Nguyễn Nhật Ánh; Nxb. Trẻ, Tp. Hồ Chí Minh",
    "Lịch sử Hòa Bình: Mường Bi, Đà Bắc, Lạc Thủy",
    "Dế mèn phiêu lưu ký / Tô Hoài",
    "SÁCH GIÁO KHOA TIẾNG VIỆT LỚP MỘT, TẬP HAI",
    "Khuyến khích học sinh đọc sách ở thư viện trường",
)


# --------------------------------------------------------------------------------------------------
# the letters and the tables


def test_the_134_precomposed_letters():
    assert len(VIETNAMESE_LETTERS) == len(set(VIETNAMESE_LETTERS)) == 134
    assert all(len(letter) == 1 and unicodedata.is_normalized("NFC", letter) for letter in VIETNAMESE_LETTERS)
    assert {"đ", "Đ", "ơ", "Ư", "ỵ", "Ỵ", "ẫ", "Ặ"} <= set(VIETNAMESE_LETTERS)


@pytest.mark.parametrize("encoding", LEGACY_ENCODINGS)
def test_every_letter_round_trips(encoding):
    for letter in VIETNAMESE_LETTERS:
        encoded = encode_legacy(letter, encoding)
        assert decode_legacy(encoded, encoding) == letter, (encoding, letter, encoded)
    word_list = " ".join(VIETNAMESE_LETTERS)
    assert decode_legacy(encode_legacy(word_list, encoding), encoding) == word_list
    for sentence in SENTENCES:
        assert decode_legacy(encode_legacy(sentence, encoding), encoding) == sentence


@pytest.mark.parametrize("encoding", LEGACY_ENCODINGS)
def test_encoding_is_deterministic_and_refuses_what_it_cannot_hold(encoding):
    assert encode_legacy("Hòa Bình", encoding) == encode_legacy(unicodedata.normalize("NFD", "Hòa Bình"), encoding)
    with pytest.raises(UnicodeEncodeError):
        encode_legacy("→", encoding)
    with pytest.raises(ValueError, match="unknown legacy encoding"):
        encode_legacy("a", "viscii-9")


@pytest.mark.skipif(shutil.which("iconv") is None, reason="glibc iconv is not installed")
def test_tcvn3_agrees_with_glibc_iconv_on_every_byte():
    """glibc's TCVN5712-1 is VN1; its printable part above 0x7F holds VN3 ("ABC") as a subset. Compared byte
    by byte after NFC, the two agree on all 256 bytes (0xB0-0xB4 are combining tones in both)."""
    differences = []
    for byte in range(256):
        run = subprocess.run(["iconv", "-f", "TCVN5712-1", "-t", "UTF-8"], input=bytes([byte]),
                             capture_output=True, check=True)
        theirs = unicodedata.normalize("NFC", run.stdout.decode("utf-8"))
        if theirs != decode_legacy(bytes([byte]), "tcvn3"):
            differences.append(byte)
    assert differences == []
    letters = " ".join(VIETNAMESE_LETTERS)
    run = subprocess.run(["iconv", "-f", "TCVN5712-1", "-t", "UTF-8"], input=encode_legacy(letters, "tcvn3"),
                         capture_output=True, check=True)
    assert unicodedata.normalize("NFC", run.stdout.decode("utf-8")) == letters
    back = subprocess.run(["iconv", "-f", "UTF-8", "-t", "TCVN5712-1"], input=" ".join(SENTENCES).encode(),
                          capture_output=True, check=True)
    assert decode_legacy(back.stdout, "tcvn3") == " ".join(SENTENCES)


def test_tcvn3_abc_positions():
    """The VN3 ("ABC" font) bytes real exports carry for lower-case letters and the base capitals."""
    assert encode_legacy("Hà Nội", "tcvn3") == b"H\xb5 N\xe9i"
    assert encode_legacy("ăâêôơưđ", "tcvn3") == bytes(range(0xA8, 0xAF))
    assert encode_legacy("ĂÂÊÔƠƯĐ", "tcvn3") == bytes(range(0xA1, 0xA8))
    assert decode_legacy(b"Tr\xad\xeang \xae\xb9i h\xe4c", "tcvn3") == "Trường đại học"


# VNI-Windows: the marks after each base letter, in the order: none, acute, grave, hook, tilde, dot below.
VNI_SPELLINGS = {
    "a": ("a", "aù", "aø", "aû", "aõ", "aï"), "ă": ("aê", "aé", "aè", "aú", "aü", "aë"),
    "â": ("aâ", "aá", "aà", "aå", "aã", "aä"), "e": ("e", "eù", "eø", "eû", "eõ", "eï"),
    "ê": ("eâ", "eá", "eà", "eå", "eã", "eä"), "i": ("i", "í", "ì", "æ", "ó", "ò"),
    "o": ("o", "où", "oø", "oû", "oõ", "oï"), "ô": ("oâ", "oá", "oà", "oå", "oã", "oä"),
    "ơ": ("ô", "ôù", "ôø", "ôû", "ôõ", "ôï"), "u": ("u", "uù", "uø", "uû", "uõ", "uï"),
    "ư": ("ö", "öù", "öø", "öû", "öõ", "öï"), "y": ("y", "yù", "yø", "yû", "yõ", "î"),
}
TONES = ("", "\u0301", "\u0300", "\u0309", "\u0303", "\u0323")


def test_vni_spellings_of_every_letter():
    checked = 0
    for base, spellings in VNI_SPELLINGS.items():
        for tone, spelling in zip(TONES, spellings):
            letter = unicodedata.normalize("NFC", base + tone)
            for case in (str.lower, str.upper):
                assert encode_legacy(case(letter), "vni") == case(spelling).encode("cp1252"), case(letter)
                checked += 1
    assert encode_legacy("đĐ", "vni") == b"\xf1\xd1"
    assert checked + 2 == 12 * 6 * 2 + 2  # every vowel with every tone, both cases, and đ Đ
    assert decode_legacy(b"Nguye\xe3n Nha\xe4t A\xd9nh", "vni") == "Nguyễn Nhật Ánh"


def test_cp1258_composes_combining_tones():
    """Windows-1258 writes "ộ" as ô + combining dot; decoding must give the precomposed NFC letter."""
    assert encode_legacy("Việt", "cp1258") == b"Vi\xea\xf2t"
    assert decode_legacy(b"Vi\xea\xf2t", "cp1258") == "Việt"
    assert decode_legacy("Hà".encode("cp1258"), "cp1258") == "Hà"  # precomposed à (0xE0) stays
    for letter in VIETNAMESE_LETTERS:
        assert len(decode_legacy(encode_legacy(letter, "cp1258"), "cp1258")) == 1


# --------------------------------------------------------------------------------------------------
# tone placement


@pytest.mark.parametrize("new, old", [
    ("hoà", "hòa"), ("Hoà Bình", "Hòa Bình"), ("thuỷ", "thủy"), ("Lạc Thuỷ", "Lạc Thủy"), ("khoẻ", "khỏe"),
    ("HOÀ", "HÒA"), ("hoá học", "hóa học"), ("xoè", "xòe"), ("Thuý", "Thúy"), ("loạ", "lọa"),
])
def test_traditional_tone_placement(new, old):
    assert normalise_text(new) == old
    assert normalise_text(old) == old
    assert normalise_text(unicodedata.normalize("NFD", new)) == old


@pytest.mark.parametrize("word", [
    "hoàng", "hoạch", "quý", "Quỳnh", "thuở", "ngoài", "khuya", "khuỷu", "thuế", "tuần", "toán", "mùa", "kìa",
    "Noël", "José", "café", "Exupéry", "résumé", "H2O", "",
])
def test_words_without_a_placement_choice_are_left_alone(word):
    assert normalise_text(word) == unicodedata.normalize("NFC", word)


def test_normalise_text_is_idempotent_on_random_text():
    rng = random.Random(3)
    alphabet = list("aeiouyqgh thkn") + list(VIETNAMESE_LETTERS) + [".", ",", "-", "1"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        once = normalise_text(text)
        assert normalise_text(once) == once
        assert unicodedata.is_normalized("NFC", once)


# --------------------------------------------------------------------------------------------------
# detection


def test_syllables():
    for word in ("Nguyễn", "hòa", "hoà", "quý", "giữ", "gì", "nghiêng", "khuỷu", "Trường", "ĐẶNG"):
        assert is_vietnamese_syllable(word), word
    for word in ("Hæ", "Nǐ", "Hoứa", "hµ", "Phßng", "thiÕu", "street", "hòá"):
        assert not is_vietnamese_syllable(word), word


@pytest.mark.parametrize("sentence", SENTENCES)
def test_detection_of_each_encoding(sentence):
    assert detect_vietnamese_encoding(sentence.encode("utf-8"))[0] == "utf-8"
    assert detect_vietnamese_encoding(unicodedata.normalize("NFD", sentence).encode("utf-8"))[0] == "utf-8-nfd"
    for encoding in LEGACY_ENCODINGS:
        best, confidence = detect_vietnamese_encoding(encode_legacy(sentence, encoding))
        # Windows-1258 keeps Latin-1's precomposed à á â ê ô..., which VNI reads alike: a short text in
        # Windows-1258 is often half Vietnamese as VNI too, so its lead is smaller, but it still wins.
        assert best == encoding and confidence >= (0.1 if encoding == "cp1258" else 0.5), (encoding, confidence)


def test_detection_edge_cases():
    assert detect_vietnamese_encoding(b"Toan 10 / Nguyen Van An") == ("utf-8", 1.0)
    best, confidence = detect_vietnamese_encoding(b"g\xc2en\xc2erale")  # ISO 5426 French: no reading works
    assert confidence == 0.0
    assert set(CANDIDATES) == {"utf-8", "utf-8-nfd", "cp1258", "tcvn3", "vni"}
    marc = marc_bytes(book("1", "Hòa Bình quê hương tôi"), "tcvn3")
    assert detect_vietnamese_encoding(marc)[0] == "tcvn3"  # MARC structure and subfield codes are skipped


# --------------------------------------------------------------------------------------------------
# parse: decided per file, checked per record and per field


def _records(*payload: bytes, **options) -> list:
    return list(read_records(io.BytesIO(b"".join(payload)), **options))


def test_pymarc_trap_is_avoided():
    """TCVN3 under a blank leader/09: pymarc reads MARC-8 and prints "Hæ Nǐ"; lienthong reads "Hà Nội"."""
    data = marc_bytes(book("1", "Hà Nội mùa thu", place="Hà Nội"), "tcvn3", leader09=" ")
    fooled = next(pymarc.MARCReader(io.BytesIO(data), to_unicode=True))
    assert "Hæ" in fooled["245"]["a"]
    [result] = _records(data)
    assert isinstance(result, ParsedRecord)
    assert result.record["245"]["a"] == "Hà Nội mùa thu" and result.record["260"]["a"] == "Hà Nội"
    assert result.encoding == "tcvn3"
    assert "encoding:tcvn3" in result.repairs and "leader09-said-marc8-but-tcvn3" in result.repairs


@pytest.mark.parametrize("encoding, leader09", [("tcvn3", "a"), ("tcvn3", " "), ("vni", " "), ("cp1258", " "),
                                               ("vni", "a"), ("cp1258", "a")])
def test_legacy_files_decode_to_the_utf8_text(encoding, leader09):
    records = [book(str(i), f"{SENTENCES[i]} {i}", author="Đặng, Thùy Trâm") for i in range(len(SENTENCES))]
    results = _records(*(marc_bytes(r, encoding, leader09) for r in records))
    assert [r.encoding for r in results] == [encoding] * len(records)
    for result, record in zip(results, records):
        assert result.record["245"]["a"] == record["245"]["a"]
        assert result.record["100"]["a"] == "Đặng, Thùy Trâm"
        assert f"encoding:{encoding}" in result.repairs


def test_nfd_utf8_is_composed_with_a_repair():
    [result] = _records(marc_bytes(book("1", "Tiếng Việt 1"), "utf-8-nfd", "a"))
    assert result.encoding == "utf-8" and result.record["245"]["a"] == "Tiếng Việt 1"
    assert "nfd→nfc" in result.repairs


def test_utf8_field_in_a_tcvn3_file_stays_utf8():
    """A record edited in a newer tool inside an old TCVN3 export: its UTF-8 field is not re-decoded."""
    legacy = [marc_bytes(book(str(i), SENTENCES[i]), "tcvn3") for i in range(4)]
    mixed = bytearray(marc_bytes(book("mixed", "Tổng hợp sách"), "tcvn3"))
    utf8_title, tcvn3_title = "Tổng hợp sách".encode("utf-8"), encode_legacy("Tổng hợp sách", "tcvn3")
    position = mixed.index(tcvn3_title)
    mixed[position:position + len(tcvn3_title)] = utf8_title
    length = len(mixed)
    mixed[:5] = f"{length:05d}".encode()
    results = _records(*legacy, bytes(mixed))
    last = results[-1]
    assert isinstance(last, ParsedRecord), last
    assert last.record["245"]["a"] == "Tổng hợp sách"
    assert "field-utf-8:245" in last.repairs and last.encoding == "tcvn3"


def test_tcvn3_record_after_a_utf8_head_is_recognised():
    head = [marc_bytes(book(str(i), SENTENCES[i % len(SENTENCES)]), "utf-8", "a") for i in range(250)]
    late = marc_bytes(book("late", "Lịch sử Hòa Bình"), "tcvn3", "a")
    results = _records(*head, late)
    assert results[-1].record["245"]["a"] == "Lịch sử Hòa Bình"
    assert results[-1].encoding == "tcvn3" and "leader09-said-utf8-but-tcvn3" in results[-1].repairs
    assert {r.encoding for r in results[:-1]} == {"utf-8"}


def test_forced_legacy_encoding_is_honoured():
    data = marc_bytes(book("1", "Hòa Bình"), "vni", "a")
    [result] = _records(data, encoding="vni")
    assert result.encoding == "vni" and result.record["245"]["a"] == "Hòa Bình"
    [wrong] = _records(data, encoding="utf-8")
    assert isinstance(wrong, Unreadable) and "invalid UTF-8 in field 100 $a" in wrong.reason


def test_marc8_vietnamese_stays_marc8():
    """MARC-8 writes combining marks before the base letter; "Việt" is Vi + dot below + circumflex + e + t."""
    record = book("1", "VIET", author="Nguyen, Van An", publisher="Nxb. Giao duc", subjects=("Lich su",),
                  keywords=("Lich su",))
    raw = marc_bytes(record, "utf-8", " ").replace(b"VIET", b"Vi\xf2\xe3et Nam")
    raw = f"{len(raw):05d}".encode() + raw[5:]
    [result] = _records(_fix_directory(raw))
    assert result.encoding == "marc-8" and result.record["245"]["a"] == "Việt Nam"


def _fix_directory(raw: bytes) -> bytes:
    """Rebuild lengths after a field's bytes were changed in place (the framing trusts terminators anyway)."""
    record = raw[:-1]
    base = int(raw[12:17])
    fields = record[base:].split(b"\x1e")[:-1]
    directory = b""
    offset = 0
    entries = raw[24:base - 1]
    for k, data in enumerate(fields):
        tag = entries[12 * k:12 * k + 3]
        directory += tag + f"{len(data) + 1:04d}{offset:05d}".encode()
        offset += len(data) + 1
    body = b"".join(data + b"\x1e" for data in fields)
    total = 24 + len(directory) + 1 + len(body) + 1
    return f"{total:05d}".encode() + raw[5:24] + directory + b"\x1e" + body + b"\x1d"


def test_ascii_bytes_of_marc8_escapes_and_references_are_still_decoded():
    """MARC-8 escape sequences and LC's "&#x...;" references are ASCII bytes: no ASCII shortcut for MARC-8."""
    record = book("1", "TITLE", author="AUTHOR", publisher="Nxb. Giao duc", subjects=("Lich su",),
                  keywords=("Lich su",))
    raw = marc_bytes(record, "utf-8", " ")
    raw = raw.replace(b"TITLE", b"\x1b(NMIR\x1b(B").replace(b"AUTHOR", b"&#x1EA0;nh")
    [result] = _records(_fix_directory(raw))
    assert result.encoding == "marc-8"
    assert result.record["245"]["a"] == "мир" and result.record["100"]["a"] == "Ạnh"
