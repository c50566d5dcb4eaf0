"""Where the rule words occur in a word stream: one C walk (filters/content/_wordscan.c), or the Python path."""
from __future__ import annotations

from typing import Any, Iterable

try:  # the C word finder (filters/content/_wordscan.c), built by `pip install`; without it, the Python paths below
    from filters.content import _wordscan
except ImportError:  # pragma: no cover  (built without a C compiler)
    _wordscan = None  # type: ignore[assignment]


class WordIndex:
    """The rule words, for finding where they occur in a word stream (`offsets`); for the words in
    `every` (the phrases' pivots, see `first_hits`) every occurrence, for the others the first."""

    def __init__(self, words: Iterable[str], every: Iterable[str], native: bool = True):
        self.words = frozenset(words)
        self.every = frozenset(every) & self.words
        # native=False: the Python path only (the tests compare the two)
        use_c = native and _wordscan is not None
        self._c = _wordscan.index(sorted(self.words), set(self.every)) if use_c else None

    def offsets(self, stream: str) -> dict[str, list[int]]:
        """{word: [offset, ...]} for the indexed words among the tokens of `stream` (as `stream()`
        makes it: tokens apart by spaces), in the order each first occurs: every offset of a word
        in `every`, the first of the others."""
        if self._c is not None:
            found = _wordscan.offsets(self._c, stream)
            if found is not None:  # None: not ASCII
                return found
        return _offsets(self.words, self.every, stream)


    def offsets_near(self, stream: str, fuzzy: Any) -> tuple[dict[str, list[int]], set[str]]:
        """`offsets(stream)` and `fuzzy.candidates(stream)` (filters/content/fuzzy.py), in one C walk."""
        if self._c is not None and fuzzy._c is not None:
            found = _wordscan.offsets_near(self._c, fuzzy._c, stream)
            if found is not None:
                return found
        return self.offsets(stream), fuzzy.candidates(stream)


def _offsets(words: frozenset[str], every: frozenset[str], stream: str) -> dict[str, list[int]]:
    """`WordIndex.offsets` in Python: the words present from one split, then str.find for each
    (`stream()` puts a space on each side of every token: the C pass needs no such promise)."""
    found: list[tuple[int, str, list[int]]] = []
    for word in words.intersection(stream.split()):
        needle = f" {word} "
        first = stream.find(needle)
        if first < 0:
            continue  # beside other white space only: not a stream that stream() makes
        places = [first + 1]
        while word in every:
            at = stream.find(needle, places[-1] + len(word))
            if at < 0:
                break
            places.append(at + 1)
        found.append((places[0], word, places))
    return {word: places for _, word, places in sorted(found)}
