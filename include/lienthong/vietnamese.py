"""Vietnamese text: the legacy 8-bit encodings school exports still use, and the one spelling the warehouse keeps.

Python has codecs for UTF-8 and Windows-1258 only. TCVN3 ("ABC", TCVN 5712:1993) and VNI-Windows were
font encodings: the tables are written here once (provenance and differences in docs/encodings.md).

* ``normalise_text`` gives NFC with the traditional ("old") tone placement: "hòa", "khỏe", "thủy", never
  "hoà", "khoẻ", "thuỷ" (docs/encodings.md, "Tone placement").
* ``decode_legacy`` / ``encode_legacy`` convert bytes of "tcvn3", "vni" or "cp1258" to NFC text and back.
* ``detect_vietnamese_encoding`` tells which of utf-8, utf-8-nfd, cp1258, tcvn3 and vni some bytes are in,
  by how many words of the decoded text are Vietnamese syllables, since declared encodings lie.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = [
    "CANDIDATES",
    "LEGACY_ENCODINGS",
    "VIETNAMESE_LETTERS",
    "decode_legacy",
    "detect_vietnamese_encoding",
    "encode_legacy",
    "is_vietnamese_syllable",
    "normalise_text",
    "vietnamese_score",
]

LEGACY_ENCODINGS = ("tcvn3", "vni", "cp1258")
CANDIDATES = ("utf-8", "utf-8-nfd", "cp1258", "tcvn3", "vni")

_TONES = {"\u0300": "grave", "\u0301": "acute", "\u0303": "tilde", "\u0309": "hook", "\u0323": "dot"}
_BASES = "aăâeêioôơuưy"

#: The 134 precomposed letters of Vietnamese beyond ASCII (67 per case): 12 vowels with 5 tones, the six
#: modified vowels ă â ê ô ơ ư without tone, and đ.
VIETNAMESE_LETTERS: tuple[str, ...] = tuple(
    unicodedata.normalize("NFC", letter)
    for case in (str.lower, str.upper)
    for letter in (
        [case(base + tone) for base in _BASES for tone in _TONES]
        + [case(base) for base in "ăâêôơư"] + [case("đ")]
    )
)

# --------------------------------------------------------------------------------------------------
# TCVN3 (TCVN 5712:1993). Positions 0xA1-0xFE without the capitals are VN3, the "ABC" font encoding;
# the toned capitals (C0 and 0x80-0x9F, and the holes VN3 leaves) are VN1 as glibc's TCVN5712-1 has them,
# so every Vietnamese letter of both cases survives a round trip. 0xB0-0xB4 are VN1's combining tones.

_TCVN3_HIGH = (
    # 0x80-0x9F
    "ÀẢÃÁẠẶẬÈẺẼÉẸỆÌỈĨÍỊÒỎÕÓỌỘỜỞỠỚỢÙỦŨ"
    # 0xA0-0xBF
    "\u00a0ĂÂÊÔƠƯĐăâêôơưđẰ\u0300\u0309\u0303\u0301\u0323àảãáạẲằẳẵắẴ"
    # 0xC0-0xDF
    "ẮẦẨẪẤỀặầẩẫấậèỂẻẽéẹềểễếệìỉỄẾỒĩíịò"
    # 0xE0-0xFF
    "ỔỏõóọồổỗốộờởỡớợùỖủũúụừửữứựỳỷỹýỵỐ"
)
_TCVN3_LOW = {0x01: "Ú", 0x02: "Ụ", 0x04: "Ừ", 0x05: "Ử", 0x06: "Ữ", 0x11: "Ứ", 0x12: "Ự", 0x13: "Ỳ",
              0x14: "Ỷ", 0x15: "Ỹ", 0x16: "Ý", 0x17: "Ỵ"}
_TCVN3_DECODE = tuple(
    _TCVN3_LOW.get(byte, chr(byte)) if byte < 0x80 else _TCVN3_HIGH[byte - 0x80] for byte in range(256)
)
_TCVN3_ENCODE = {char: bytes([byte]) for byte, char in enumerate(_TCVN3_DECODE)
                 if byte >= 0x80 or byte in _TCVN3_LOW}
_TCVN3_ENCODE.update({chr(byte): bytes([byte]) for byte in range(0x80) if byte not in _TCVN3_LOW})

# --------------------------------------------------------------------------------------------------
# VNI-Windows: a base letter followed by mark bytes read in the Windows-1252 font ("Hòa" = b"Ho\xf8a").
# Lower-case marks; the capital forms use the upper-case Latin-1 letter of the same mark.
_VNI_TONE = {"acute": "ù", "grave": "ø", "hook": "û", "tilde": "õ", "dot": "ï"}
_VNI_CIRCUMFLEX_TONE = {None: "â", "acute": "á", "grave": "à", "hook": "å", "tilde": "ã", "dot": "ä"}
_VNI_BREVE_TONE = {None: "ê", "acute": "é", "grave": "è", "hook": "ú", "tilde": "ü", "dot": "ë"}
_VNI_I = {"acute": "í", "grave": "ì", "hook": "æ", "tilde": "ó", "dot": "ò"}


def _vni_table() -> dict[str, str]:
    """Vietnamese letter → its VNI-Windows spelling (as Windows-1252 characters)."""
    table: dict[str, str] = {}
    lower: dict[str, str] = {"đ": "ñ", "ơ": "ô", "ư": "ö"}
    for tone in (None, *_VNI_TONE):
        mark = _VNI_TONE.get(tone, "")
        combining = next((c for c, name in _TONES.items() if name == tone), "")
        for base in "aeouy":
            lower[base + combining] = base + mark
        lower["ơ" + combining] = "ô" + mark
        lower["ư" + combining] = "ö" + mark
        for base in "aeo":
            lower[base + "\u0302" + combining] = base + _VNI_CIRCUMFLEX_TONE[tone]
        lower["a\u0306" + combining] = "a" + _VNI_BREVE_TONE[tone]
        if tone:
            lower["i" + combining] = _VNI_I[tone]
    lower["y\u0323"] = "î"
    for key, spelling in lower.items():
        letter = unicodedata.normalize("NFC", key)
        if len(letter) == 1 and not letter.isascii():
            table[letter] = spelling
            table[letter.upper()] = spelling.upper()
    return table


_VNI_ENCODE = _vni_table()
_VNI_DECODE = {spelling: letter for letter, spelling in _VNI_ENCODE.items()}
_VNI_PATTERN = re.compile("|".join(sorted(map(re.escape, _VNI_DECODE), key=len, reverse=True)))


# --------------------------------------------------------------------------------------------------
# decoding and encoding


def decode_legacy(data: bytes, encoding: str) -> str:
    """Bytes in "tcvn3", "vni" or "cp1258" → NFC text; bytes the encoding leaves undefined raise."""
    name = _legacy_name(encoding)
    if name == "tcvn3":
        text = "".join(_TCVN3_DECODE[byte] for byte in data)
    elif name == "vni":
        text = _VNI_PATTERN.sub(lambda m: _VNI_DECODE[m.group()], data.decode("cp1252"))
    else:
        text = data.decode("cp1258")
    return unicodedata.normalize("NFC", text)


def encode_legacy(text: str, encoding: str) -> bytes:
    """NFC text → bytes in "tcvn3", "vni" or "cp1258"; a character the encoding cannot hold raises."""
    name = _legacy_name(encoding)
    text = unicodedata.normalize("NFC", text)
    if name == "tcvn3":
        out = bytearray()
        for position, char in enumerate(text):
            code = _TCVN3_ENCODE.get(char)
            if code is None:
                raise UnicodeEncodeError("tcvn3", text, position, position + 1, "not in TCVN3")
            out += code
        return bytes(out)
    if name == "vni":
        spelled = "".join(_VNI_ENCODE.get(char, char) for char in text)
        return spelled.encode("cp1252")
    return "".join(_cp1258_spelling(char) for char in text).encode("cp1258")


def _cp1258_spelling(char: str) -> str:
    """Windows-1258 holds â ê ô ă ơ ư đ and some toned letters precomposed; other tones are combining marks."""
    try:
        char.encode("cp1258")
        return char
    except UnicodeEncodeError:
        pass
    bare, tone = _split_tone(char)
    return bare + tone if tone else char


def _legacy_name(encoding: str) -> str:
    name = encoding.strip().lower().replace("_", "-")
    name = {"tcvn": "tcvn3", "tcvn5712": "tcvn3", "tcvn5712-1": "tcvn3", "abc": "tcvn3", "vni-windows": "vni",
            "windows-1258": "cp1258"}.get(name, name)
    if name not in LEGACY_ENCODINGS:
        raise ValueError(f"unknown legacy encoding {encoding!r} (use one of {', '.join(LEGACY_ENCODINGS)})")
    return name


# --------------------------------------------------------------------------------------------------
# tone placement

_ONSETS = ("", "b", "c", "ch", "d", "đ", "g", "gh", "h", "k", "kh", "l", "m", "n", "ng", "ngh", "nh", "p", "ph",
           "r", "s", "t", "th", "tr", "v", "x")
_WORD = re.compile(r"[^\W\d_]+")
_OLD_PLACEMENT = {"oa", "oe", "uy"}


def _split_tone(char: str) -> tuple[str, str | None]:
    """A letter → (the letter without its tone, the tone's combining mark or None)."""
    decomposed = unicodedata.normalize("NFD", char)
    tones = [c for c in decomposed if c in _TONES]
    if not tones:
        return char, None
    bare = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONES))
    return bare, tones[0]


def _with_tone(char: str, tone: str) -> str:
    return unicodedata.normalize("NFC", char + tone)


def _place_tone(match: re.Match) -> str:
    """"hoà" → "hòa", "khoẻ" → "khỏe", "thuỷ" → "thủy": open oa/oe/uy carry the tone on their first vowel."""
    word = match.group()
    if len(word) < 2:
        return word
    last, tone = _split_tone(word[-1])
    if tone is None:
        return word
    first, other = _split_tone(word[-2])
    if other is not None or (first + last).lower() not in _OLD_PLACEMENT:
        return word
    onset = word[:-2].lower()
    if onset not in _ONSETS:
        return word  # "quý" (the u belongs to qu), "José", "Chloé": not a Vietnamese onset
    return word[:-2] + _with_tone(first, tone) + last


# A word ending in o/u + toned a/e/y: the only place _place_tone can change anything (a cheap pre-check).
_OLD_PLACEMENT_CANDIDATE = re.compile(
    r"(?:[oO][àáảãạÀÁẢÃẠèéẻẽẹÈÉẺẼẸ]|[uU][ỳýỷỹỵỲÝỶỸỴ])(?![^\W\d_])"
)


def normalise_text(text: str) -> str:
    """NFC with the traditional tone placement; idempotent, and leaves non-Vietnamese words alone."""
    nfc = unicodedata.normalize("NFC", text)
    if nfc.isascii() or _OLD_PLACEMENT_CANDIDATE.search(nfc) is None:
        return nfc
    return _WORD.sub(_place_tone, nfc)


# --------------------------------------------------------------------------------------------------
# detection

_RHYMES = frozenset("""
a ai ao au ay ac ach am an ang anh ap at
ăc ăm ăn ăng ăp ăt
âc âm ân âng âp ât âu ây
e eo ec em en eng ep et
ê êch êm ên ênh êp êt êu
i ia ich im in inh ip it iu iêc iêm iên iêng iêp iêt iêu
o oi oc om on ong op ot oong ooc
ô ôi ôc ôm ôn ông ôp ôt
ơ ơi ơm ơn ơp ơt
u ua ui uc um un ung up ut uôc uôi uôm uôn uông uôt
ư ưa ưi ưu ưc ưm ưn ưng ưt ươc ươi ươm ươn ương ươp ươt ươu
y yêm yên yêt yêu ynh ych yt
oa oac oach oai oam oan oang oanh oao oap oat oay oăc oăm oăn oăng oăt oe oen oeo oet
uân uâng uât uây uê uêch uênh uơ uy uya uych uyên uyêt uynh uyt uyu
""".split())
_ALL_ONSETS = sorted(set(_ONSETS) | {"gi", "qu"}, key=len, reverse=True)
_VIETNAMESE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzđ" + "".join(VIETNAMESE_LETTERS).lower())


@lru_cache(maxsize=65536)
def is_vietnamese_syllable(word: str) -> bool:
    """True for a possible Vietnamese syllable ("Nguyễn", "hòa", "hoà", "quý"); False for "Hæ", "Nǐ", "Hoứa"."""
    word = unicodedata.normalize("NFC", word).lower()
    if not word or any(char not in _VIETNAMESE_CHARS for char in word):
        return False
    bare, tones = [], 0
    for char in word:
        letter, tone = _split_tone(char)
        tones += tone is not None
        bare.append(letter)
    if tones > 1:
        return False
    plain = "".join(bare)
    for onset in _ALL_ONSETS:
        if plain.startswith(onset):
            rhyme = plain[len(onset):]
            if rhyme in _RHYMES or (onset == "gi" and (rhyme == "" or "i" + rhyme in _RHYMES)):
                return True
    return False


_TOKEN = re.compile(r"[^\W\d_]+|[^\w\s]", re.UNICODE)
_TYPOGRAPHIC = frozenset("–—‘’“”…€«»°·©®§±×÷•")


def vietnamese_score(text: str) -> tuple[float, int, int]:
    """(score, Vietnamese words, words that carry evidence) of some text.

    Only tokens with a non-ASCII character carry evidence: a Vietnamese syllable counts +1, a stray
    typographic mark -0.25 (real text has a few), anything else -2 ("Hæ", "Nǐ", "Hoứa", "µ").
    """
    score, valid, evidence = 0.0, 0, 0
    for token in _TOKEN.findall(text):
        if token.isascii():
            continue
        evidence += 1
        if token.isalpha() and (is_vietnamese_syllable(token) or token in "đĐ"):  # "15000đ": đồng
            score += 1
            valid += 1
        elif token in _TYPOGRAPHIC:
            score -= 0.25
        else:
            score -= 2
    return score, valid, evidence


def _candidate_text(data: bytes, candidate: str) -> str | None:
    if candidate in ("utf-8", "utf-8-nfd"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        has_nfd = unicodedata.normalize("NFC", text) != text
        if has_nfd != (candidate == "utf-8-nfd"):
            return None
        return unicodedata.normalize("NFC", text)
    try:
        return decode_legacy(data, candidate)
    except UnicodeDecodeError:
        return None


def detect_vietnamese_encoding(data: bytes, candidates: tuple[str, ...] = CANDIDATES) -> tuple[str, float]:
    """Best of the candidates (utf-8, utf-8-nfd, cp1258, tcvn3, vni) for these bytes, and a confidence in [0, 1].

    MARC structure (terminators, subfield delimiter and code) counts as spaces. ASCII-only data reads the same in every candidate:
    ("utf-8", 1.0). Ties go to the earlier candidate. The confidence is the share of evidence-carrying words
    that are Vietnamese in the winner minus that share in the runner-up, so 1.0 means every non-ASCII word
    is Vietnamese in the winner and none in any other reading; 0.0 means nothing reads as Vietnamese.
    """
    data = _MARC_STRUCTURE.sub(b" ", data)
    if data.isascii():
        return "utf-8", 1.0
    scored = []
    for rank, candidate in enumerate(candidates):
        text = _candidate_text(data, candidate)
        if text is None:
            continue
        score, valid, evidence = vietnamese_score(text)
        scored.append((score, -rank, candidate, valid, evidence))
    if not scored:
        return candidates[0], 0.0
    scored.sort(reverse=True)
    best_score, _, best, valid, evidence = scored[0]
    if evidence == 0 or best_score <= 0:
        return best, 0.0
    runner_valid, runner_evidence = (scored[1][3], scored[1][4]) if len(scored) > 1 else (0, 1)
    lead = valid / evidence - runner_valid / max(runner_evidence, 1)
    return best, round(max(0.0, min(1.0, lead)), 3)


_MARC_STRUCTURE = re.compile(rb"\x1f[\x21-\x7e]?|[\x1d\x1e]")
