"""Phrase matching: compiled phrase steps, their pivot words, and each phrase's first match in a word stream."""
from __future__ import annotations

import re
from typing import Any

from filters.content.folding import _CJK
from filters.content.tokens import SEP

_CJK_GAP = re.compile(rf"(?<=[{_CJK}]) (?=[{_CJK}])")

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
