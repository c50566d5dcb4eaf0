"""Folding text for matching: NFKC, case, invisible characters, homoglyphs and accents, whole or per character."""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable

from filters.content.fuzzy import confusable_map

try:  # the C word finder (filters/content/_wordscan.c); without it, or one built before non_ascii, the Python path
    from filters.content._wordscan import non_ascii as _non_ascii_c
except ImportError:  # pragma: no cover  (built without a C compiler)
    _non_ascii_c = None

# ---------------------------------------------------------------------------------------------
# folding: the same for message text and for rule phrases

_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180E, 0x200B,
     0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2060, 0x2061, 0x2062,
     0x2063, 0x2064, 0x2066, 0x2067, 0x2068, 0x2069, 0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F,
     0xFEFF, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10), *range(0xE0000, 0xE0080)])
# look-alike letters (after casefold) -> the Latin letter a reader takes them for
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "һ": "h", "ӏ": "l",
    "ԛ": "q", "ԝ": "w", "ь": "b", "ɡ": "g", "г": "r", "п": "n", "и": "u", "ц": "u", "з": "3", "ч": "4",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "c", "σ": "o", "μ": "u",
    # Latin look-alikes that NFKD does not take apart, Armenian
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l", "ƅ": "b", "օ": "o", "ս": "u", "ց": "g",
}
# the table above first; then every other letter or digit TR39 says looks like an ASCII one
_FOLD = {**{ord(k): v for k, v in confusable_map().items()}, **_INVISIBLE,
         **{ord(k): v for k, v in _HOMOGLYPHS.items()},
         ord("’"): "'", ord("‘"): "'", ord("`"): "'"}


def _char_class(codes: Iterable[int]) -> str:
    """A regex character class for these code points, consecutive ones as ranges (fast to test)."""
    codes = sorted(codes)
    out, i = [], 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        out.append(re.escape(chr(codes[i])) + (f"-{re.escape(chr(codes[j]))}" if j > i else ""))
        i = j + 1
    return "[" + "".join(out) + "]"


# whether `_FOLD` changes anything: its characters in the BMP, and any character beyond it (a class
# that holds a character past U+FFFF is tested range by range, not by table, and the table has
# about a thousand: 9 us for a preheader, 11 ms for 100 KB; this one is a table and one range)
_FOLD_CHARS = re.compile(_char_class(c for c in _FOLD if c <= 0xFFFF)[:-1] + "\U00010000-\U0010ffff]")
_COMBINING = re.compile(r"[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"


def fold(text: str) -> str:
    """NFKC, case folded, invisible characters removed, homoglyphs and accents folded."""
    if text.isascii():
        return text.lower()  # NFKC and the tables change nothing in ASCII
    text = unicodedata.normalize("NFKC", text).casefold()
    if _FOLD_CHARS.search(text):
        text = text.translate(_FOLD)
    if not text.isascii():
        text = unicodedata.normalize("NFC", _COMBINING.sub("", unicodedata.normalize("NFKD", text)))
    return text


# ---------------------------------------------------------------------------------------------
# folding for word tokens, one character at a time
#
# Word tokens only need to know, per character, whether it is part of a word. Outside ASCII most
# characters of a newsletter (no-break spaces, £, ©, ·, curly quotes, accented letters) fold the
# same on their own as in any context, so `_token_text` replaces each distinct one by its fold
# (a space when that holds no word character) with str.replace, and the text becomes ASCII, where
# every later step runs at C speed. Anything else (combining marks, scripts that compose or that
# stay outside ASCII: CJK, unmapped Cyrillic) takes the exact path, `fold` on the whole block.

_ASCII_BYTES = bytes(range(128))
# blocks whose characters never compose with a neighbour (no Indic vowel signs, no Hangul jamo);
# combining marks in them are refused one by one below. U+034F, the combining grapheme joiner
# (&#847;, newsletters pad their hidden preheaders with it), fold removes: on its own it joins nothing,
# and a mark beside it is refused, so the text with one takes the exact path as before
_CONTEXT_FREE = ((0x80, 0x2FF), (0x34F, 0x34F), (0x370, 0x58F), (0x1E00, 0x2E7F), (0x3000, 0x30FF),
                 (0xFB00, 0xFB06), (0xFE00, 0xFE0F), (0xFE30, 0xFFEF), (0x1F000, 0x1FAFF), (0xE0000, 0xE007F))
_OWN_FOLD: dict[str, str | None] = {}   # character -> what replaces it in word text, or None
_TOKEN_CHAR = re.compile(rf"[^\W_]|[{_CJK}]")  # what _TOKEN counts as (part of) a word


def _own_fold(ch: str) -> str | None:
    """What `ch` becomes in word text when it folds the same in every context, else None."""
    if ch in _OWN_FOLD:
        return _OWN_FOLD[ch]
    code = ord(ch)
    result: str | None = None
    if (any(lo <= code <= hi for lo, hi in _CONTEXT_FREE) and not unicodedata.combining(ch)
            and not unicodedata.combining(unicodedata.normalize("NFKD", ch)[:1] or " ")):
        folded = fold(ch)
        if all(c.isascii() or not _TOKEN_CHAR.match(c) for c in folded):  # CJK, Cyrillic я: exact path
            result = "".join(c if c.isascii() else " " for c in folded)
    if len(_OWN_FOLD) < 8192:
        _OWN_FOLD[ch] = result
    return result


def _non_ascii_py(text: str) -> str:
    """The distinct characters of `text` outside ASCII (`_non_ascii`: the C version when built, for
    text within the BMP), found in C: their UTF-8 bytes are exactly the bytes >= 0x80."""
    others = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES)
    return "".join(dict.fromkeys(others.decode("utf-8", "surrogatepass")))


def _non_ascii(text: str) -> str:
    found = _non_ascii_c(text) if _non_ascii_c is not None else None
    return _non_ascii_py(text) if found is None else found


def _token_text(text: str) -> str | None:
    """`text` folded as far as word tokens can tell (ASCII), or None when only `fold` is exact."""
    if text.isascii():
        return text.lower()
    for ch in _non_ascii(text):  # (each folds to ASCII on its own: the order they are replaced in is free)
        folded = _own_fold(ch)
        if folded is None:
            return None
        text = text.replace(ch, folded)
    return text.lower()
