"""The content scorer: a linear model over normalised words and word pairs that names what phrase rules miss."""
from __future__ import annotations

import gzip
import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import Any, Hashable, Iterable

MODEL_FILE = Path(__file__).resolve().parent / "rules" / "scorer.json.gz"
# an offer is made near the top; a cap keeps a 100 KB newsletter's cost that of a short one
MAX_CHARS = 3000
MAX_WORDS = 400
MAX_SUBJECT_WORDS = 40
# a word that is a link, a domain or an address written in the text (the link checks judge those)
_LINKISH = re.compile(r"://|^www\.|@\w|\w\.[a-zA-Z]{2,}")


def leading_text(visible: list[str]) -> str:
    """What the scorer reads of the visible text: its first MAX_CHARS characters."""
    return "\n".join(visible)[:MAX_CHARS]


def without_links(text: str) -> str:
    """The text without the words that are links, domains or addresses (one look at each word that
    holds a dot or an at sign: a regex over the whole text cost 0.5 ms for 6,000 characters)."""
    if "." not in text and "@" not in text:
        return text
    search = _LINKISH.search
    return " ".join(w for w in text.split() if not (("." in w or "@" in w) and search(w)))


def subject_shape(subject: str) -> list[str]:
    """What a subject looks like, beyond its words: shouting, exclamation, money signs."""
    out = []
    letters = [c for c in subject if c.isalpha()]
    if len(letters) >= 6 and sum(c.isupper() for c in letters) >= 0.6 * len(letters):
        out.append("S:caps")
    if subject.count("!") >= 2:
        out.append("S:bang")
    if any(c in subject for c in "$€£") or "$$" in subject:
        out.append("S:money")
    return out


# a message with fewer features counts as if it had this many: a note of ten words is not judged on
# two or three of them (with length 1 for every message, "Stock up on flour." was 0.92 prohibited)
FEW_FEATURES = 100
# below this many features (some 25 words with the subject) the scorer neither refuses nor excuses:
# there is too little to go on, and the phrase rules judge such a note alone
MIN_FEATURES = 60


def feature_value(count: int) -> float:
    """The value of each of a message's `count` features: the message's feature vector has length
    1 (at most), so a long message is not more prohibited than a short one for having more words."""
    return 1.0 / math.sqrt(max(count, FEW_FEATURES))


def features(stream: str, subject_stream: str, subject: str,
             word_sets: dict[str, tuple[str, ...]] | None = None) -> set[str]:
    """The scorer's features of a message: its words and adjacent word pairs (the first MAX_WORDS),
    its subject's words and word pairs (prefixed `s:`), the subject's shape (`S:...`) and the rule
    files' word sets its words belong to (`w:<file>/<set>`). `stream` and
    `subject_stream` are normalised word streams (`RuleSet.words_of`), so disguises are undone."""
    words = stream.split(None, MAX_WORDS)[:MAX_WORDS]
    out = set(words)
    if word_sets:  # each word set a word of the message belongs to (RuleSet.word_sets)
        for sets in [word_sets[w] for w in out if w in word_sets]:
            out.update(sets)
    out.update(map(" ".join, zip(words, words[1:])))
    subject_words = subject_stream.split(None, MAX_SUBJECT_WORDS)[:MAX_SUBJECT_WORDS]
    out.update("s:" + w for w in subject_words)
    out.update("s:" + a + " " + b for a, b in zip(subject_words, subject_words[1:]))
    out.update(subject_shape(subject))
    return out


@dataclass(frozen=True)
class Scorer:
    """Two logistic regressions: whether a message is prohibited at all (one weight a feature, so
    legitimate mail, the common case, costs one addition per known feature), and which category
    it belongs to (a weight per category, read only for mail the first one flags)."""

    categories: tuple[str, ...]
    bias: float
    weights: dict[str, float]                                   # feature -> weight (prohibited)
    category_bias: tuple[float, ...]
    category_weights: dict[str, tuple[tuple[int, float], ...]]  # feature -> (category index, weight)
    threshold: float   # refuse when the probability that the message is prohibited reaches this
    veto: float = 0.0  # below this, a phrase rule of a category the model knows does not refuse
    vetoable: frozenset[str] = frozenset()    # the categories a veto excuses: all but headers (filled in)

    def __post_init__(self) -> None:
        # a deceptive subject is deceptive whatever the text says
        object.__setattr__(self, "vetoable", frozenset(self.categories) - {"headers"})

    def prohibited(self, feats: Iterable[str]) -> float:
        """How likely the message is prohibited (0 to 1)."""
        feats = feats if isinstance(feats, (set, frozenset)) else set(feats)
        # one dictionary lookup a feature, in C (the model is 55,000 weights: each lookup is about
        # one cache miss, so one is what it may cost)
        score = self.bias + sum(map(self.weights.get, feats, repeat(0.0))) * feature_value(len(feats))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, score))))

    def category(self, feats: Iterable[str]) -> str:
        scores = list(self.category_bias)
        for f in feats:
            for k, w in self.category_weights.get(f, ()):
                scores[k] += w
        return self.categories[max(range(len(scores)), key=scores.__getitem__)]

    def judge(self, feats: Iterable[str], threshold: float | None = None) -> tuple[str, float] | None:
        """The prohibited category and how likely the message is prohibited, when that reaches the
        threshold; else None."""
        p = self.prohibited(feats)
        if p < (threshold or self.threshold):  # None or 0: the threshold tuned with the model
            return None
        return self.category(feats), p

    def evidence(self, feats: Iterable[str], count: int = 3) -> list[str]:
        """The features that speak most for a refusal (for the reason given)."""
        # the message's own words (not the word-set, rule and subject-shape features behind them)
        weights = self.weights
        pull = sorted(((weights[f], f) for f in feats
                       if weights.get(f, 0.0) > 0 and f[:2] not in ("w:", "r:", "S:")), reverse=True)
        return [f.removeprefix("s:") for _, f in pull[:count]]

    def to_json(self) -> dict:
        # rounded: sums over sets of strings run in an order that changes between runs (hash
        # randomisation), so the last digits of a weight do; the same training gives the same file
        return {"categories": list(self.categories), "threshold": self.threshold, "veto": self.veto,
                "bias": round(self.bias, 6), "weights": {f: round(w, 4) for f, w in sorted(self.weights.items())},
                "category_bias": [round(b, 6) for b in self.category_bias],
                "category_weights": {f: [[k, round(w, 4)] for k, w in row]
                                     for f, row in sorted(self.category_weights.items())}}

    @classmethod
    def from_json(cls, data: dict) -> "Scorer":
        categories = tuple(data["categories"])
        if not categories or len(data["category_bias"]) != len(categories):
            raise ValueError("scorer model: one category bias per category")
        return cls(categories, float(data["bias"]), {f: float(w) for f, w in data["weights"].items()},
                   tuple(float(b) for b in data["category_bias"]),
                   {f: tuple((int(k), float(w)) for k, w in row) for f, row in data["category_weights"].items()},
                   float(data["threshold"]), float(data.get("veto", 0.0)))


class Recent:
    """The last `size` judgements by key (a subject, text and rule hits): the same campaign text is
    scored once, not once per transaction. Thread-safe: big messages are scanned in threads."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


RECENT = Recent()


def save(scorer: Scorer, path: Path = MODEL_FILE) -> None:
    raw = json.dumps(scorer.to_json(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    path.write_bytes(gzip.compress(raw, mtime=0))  # mtime 0: the same model gives the same bytes


@lru_cache(maxsize=None)
def load(path: Path = MODEL_FILE) -> Scorer | None:
    """The shipped model, or None when there is none (the scorer is then off)."""
    if not path.exists():
        return None
    return Scorer.from_json(json.loads(gzip.decompress(path.read_bytes())))
