"""Compiled content rules: the rule set, its categories, and the scan that finds which rules a text matches."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from filters.content.fuzzy import Misspellings
from filters.content.phrases import Phrase, Step, first_hits
from filters.content.tokens import _Normaliser
from filters.content.wordindex import WordIndex

# categories whose rules are code (links and headers), not phrase lists
# rules of this category describe a context (a fraud warning, a security report): they never refuse
# or tag; a rule that names one under `unless` does not count in a message where it matches
CONTEXT = "context"
# context rules named `context.offer-*` are not a stance but the apparatus of a sale (a call to order,
# a price, delivery terms, a discount code); when OFFER_SIGNALS of them match, the message sells,
# and no stance context (a warning, a report, news, a safety or cessation text) excuses a rule in it:
# an offer that carries a disclaimer ("beware of fakes", "gamble responsibly") is still an offer
OFFER_PREFIX = CONTEXT + ".offer-"
OFFER_SIGNALS = 2

BUILTIN_CATEGORIES = {
    "links": "deceptive or disallowed links",
    "headers": "deceptive headers",
    "operator": "operator domain or address in client mail",
    "images": "image-only mail",
}


class RuleError(ValueError):
    """A rule file or content setting is wrong; the message names the file or key."""


@dataclass(frozen=True)
class Rule:
    category: str
    id: str              # "pharmacy.online-pharmacy"
    description: str
    phrases: tuple[str, ...]
    unless: tuple[str, ...] = ()   # context rule ids: when one matches the message, this rule does not


@dataclass
class RuleSet:
    categories: dict[str, str] = field(default_factory=lambda: dict(BUILTIN_CATEGORIES))
    rules: dict[str, Rule] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    shorteners: frozenset[str] = frozenset()
    # compiled
    anchors: dict[str, list[tuple[int, tuple[Step, ...], Rule]]] = field(default_factory=dict)
    literals: dict[int, tuple[frozenset[str], ...]] = field(default_factory=dict)  # id(steps) -> lit steps
    phrases: dict[int, Phrase] = field(default_factory=dict)                       # id(steps) -> compiled
    vocabulary: frozenset[str] = frozenset()
    _keep: list[Any] = field(default_factory=list)   # keeps the steps alive that `literals` keys by id
    normaliser: _Normaliser | None = None
    by_pivot: dict[str, list[int]] = field(default_factory=dict)       # pivot word -> id(steps) of its phrases
    rule_of: dict[int, Rule] = field(default_factory=dict)             # id(steps) -> its rule
    rank: dict[tuple[str, int], int] = field(default_factory=dict)     # (anchor word, id(steps)) -> place in anchors
    index: WordIndex | None = None   # every plain word of every phrase, to find where they occur
    misspellings: Misspellings | None = None  # misspelt rule words read as the rule word
    offers: "RuleSet | None" = None  # the offer signals (context.offer-*), scanned only when needed
    # each word of the rule files' word sets -> "w:<file>/<set>" (the content scorer's features: a
    # set's weight learnt from some of its words carries to the others, in every language)
    word_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def words_of(self, text: str | list[str]) -> tuple[str, dict[str, Any]]:
        """The normalised word stream of the text (misspelt rule words read as the rule word) and
        where each rule word occurs in it: what `scan` reads, and the content scorer too."""
        assert self.normaliser is not None and self.index is not None
        stream = self.normaliser.stream([text] if isinstance(text, str) else list(text))
        fuzzy = self.misspellings
        if fuzzy is None:
            return stream, self.index.offsets(stream)
        # where the rule words are, and the tokens that may be misspellings of them: one walk
        occurrences, near = self.index.offsets_near(stream, fuzzy)
        fixed = fuzzy.apply(stream, near)
        if fixed is not stream:
            return fixed, self.index.offsets(fixed)
        return stream, occurrences

    def scan(self, text: str | list[str], limit_hits: int = 50) -> list[tuple[Rule, str]]:
        """Each rule that matches the text (or blocks of text) once, with the normalised words that matched.

        In the order of a walk over the words: by the position of each phrase's first plain word,
        then by the phrase's place in `anchors` for that word. Only phrases whose every plain word
        occurs somewhere can match; `first_hits` finds where each first does.
        """
        stream, occurrences = self.words_of(text)
        vocabulary = set(occurrences)  # the rule words that occur
        # a phrase can match only where its rarest plain word (its pivot) occurs: start from those
        present = self.by_pivot.keys() & vocabulary
        if not present:
            return []
        live: dict[int, tuple[Phrase, Rule]] = {}
        dead: set[int] = set()
        for word in present:
            for key in self.by_pivot[word]:
                if key in live or key in dead:
                    continue
                phrase = self.phrases[key]
                if phrase.possible(vocabulary):
                    live[key] = (phrase, self.rule_of[key])
                else:
                    dead.add(key)
        if not live:
            return []
        rank = self.rank
        keys = list(live)
        firsts = first_hits(stream, [live[key][0] for key in keys], occurrences)
        hits = sorted(((index, rank[(word, keys[n])], live[keys[n]][1], words)
                       for n, (index, word, words) in firsts.items()), key=lambda hit: hit[:2])
        found: list[tuple[Rule, str]] = []
        seen: set[str] = set()
        for _, _, rule, words in hits:
            if rule.id not in seen:
                seen.add(rule.id)
                found.append((rule, words))
                if len(found) >= limit_hits:
                    break
        return found


    def excusing(self, found: list[tuple[Rule, str]], text: str | list[str]) -> set[str]:
        """The stance contexts among the rules `found` in `text` that excuse the rules naming them
        under `unless`: none when the text carries OFFER_SIGNALS or more distinct offer signals
        (`context.offer-*`, looked for only when a stance would excuse a rule found)."""
        stances = {rule.id for rule, _ in found if rule.category == CONTEXT}
        if not stances or self.offers is None:
            return stances
        if not any(stances.intersection(rule.unless) for rule, _ in found if rule.category != CONTEXT):
            return stances
        signals = {rule.id for rule, _ in self.offers.scan(text)}
        return set() if len(signals) >= OFFER_SIGNALS else stances
