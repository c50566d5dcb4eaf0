"""Word tokens of folded text: leetspeak undone, spaced-out letters joined, the word stream the scan reads."""
from __future__ import annotations

import itertools
import re

from filters.content.folding import _CJK, _token_text, fold

try:  # the C word finder (filters/content/_wordscan.c), built by `pip install`; without it, the Python paths below
    from filters.content import _wordscan
except ImportError:  # pragma: no cover  (built without a C compiler)
    _wordscan = None  # type: ignore[assignment]

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a",
                       "$": "s", "!": "i", "|": "l", "9": "g"})
_UNITS = frozenset({"st", "nd", "rd", "th", "mg", "g", "kg", "ml", "l", "x", "k", "m", "h", "am", "pm", "s",
                    "d", "gb", "mb", "tb", "cm", "mm", "km", "lbs", "lb", "oz", "eur", "usd", "ct", "px",
                    "pt", "min", "hr", "hrs", "yr", "yrs", "p", "c", "f", "v", "w", "kw", "kwh", "ms", "fps"})
# between text blocks; tokens() turns control characters, SEP among them, into spaces, so in
# practice phrases do match across blocks (as they always have: the fast paths keep that)
SEP = "\x1e"
_TOKEN = re.compile(rf"[^\W_{_CJK}]+|[{_CJK}]|{SEP}")
_ASCII_TOKEN = re.compile(rf"[a-z0-9]+|{SEP}")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# where a letter meets a digit or leet symbol: v1agra, c@sino, ca$h, now!
# a maximal run of word characters that holds such a transition
_LEET_WORD = re.compile(r"(?<![a-z0-9@$!|])[a-z0-9@$!|]*?(?:[a-z][0-9@$!|]|[0-9@$!|][a-z])[a-z0-9@$!|]*")

# ASCII word text: letters 'a', digits and leet symbols '1', anything else ' '
_CLASSES = bytes(97 if 97 <= c <= 122 else 49 if chr(c) in "0123456789@$!|" else 32 for c in range(256))
# ASCII word text to tokens separated by spaces
_SPACES = "".join(chr(c) if chr(c).isdigit() or 97 <= c <= 122 else " " for c in range(128))
_SPACES_BYTES = _SPACES.encode("ascii") + b" " * 128
# in those classes, a digit or leet symbol next to a letter (the regex skips to each '1' in C)
_TRANSITION = re.compile(rb"1(?<=a1)|1(?=a)")
# three or more one-character tokens in a row (the stream has a space at each end); the hint is
# the cheap test, on the stream with each token character made 'a' (the stream holds [a-z0-9 ]
# only), so it starts from the three-byte literal " a " (a one-character token); the pattern
# takes whole runs
_SINGLES_HINT = re.compile(rb" a +a +a ")
_TOKEN_CHARS_A = bytes(97 if 48 <= c <= 57 or 97 <= c <= 122 else c for c in range(256))
_SINGLES = re.compile(r" ([a-z0-9](?: +[a-z0-9](?= )){2,})(?= )")


def _single_run_py(data: bytes) -> bool:
    """Three or more one-character tokens in a row in `data` ([a-z0-9] tokens apart by spaces)
    (`_single_run`: the C version when built)."""
    return _SINGLES_HINT.search(data.translate(_TOKEN_CHARS_A).join((b" ", b" "))) is not None


def _leet_runs_py(classes: bytes) -> list[int]:
    """[start, end, ...] of each run of word characters in `classes` (see _CLASSES) where a letter
    meets a digit or leet symbol (`_leet_runs`: the C version when built)."""
    runs: list[int] = []
    if b"a1" not in classes and b"1a" not in classes:
        return runs
    for m in _TRANSITION.finditer(classes):
        at = m.start()
        if runs and at < runs[-1]:
            continue  # in the run just found
        end = classes.find(b" ", at)
        runs += [classes.rfind(b" ", 0, at) + 1, len(classes) if end < 0 else end]
    return runs


def _leet_runs_text_py(data: bytes) -> list[int]:
    """`_leet_runs` of the word classes of ASCII word text (`_leet_runs_text`: the C version when
    built, which classes each byte as it reads it)."""
    return _leet_runs_py(data.translate(_CLASSES))


def _spaced_py(data: bytes) -> tuple[str, bool]:
    """The word stream of ASCII word text (every character but [a-z0-9] a space, and a space at
    each end) and whether it holds three one-character tokens in a row (`_spaced`: the C version
    when built, one pass)."""
    words = data.translate(_SPACES_BYTES)  # bytes.translate: a table lookup a byte, in C
    return f" {words.decode('ascii')} ", _single_run_py(words)


_single_run = _wordscan.single_run if _wordscan is not None else _single_run_py
_leet_runs = _wordscan.leet_runs if _wordscan is not None else _leet_runs_py
# (getattr: an extension built before these were added still serves the others)
_leet_runs_text = getattr(_wordscan, "leet_runs_text", _leet_runs_text_py)
_spaced = getattr(_wordscan, "spaced", _spaced_py)


class _Normaliser:
    """Folded text to word tokens, undoing leetspeak and spaced-out letters against a vocabulary."""

    def __init__(self, vocabulary: frozenset[str]):
        self.vocabulary = vocabulary
        self.longest = max((len(w) for w in vocabulary), default=1)
        # word -> `_unleet(word)`: ordinals, years and postcodes (14th, 1950s, dn15) recur
        self._unleeted: dict[str, str] = {}

    def _unleet(self, word: str) -> str:
        token = word.strip("!|")
        if token.startswith("$") and token[1:2].isdigit():
            token = token[1:]
        digits = re.match(r"\d+", token) if token[:1].isdigit() else None
        if digits and token[digits.end():].isalpha():
            rest = token[digits.end():]
            if len(digits.group()) >= 2 or rest in _UNITS:
                return f" {digits.group()} {rest} "
        mapped = token.translate(_LEET)
        if "1" in token and mapped not in self.vocabulary:
            other = token.replace("1", "l").translate(_LEET)
            if other in self.vocabulary:
                mapped = other
        if not mapped.isalpha():
            return f" {token} "
        return f" {mapped} "

    def _segment(self, letters: str) -> str:
        """Split run-together letters into vocabulary words where possible (greedy, longest first)."""
        out: list[str] = []
        i, n = 0, len(letters)
        while i < n:
            for size in range(min(self.longest, n - i), 2, -1):
                if letters[i:i + size] in self.vocabulary:
                    out.append(letters[i:i + size])
                    i += size
                    break
            else:
                out.append(letters[i])
                i += 1
        return " ".join(out)

    def _unleet_words(self, text: str) -> str:
        """Rewrite each word holding a letter next to a digit or leet symbol (v1agra -> viagra): what
        `_LEET_WORD.sub` with `_unleet` gives (`_unleet_words_py`), the words found by `_leet_runs_text`
        (a character outside ASCII is '?' there, which is no word character either, as in the regex)
        and each rewritten once (`_unleet_runs`: text in Cyrillic, where з and ч fold to 3 and 4,
        has thousands)."""
        runs = _leet_runs_text(text.encode("ascii", "replace"))
        return self._unleet_runs(text, runs) if runs else text

    def _unleet_words_py(self, text: str) -> str:
        """`_unleet_words` with the regex (the tests hold the two equal)."""
        return _LEET_WORD.sub(lambda m: self._unleet(m.group()), text)

    def _unspace(self, tokens: list[str]) -> list[str]:
        """Runs of 3 or more one-letter words (c a s i n o, v.i.a.g.r.a) joined into vocabulary words."""
        if b"\x01\x01\x01" not in bytes(map(min, map(len, tokens), itertools.repeat(2))):
            return tokens  # no three one-character tokens in a row (the lengths, capped, walked in C)
        singles = [i for i, t in enumerate(tokens) if len(t) == 1 and t.isascii() and t != SEP]
        if len(singles) < 3:
            return tokens
        runs: list[tuple[int, int]] = []
        start = prev = singles[0]
        for i in singles[1:] + [-2]:
            if i != prev + 1:
                if prev - start >= 2:
                    runs.append((start, prev + 1))
                start = i
            prev = i
        if not runs:
            return tokens
        out: list[str] = []
        pos = 0
        for start, end in runs:
            out.extend(tokens[pos:start])
            letters = "".join(tokens[start:end]).translate(_LEET)
            out.extend(self._segment(letters).split() if letters.isalpha() else tokens[start:end])
            pos = end
        out.extend(tokens[pos:])
        return out

    def tokens(self, folded: str) -> list[str]:
        """The word tokens of folded text (the reference: `words` gives the same for message blocks)."""
        if _CONTROLS.search(folded):
            folded = _CONTROLS.sub(" ", folded)
        folded = self._unleet_words(folded)
        pattern = _ASCII_TOKEN if folded.isascii() else _TOKEN
        return self._unspace(pattern.findall(folded))

    def words(self, blocks: list[str]) -> list[str]:
        """`tokens` of the folded blocks joined by SEP (what `stream` holds, as a list)."""
        return self.stream(blocks).split()

    def stream(self, blocks: list[str]) -> str:
        """The word tokens of the blocks as one string, each token between spaces (one or more).

        Equal to `tokens` of the folded blocks joined by SEP, but made with C-speed string passes
        when the text folds character by character (see `_token_text`), else by `tokens` itself.
        """
        parts = [_token_text(b) for b in blocks]
        if None in parts:
            return " " + " ".join(self.tokens(f"\n{SEP}\n".join(fold(b) for b in blocks))) + " "
        text = "\n".join(parts)  # type: ignore[arg-type]  # SEP is a control: a space, as in tokens()
        data = text.encode("ascii")
        runs = _leet_runs_text(data)
        if runs:
            data = self._unleet_runs(text, runs).encode("ascii")
        stream, singles = _spaced(data)
        if singles:
            stream = _SINGLES.sub(self._join_singles, stream)
        return stream

    def _unleet_runs(self, text: str, runs: list[int]) -> str:
        """`_unleet_words` for ASCII text: each run of word characters with a transition (`_leet_runs`),
        rewritten."""
        out: list[str] = []
        pos = 0
        for i in range(0, len(runs), 2):
            start, end = runs[i], runs[i + 1]
            out.append(text[pos:start])
            word = text[start:end]
            rewritten = self._unleeted.get(word)
            if rewritten is None:
                rewritten = self._unleet(word)
                if len(self._unleeted) < 8192:
                    self._unleeted[word] = rewritten
            out.append(rewritten)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _join_singles(self, m: re.Match[str]) -> str:
        letters = "".join(m.group(1).split()).translate(_LEET)
        return " " + (self._segment(letters) if letters.isalpha() else m.group(1))
