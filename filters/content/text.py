"""The content stage's text side: folding, word tokens (leetspeak, spaced letters) and phrase matching."""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Iterable

from filters.content.fuzzy import confusable_map

try:  # the C word finder (filters/content/_wordscan.c), built by `pip install`; without it, the Python paths below
    from filters.content import _wordscan
except ImportError:  # pragma: no cover  (built without a C compiler)
    _wordscan = None  # type: ignore[assignment]

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


_FOLD_CHARS = re.compile(_char_class(_FOLD))
_COMBINING = re.compile(r"[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a",
                       "$": "s", "!": "i", "|": "l", "9": "g"})
_UNITS = frozenset({"st", "nd", "rd", "th", "mg", "g", "kg", "ml", "l", "x", "k", "m", "h", "am", "pm", "s",
                    "d", "gb", "mb", "tb", "cm", "mm", "km", "lbs", "lb", "oz", "eur", "usd", "ct", "px",
                    "pt", "min", "hr", "hrs", "yr", "yrs", "p", "c", "f", "v", "w", "kw", "kwh", "ms", "fps"})
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# between text blocks; tokens() turns control characters, SEP among them, into spaces, so in
# practice phrases do match across blocks (as they always have: the fast paths keep that)
SEP = "\x1e"
_TOKEN = re.compile(rf"[^\W_{_CJK}]+|[{_CJK}]|{SEP}")
_CJK_GAP = re.compile(rf"(?<=[{_CJK}]) (?=[{_CJK}])")
_ASCII_TOKEN = re.compile(rf"[a-z0-9]+|{SEP}")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# where a letter meets a digit or leet symbol: v1agra, c@sino, ca$h, now!
# a maximal run of word characters that holds such a transition
_LEET_WORD = re.compile(r"(?<![a-z0-9@$!|])[a-z0-9@$!|]*?(?:[a-z][0-9@$!|]|[0-9@$!|][a-z])[a-z0-9@$!|]*")


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
# combining marks in them are refused one by one below
_CONTEXT_FREE = ((0x80, 0x2FF), (0x370, 0x58F), (0x1E00, 0x2E7F), (0x3000, 0x30FF), (0xFB00, 0xFB06),
                 (0xFE00, 0xFE0F), (0xFE30, 0xFFEF), (0x1F000, 0x1FAFF), (0xE0000, 0xE007F))
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


def _token_text(text: str) -> str | None:
    """`text` folded as far as word tokens can tell (ASCII), or None when only `fold` is exact."""
    if text.isascii():
        return text.lower()
    # the characters outside ASCII, in C: their UTF-8 bytes are exactly the bytes >= 0x80
    others = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES)
    for ch in set(others.decode("utf-8", "surrogatepass")):
        folded = _own_fold(ch)
        if folded is None:
            return None
        text = text.replace(ch, folded)
    return text.lower()


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


_single_run = _wordscan.single_run if _wordscan is not None else _single_run_py
_leet_runs = _wordscan.leet_runs if _wordscan is not None else _leet_runs_py


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
        """Rewrite each word holding a letter next to a digit or leet symbol (v1agra -> viagra)."""
        # the regex finds whole words around a transition in C; only those words reach Python
        return _LEET_WORD.sub(lambda m: self._unleet(m.group()), text)

    def _unspace(self, tokens: list[str]) -> list[str]:
        """Runs of 3 or more one-letter words (c a s i n o, v.i.a.g.r.a) joined into vocabulary words."""
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
        classes = data.translate(_CLASSES)
        runs = _leet_runs(classes)
        if runs:
            data = self._unleet_runs(text, runs).encode("ascii")
        data = data.translate(_SPACES_BYTES)  # bytes.translate: a table lookup a byte, in C
        stream = f" {data.decode('ascii')} "
        if _single_run(data):
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


# ---------------------------------------------------------------------------------------------
# phrase matching

# a phrase step: ("lit", words) | ("pre", prefix) | ("num", None) | ("gap", n) | ("notnext"|"notprev", words)
Step = tuple[str, Any]


def match(steps: tuple[Step, ...], tokens: list[str], pos: int, k: int) -> int | None:
    """The end of the phrase `steps[k:]` matched from `tokens[pos]` (gaps shortest first), or None."""
    while k < len(steps):
        kind, arg = steps[k]
        if kind == "notnext":  # zero-width: the next word is not one of these
            if pos < len(tokens) and tokens[pos] in arg:
                return None
            k += 1
            continue
        if kind == "notprev":  # zero-width: the word before is not one of these
            if pos > 0 and tokens[pos - 1] in arg:
                return None
            k += 1
            continue
        if kind == "gap":
            for skip in range(arg + 1):
                if pos + skip > len(tokens) or (skip and tokens[pos + skip - 1] == SEP):
                    break
                end = match(steps, tokens, pos + skip, k + 1)
                if end is not None:
                    return end
            return None
        if pos >= len(tokens):
            return None
        token = tokens[pos]
        if kind == "lit":
            ok = token in arg
        elif kind == "pre":
            ok = token.startswith(arg) and token != SEP
        else:
            ok = token.isdigit()
        if not ok:
            return None
        pos += 1
        k += 1
    return pos


def evidence(tokens: list[str], start: int, end: int) -> str:
    return _CJK_GAP.sub("", " ".join(tokens[start:end]))


# words so common in mail that a phrase is better found from one of its other plain words
_COMMON = frozenset("""
a about after all an and any are as at be been best buy by can cheap day days deal deals discount do
for free from get has have here home how if in is it just more my new no not now of off on one online
or order our out over sale save shop so that the this to today top up us we what when will with you
your""".split())


def _frequent_words() -> frozenset[str]:
    """The words of rules/common-words.txt: frequent in ordinary mail (see `pivot`)."""
    from filters.content.rules import RULES_DIR
    try:
        text = (RULES_DIR / "common-words.txt").read_text("utf-8")
    except OSError:
        return frozenset()
    return frozenset(w for line in text.splitlines() if not line.startswith("#") for w in line.split())


_COMMON = _COMMON | _frequent_words()


def pivot(steps: tuple[Step, ...]) -> tuple[int, int, int, int]:
    """(k, least, most, reach): the plain-word step to look for first (its words the least common),
    how many tokens the phrase can hold before it, and how many it can read in all."""
    best_k, best_score = -1, (2.0, 0, 0)
    for k, (kind, arg) in enumerate(steps):
        if kind == "lit":
            # the least common words; among equally common ones the longest ("home", not "a")
            score = (sum(w in _COMMON for w in arg) / len(arg), -min(map(len, arg)), len(arg))
            if score < best_score:
                best_k, best_score = k, score
    least = sum(1 for kind, _ in steps[:best_k] if kind in ("lit", "pre", "num"))
    most = least + sum(arg for kind, arg in steps[:best_k] if kind == "gap")
    reach = sum(1 for kind, _ in steps if kind in ("lit", "pre", "num")) + sum(a for kind, a in steps if kind == "gap")
    return best_k, least, most, reach


class Phrase:
    """A compiled phrase with what the scan needs to find it: the pivot step and quick tests around it."""

    def __init__(self, steps: tuple[Step, ...], offset: int):
        self.steps = steps
        self.offset = offset  # tokens before the anchor (the first plain word)
        self.pivot, self.least, self.most, self.reach = pivot(steps)
        k = self.pivot
        # the plain-word steps, the rarest first: the test "all occur" mostly stops at the first
        self.literals = (steps[k][1], *(w for i, (kind, w) in enumerate(steps) if kind == "lit" and i != k))
        # the word right before the pivot when that step is a plain word
        self.behind: frozenset[str] | None = steps[k - 1][1] if k > 0 and steps[k - 1][0] == "lit" else None
        self._ahead: re.Pattern[str] | None | bool = False

    def possible(self, vocabulary: set[str]) -> bool:
        """Every plain-word step has a word in `vocabulary` (else the phrase cannot match)."""
        for words in self.literals:
            if words.isdisjoint(vocabulary):
                return False
        return True

    @property
    def ahead(self) -> re.Pattern[str] | None:
        """The plain words right after the pivot, as a pattern for the stream after the pivot token."""
        if self._ahead is False:
            parts = []
            for kind, arg in self.steps[self.pivot + 1:]:
                if kind != "lit":
                    break
                parts.append(" +(?:" + "|".join(map(re.escape, sorted(arg))) + ")(?= )")
            self._ahead = re.compile("".join(parts)) if parts else None
        return self._ahead  # type: ignore[return-value]


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


def first_hits(stream: str, phrases: list[Phrase],
               occurrences: dict[str, list[int]]) -> dict[int, tuple[int, str, str]]:
    """For each phrase (by index) that matches: (offset of its anchor token, anchor word, evidence)
    of its first match in `stream`; `occurrences` holds where each rule word occurs (`WordIndex`).

    Only the occurrences of each phrase's pivot words are visited; a phrase is tried there when
    the words right before and after the pivot fit, on the tokens around it.
    """
    by_word: dict[str, list[int]] = {}
    for n, phrase in enumerate(phrases):
        for word in phrase.steps[phrase.pivot][1] & occurrences.keys():
            by_word.setdefault(word, []).append(n)
    found: dict[int, tuple[int, str, str]] = {}
    for word, group in by_word.items():
        before = max(phrases[n].most for n in group) + 1
        after = max(phrases[n].reach - phrases[n].least for n in group) + 1
        behind = any(phrases[n].behind is not None for n in group)
        for start_at in occurrences[word]:
            if not group:
                break
            at = start_at - 1  # the space before the pivot token
            tail = start_at + len(word)  # the space after it
            previous = _previous_token(stream, at) if behind else None
            near: list[str] | None = None
            for n in list(group):
                phrase = phrases[n]
                if phrase.behind is not None and previous not in phrase.behind:
                    continue
                ahead = phrase.ahead
                if ahead is not None and not ahead.match(stream, tail):
                    continue
                if near is None:
                    near, p = around(stream, start_at, before, after)
                for start in range(max(p - phrase.most, 0), p - phrase.least + 1):
                    end = match(phrase.steps, near, start, 0)
                    if end is None:
                        continue
                    index = _token_start(stream, start_at, start + phrase.offset - p)
                    if n not in found or index < found[n][0]:
                        found[n] = (index, near[start + phrase.offset], evidence(near, start, end))
                    group.remove(n)  # later occurrences of this word start later
                    break
    return found


def _previous_token(stream: str, at: int) -> str | None:
    """The token before the space at `at` (tokens are separated by one or more spaces)."""
    end = at
    while end > 0 and stream[end - 1] == " ":
        end -= 1
    return stream[stream.rfind(" ", 0, end) + 1:end] if end > 0 else None


def _token_start(stream: str, at: int, delta: int) -> int:
    """The offset of the token `delta` tokens after (or, negative, before) the one starting at `at`;
    tokens are apart by white space, as str.split() sees them, and that token exists."""
    while delta < 0:
        at -= 1
        while stream[at].isspace():
            at -= 1
        while at > 0 and not stream[at - 1].isspace():
            at -= 1
        delta += 1
    while delta > 0:
        while not stream[at].isspace():
            at += 1
        while stream[at].isspace():
            at += 1
        delta -= 1
    return at


def around(stream: str, at: int, before: int, after: int) -> tuple[list[str], int]:
    """The tokens of `stream` around the one starting at `at`: up to `before` before it, then up to
    `after` from it on (fewer only at the ends of the stream); and that token's index in the list."""
    width = 16 * before + 32
    while True:
        start = at - width
        if start <= 0:
            head = stream[:at].split()
            break
        head = stream[start:at].split()[1:]  # the first one may be cut
        if len(head) >= before:
            head = head[-before:]
            break
        width *= 4
    width = 16 * after + 32
    while True:
        end = at + width
        if end >= len(stream):
            tail = stream[at:].split()
            break
        tail = stream[at:end].split()[:-1]  # the last one may be cut
        if len(tail) >= after:
            break
        width *= 4
    return head + tail[:after], len(head)
