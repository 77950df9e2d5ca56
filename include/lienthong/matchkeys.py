"""Vietnamese-aware match keys and the pairwise comparison of two records for the union catalogue.

Open tools fold Vietnamese to ASCII before matching, so "Ma", "Mà" and "Má" become one word and a prefix test
makes "Nguyễn Văn An" match "Nguyễn Văn Anh". Here tone marks stay in every match key: text is NFC with one
tone-placement convention (``lienthong.vietnamese.normalise_text``, the traditional "hòa"), and the
diacritic-free form exists only for search. "Đ" is a letter of its own in match keys (the look-alike Ð/ð typed
from Western keyboards is mapped to it); search folds it to "d", as readers type it.

A wrong merge is worse than a missed one (a teacher asks for one book and receives another), so the
comparison vetoes on any sign of a different manifestation: another volume, edition year, ISBN, author, a
tone-only or number-only difference in the title.
"""
from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

from rapidfuzz import fuzz
from stdnum import isbn as stdnum_isbn

from lienthong.vietnamese import normalise_text

#: Bumped when a key or rule changes, so stored keys and links are recomputed rather than mixed.
KEYS_VERSION = 2

#: Minimum title similarity (rapidfuzz ratio on tone-kept keys) for a link without a shared ISBN.
TITLE_THRESHOLD = 92.0
#: Minimum title similarity for an ISBN link: guards against ISBNs reused by publishers for another book.
ISBN_TITLE_FLOOR = 50.0
PUBLISHER_THRESHOLD = 90.0

# Letters typed from Western keyboards in place of Đ/đ (Icelandic eth, African D).
_DJE_LOOKALIKES = str.maketrans({"Ð": "Đ", "ð": "đ", "Ɖ": "Đ", "ɖ": "đ"})
# The marks Vietnamese writes: five tones (grave, acute, tilde, hook above, dot below) and the vowel marks
# (circumflex, breve, horn). Other marks ("Brontë", "Dvořák") are dropped: catalogues disagree on them and they
# never tell two Vietnamese words apart.
_VIETNAMESE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323\u0302\u0306\u031b")

_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8, "ix": 9, "x": 10,
          "xi": 11, "xii": 12, "xiii": 13, "xiv": 14, "xv": 15, "xvi": 16, "xvii": 17, "xviii": 18, "xix": 19,
          "xx": 20}
_NUMBER_WORDS = {"một": 1, "hai": 2, "ba": 3, "bốn": 4, "năm": 5, "sáu": 6, "bảy": 7, "tám": 8, "chín": 9,
                 "mười": 10}
_VOLUME_WORDS = r"tập|tâp|tap|quyển|quyên|quyen|phần|phân|phan|volume|vol|book|cuốn|cuon|số|so|tome"
_NUMBER = r"(\d{1,4}|" + "|".join(sorted(_ROMAN, key=len, reverse=True)) + "|" + "|".join(_NUMBER_WORDS) + r")"
# "tập 1", "Tập II", "quyển hai", "vol. 3" — and the abbreviations "T.1", "T. 1", "Q.2", "T1", "Q2".
_VOLUME_RE = re.compile(
    r"(?<![\w])(?:(?:" + _VOLUME_WORDS + r")\.?\s*" + _NUMBER + r"|(?:t|q|v|p)\.\s*" + _NUMBER
    + r"|(?:t|q)(\d{1,3}))(?![\w])")
_PAREN_RE = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_NON_WORD_RE = re.compile(r"[^\w]+")
_DIGITS_RE = re.compile(r"\d+")
_PUBLISHER_PREFIX_RE = re.compile(
    r"^(?:nhà xuất bản|nhà xb|nxb|nxb\.|n\.x\.b\.?|công ty cổ phần|công ty tnhh|công ty|cty|ctcp)\s*", re.I)


class _CharCache(dict):
    """A per-character answer computed once, on first use (there are few distinct characters)."""

    def __init__(self, compute):
        super().__init__()
        self.compute = compute

    def __missing__(self, key):
        value = self[key] = self.compute(key)
        return value


# Character → carries a mark Vietnamese does not write ("ë", "ř").
_FOREIGN_MARK = _CharCache(lambda char: any(
    unicodedata.combining(m) and m not in _VIETNAMESE_MARKS for m in unicodedata.normalize("NFD", char)))
_PLAIN_CHARS: set[str] = set()  # characters met without such a mark: the common case checked in one set test


def _has_foreign_mark(text: str) -> bool:
    if _PLAIN_CHARS.issuperset(text):
        return False
    for char in set(text) - _PLAIN_CHARS:
        if _FOREIGN_MARK[char]:
            return True
        _PLAIN_CHARS.add(char)
    return False
# Code point → the character without its marks: a str.translate table (NFD of a text is that of its characters).
_UNMARKED = _CharCache(lambda code: "".join(
    c for c in unicodedata.normalize("NFD", chr(code)) if not unicodedata.combining(c)))


def vn(text: str | None) -> str:
    """The one comparable form of Vietnamese text: NFC, one tone placement, Đ look-alikes fixed, lower case,
    single spaces. Tone marks and đ are kept."""
    if not text:
        return ""
    return _vn(text)


@functools.lru_cache(maxsize=1 << 16)  # titles, authors and publishers repeat across libraries
def _vn(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_DJE_LOOKALIKES)
    text = normalise_text(text)
    if not text.isascii() and _has_foreign_mark(text):
        decomposed = unicodedata.normalize("NFD", text)
        text = unicodedata.normalize("NFC", "".join(
            c for c in decomposed if not unicodedata.combining(c) or c in _VIETNAMESE_MARKS))
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def fold(text: str | None) -> str:
    """The search form only: no tone or vowel marks, đ → d, lower case, words separated by single spaces."""
    return unmark(vn(text))


def unmark(text: str) -> str:
    """fold() of a text already in vn() form."""
    stripped = text.replace("đ", "d").translate(_UNMARKED)
    return " ".join(_NON_WORD_RE.sub(" ", stripped).split())


def _words(text: str) -> str:
    """ISBD and other punctuation removed ("Toán 1. Tập 1 : sách giáo viên /" → "toán 1 tập 1 sách giáo viên")."""
    return " ".join(_NON_WORD_RE.sub(" ", text.replace("_", " ")).split())


def _volume_number(match: re.Match) -> str:
    token = next(group for group in match.groups() if group)
    if token.isdigit():
        return str(int(token))
    return str(_ROMAN.get(token) or _NUMBER_WORDS[token])


def title_parts(title: str | None) -> tuple[str, str]:
    """(title key without volume designations, volume key): "Toán 1. Tập II" → ("toán 1", "2")."""
    text = vn(title)
    volumes = [_volume_number(m) for m in _VOLUME_RE.finditer(text)]
    return _words(_VOLUME_RE.sub(" ", text)), ".".join(volumes)


def author_key(author: str | None) -> str:
    """Direct and inverted forms unified: "Nguyễn, Nhật Ánh" and "Nguyễn Nhật Ánh" → "nguyễn nhật ánh" sorted
    by word ("nguyễn nhật ánh" → "nguyễn nhật ánh" as a multiset), roles in brackets and dates dropped.
    Words are compared whole: "an" is never a prefix of "anh"."""
    text = _DIGITS_RE.sub(" ", _PAREN_RE.sub(" ", vn(author)))
    return " ".join(sorted(_words(text).split()))


def publisher_key(publisher: str | None) -> str:
    """"Nxb. Giáo dục Việt Nam" → "giáo dục việt nam"."""
    text = _PAREN_RE.sub(" ", vn(publisher))
    previous = None
    while previous != text:
        previous, text = text, _PUBLISHER_PREFIX_RE.sub("", text.strip())
    return _words(text)


def isbn13s(isbns) -> list[str]:
    """Valid ISBNs as ISBN-13 (ISBN-10 converted), in order; invalid ones (bad check digit) are not keys."""
    out: list[str] = []
    for value in isbns or ():
        number = _isbn13(value)
        if number and number not in out:
            out.append(number)
    return out


@functools.lru_cache(maxsize=1 << 16)  # one edition's ISBN recurs in every library holding it
def _isbn13(value: str) -> str | None:
    try:
        if stdnum_isbn.is_valid(value):
            return stdnum_isbn.to_isbn13(stdnum_isbn.compact(value))
    except Exception:  # stdnum raises its own ValidationError subclasses on garbage
        pass
    return None


@dataclass(frozen=True)
class RecordKeys:
    """Everything the matcher compares, computed once per record version."""

    title: str  # tone-kept title without volume designation and punctuation
    volume: str  # "" when the record names no volume
    author: str
    publisher: str
    year: str
    isbns: tuple[str, ...]
    numbers: tuple[str, ...] = field(default=())  # numbers in the title ("toán 10" → ("10",))

    @property
    def weak(self) -> bool:
        """Without ISBN, and without year or author, a record cannot tell editions apart: it only joins a
        cluster that all its links point to."""
        return is_weak(self.isbns, self.year, self.author)


def is_weak(isbns, year: str, author: str) -> bool:
    return not isbns and (not year or not author)


def record_keys(title, author, publisher, pub_year, isbns) -> RecordKeys:
    title_key, volume = title_parts(title)
    year = pub_year if pub_year and re.fullmatch(r"\d{4}", pub_year) else ""
    return RecordKeys(title_key, volume, author_key(author), publisher_key(publisher), year,
                      tuple(isbn13s(isbns)), tuple(sorted(_DIGITS_RE.findall(title_key))))


def signature(keys: RecordKeys, record_id: int) -> str:
    """Records with the same signature have identical keys, so one comparison stands for all of them. A record
    without title has its own signature: empty keys prove nothing."""
    if not keys.title:
        return f"r:{record_id}"
    text = "\x1f".join((keys.title, keys.volume, keys.author, keys.publisher, keys.year, *sorted(keys.isbns)))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def block_keys(keys: RecordKeys) -> list[str]:
    """Candidate blocks: a shared ISBN, the same title key and volume, or the same author and title start.
    Only records sharing a block are ever compared (never all pairs)."""
    blocks = [f"i:{number}" for number in keys.isbns]
    if keys.title:
        blocks.append(f"t:{keys.title}|{keys.volume}")
        if keys.author:
            start = " ".join(keys.title.split()[:2])
            blocks.append(f"a:{keys.author}|{start}")
    return blocks


@dataclass
class Comparison:
    linked: bool
    rule: str  # "isbn", "title_author", or the veto ("volume_differs", ...)
    score: float
    scores: dict


def _tone_only_difference(a: str, b: str) -> bool:
    """A word in one title equals a word of the other except for its marks ("ma" / "mà"): another word."""
    only_a = set(a.split()) - set(b.split())
    only_b = set(b.split()) - set(a.split())
    folded_b = {fold(word) for word in only_b}
    return any(fold(word) in folded_b for word in only_a)


def compare(a: RecordKeys, b: RecordKeys) -> Comparison:
    """Link two records, or say which difference keeps them apart. Scores are 0-100 (rapidfuzz)."""
    title = round(fuzz.ratio(a.title, b.title), 1) if a.title and b.title else None
    author = round(fuzz.ratio(a.author, b.author), 1) if a.author and b.author else None
    publisher = (round(fuzz.token_set_ratio(a.publisher, b.publisher), 1)
                 if a.publisher and b.publisher else None)
    shared = sorted(set(a.isbns) & set(b.isbns))
    scores = {"title": title, "author": author, "publisher": publisher,
              "year": None if not (a.year and b.year) else (100.0 if a.year == b.year else 0.0)}
    if shared:
        scores["isbn"] = shared[0]

    def result(linked: bool, rule: str) -> Comparison:
        parts = [(v, w) for v, w in ((title, 0.5), (author, 0.25), (publisher, 0.1), (scores["year"], 0.15))
                 if v is not None]
        weight = sum(w for _, w in parts)
        score = round(sum(v * w for v, w in parts) / weight, 1) if weight else 0.0
        return Comparison(linked, rule, score, scores)

    if a.volume != b.volume:
        return result(False, "volume_differs")
    if a.year and b.year and a.year != b.year:
        return result(False, "year_differs")
    if a.isbns and b.isbns and not shared:
        return result(False, "isbn_differs")
    if shared:
        if title is not None and title < ISBN_TITLE_FLOOR:
            return result(False, "isbn_title_differs")
        return result(True, "isbn")
    if title is None:
        return result(False, "no_title")
    if a.numbers != b.numbers:
        return result(False, "title_number_differs")
    if a.title != b.title and _tone_only_difference(a.title, b.title):
        return result(False, "title_tone_differs")
    if title < TITLE_THRESHOLD:
        return result(False, "title_differs")
    if a.author and b.author and a.author != b.author:
        return result(False, "author_differs")
    if publisher is not None and publisher < PUBLISHER_THRESHOLD:
        return result(False, "publisher_differs")
    if not (a.author and b.author) and not (a.publisher and b.publisher and a.year and b.year):
        return result(False, "too_little_evidence")
    return result(True, "title_author" if a.author and b.author else "title_publisher_year")
