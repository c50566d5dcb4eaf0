"""The content stage's disguise tolerance: Unicode TR39 confusable skeletons, and misspelt rule words.

* `confusable_map()`: every character that Unicode's confusables table (confusables.txt, as the
  `confusable-homoglyphs` package ships it) says looks like one ASCII letter or digit, mapped to it
  (Cyrillic а, Cherokee Ꭺ, math 𝐚, Lisu ꓲ ...). `fold` in filters/content/folding.py uses it for the
  alphabetic scripts, so message text and link hosts are read the way they look.
* `skeleton(text)`: a TR39-style skeleton (NFKC, that map, and the ASCII confusables: rn→m,
  vv→w, 0→o, 1/I/|→l) to compare host names with brands and the client's own domains.
* `Misspellings`: rule words of six letters or more tolerate one edit (insertion, deletion,
  substitution or transposition of neighbours), ten or more two: "viagara", "cailis",
  "perscription", "kasino" read as the rule word. Candidates are found with symmetric deletion in
  C (filters/content/_wordscan.c `near`), verified here by the optimal-string-alignment distance, and
  never taken for a real word: `near-words.txt` lists the English words within reach of a rule
  word (made from a dictionary, see docs/CONTENT.md), and rule words themselves stay as they are.
"""
from __future__ import annotations

import functools
import json
import re
import unicodedata
from pathlib import Path
from typing import Iterable

try:
    from filters.content import _wordscan
except ImportError:  # pragma: no cover  (built without a C compiler)
    _wordscan = None  # type: ignore[assignment]

NEAR_WORDS_FILE = Path(__file__).resolve().parent / "rules" / "near-words.txt"

# the scripts whose look-alikes are folded in message text: alphabets a spammer borrows letters
# from. Not Hebrew, Arabic, Indic or CJK: their letters are never read as Latin by their readers.
_ALPHABETIC = ((0x80, 0x58F), (0x13A0, 0x13FF), (0x1D00, 0x1DBF), (0x1E00, 0x1FFF), (0x2100, 0x24FF),
               (0xA4D0, 0xA4FF), (0xA640, 0xA69F), (0xA720, 0xA7FF), (0xAB30, 0xABBF), (0xFF00, 0xFF5F),
               (0x10400, 0x1044F), (0x1D400, 0x1D7FF))


@functools.lru_cache(maxsize=1)
def confusable_map() -> dict[str, str]:
    """{character: the ASCII letter or digit it is confusable with}, characters casefolded."""
    try:
        import confusable_homoglyphs
        data = json.loads((Path(confusable_homoglyphs.__file__).parent / "confusables.json").read_text("utf-8"))
    except (ImportError, OSError, ValueError):  # pragma: no cover  (the dependency is declared)
        return {}
    pairs: list[tuple[str, str]] = []
    for key, entries in data.items():
        glyphs = [e["c"].strip("\u200e") for e in entries]
        if len(key) == 1 and key.isascii() and key.isalnum():
            pairs += [(g, key) for g in glyphs if len(g) == 1 and not g.isascii()]
        elif len(key) == 1 and not key.isascii():
            ascii_ = [g for g in glyphs if len(g) == 1 and g.isascii() and g.isalnum()]
            ascii_.sort(key=lambda g: (not g.isalpha(), g))  # a letter before a digit
            if ascii_:
                pairs.append((key, ascii_[0]))
    out: dict[str, str] = {}
    for src, dst in pairs:
        folded = src.casefold()
        if (len(folded) == 1 and not folded.isascii() and folded not in out
                and unicodedata.category(folded)[0] in "LN"):
            code = ord(folded)
            if any(lo <= code <= hi for lo, hi in _ALPHABETIC):
                out[folded] = dst.lower()
    return out


_ASCII_CONFUSABLE = [("rn", "m"), ("vv", "w"), ("0", "o"), ("1", "l"), ("|", "l"), ("i", "l")]


def skeleton(text: str) -> str:
    """A TR39-style skeleton of a name: equal skeletons look alike ("pаypal" = "paypa1" = "paypal")."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if not text.isascii():
        table = confusable_map()
        text = "".join(table.get(ch, ch) for ch in text)
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    for a, b in _ASCII_CONFUSABLE:
        text = text.replace(a, b)
    return text


def osa_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal string alignment distance (Levenshtein plus transposition of neighbours), capped at limit."""
    if abs(len(a) - len(b)) >= limit:
        return limit
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) >= limit:
            return limit
        previous2, previous = previous, current
    return min(previous[-1], limit)


def allowed_edits(word: str) -> int:
    """How many edits a rule word tolerates: none below six letters, one from six, two from ten."""
    return 0 if len(word) < 6 else 1 if len(word) < 10 else 2


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def read_near_words(path: Path = NEAR_WORDS_FILE) -> frozenset[str]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError:
        return frozenset()
    return frozenset(w.strip() for w in lines if w.strip() and not w.startswith("#"))


class Misspellings:
    """Rewrites misspelt rule words in a word stream to the rule word (see the module docstring)."""

    def __init__(self, targets: Iterable[str], exact: Iterable[str], near_words: frozenset[str] | None = None):
        self.targets = frozenset(w for w in targets if w.isascii() and w.isalpha() and allowed_edits(w))
        keys: dict[str, set[str]] = {}
        for word in self.targets:
            variants = {word} | _deletions(word)
            if allowed_edits(word) > 1:
                variants |= {d2 for d in _deletions(word) for d2 in _deletions(d)}
            for v in variants:
                keys.setdefault(v, set()).add(word)
        # tuples of strings, not sets: the garbage collector stops tracking them (30,000 keys)
        self.keys: dict[str, tuple[str, ...]] = {k: tuple(sorted(v)) for k, v in keys.items()}
        self.excluded = frozenset(exact) | (read_near_words() if near_words is None else near_words)
        self.lo = max(1, min((len(w) for w in self.targets), default=6) - 2)
        self.hi = max((len(w) for w in self.targets), default=6) + 2
        self._c = (_wordscan.fuzzy(sorted(keys), sorted(self.excluded), self.lo, self.hi)
                   if _wordscan is not None and keys else None)
        self._known: dict[str, str | None] = {}  # token -> the rule word it is a misspelling of, or None

    def candidates(self, stream: str) -> set[str]:
        """Tokens of the stream that may be misspellings (a superset; `correction` decides)."""
        if self._c is not None:
            found = _wordscan.near(self._c, stream)
            if found is not None:
                return found
        out = set()
        for token in set(stream.split()):
            if (self.lo <= len(token) <= self.hi and token.isascii() and token.isalpha()
                    and token not in self.excluded and (token not in self._known or self._known[token])):
                if token in self.keys or any(d in self.keys for d in _deletions(token)):
                    out.add(token)
        return out

    def correction(self, token: str) -> str | None:
        """The rule word `token` is a misspelling of (one clear nearest), or None."""
        if token in self._known:
            return self._known[token]
        found: set[str] = set(self.keys.get(token, ()))
        for d in _deletions(token):
            found.update(self.keys.get(d, ()))
        best: list[tuple[int, str]] = []
        for word in found:
            distance = osa_distance(token, word)
            if 0 < distance <= allowed_edits(word):
                best.append((distance, abs(len(word) - len(token)), word))  # then a same-length word
        best.sort()
        result = best[0][2] if best and (len(best) == 1 or best[0][:2] < best[1][:2]) else None
        if len(self._known) < 65536:
            self._known[token] = result
        return result

    def correct(self, stream: str) -> str:
        """The stream with each misspelt rule word replaced by the rule word."""
        return self.apply(stream, self.candidates(stream))

    def apply(self, stream: str, found: set[str]) -> str:
        """The stream with those of the candidate tokens `found` that are misspellings replaced (the
        same stream object when none is)."""
        if not found:
            return stream
        fixes = {t: w for t in found if (w := self.correction(t)) is not None}
        if not fixes:
            return stream
        pattern = re.compile(r"(?<=\s)(?:" + "|".join(map(re.escape, sorted(fixes, key=len, reverse=True)))
                             + r")(?=\s)")
        return pattern.sub(lambda m: fixes[m.group()], stream)
