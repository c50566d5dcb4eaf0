"""Stage content: prohibited content, deceptive links and deceptive headers, matched on what a reader sees.

The rules are data (`filters/content_rules/*.toml`, plus operator and client rule files); the
text they match is the decoded, reader-visible text of the message (`relay/textview.py`),
normalised against evasion (NFKC, case, accents, zero-width characters, homoglyphs, leetspeak,
spaced-out letters). Phrases match whole words only, so "Scunthorpe" or "cocktail" never hit.
Per category the operator (and per client) chooses `reject`, `tag` or `off`. See docs/CONTENT.md.

A check stage never modifies the message: a `tag` hit is recorded in
`ctx.facts["content_tags"]` (a list of `(rule_id, category)` tuples) and the core adds one
`X-Consent-Relay-Content: rule=RULE; category=CATEGORY` header per tag to every copy
(`tag_header_fields(facts)` builds them).
"""
from __future__ import annotations

import asyncio

import dataclasses
import ipaddress
import itertools
import os
import re
import tomllib
import unicodedata
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from email.utils import getaddresses

from filters.content_rules import SHORTENERS_FILE, default_rule_files
from filters.context import MessageContext
from filters.verdict import CONTINUE, Verdict
from relay.textview import TextView, reader_view

NAME = "content"
DESCRIPTION = ("prohibited content categories, deceptive links and deceptive headers, matched on the "
               "decoded reader-visible text; per category reject, tag or off")
PHASE = "message"

ACTIONS = ("reject", "tag", "off")
FACTS_KEY = "content_tags"
TAG_HEADER = "X-Consent-Relay-Content"

# categories whose rules are code (links and headers), not phrase lists
BUILTIN_CATEGORIES = {
    "links": "deceptive or disallowed links",
    "headers": "deceptive headers",
    "operator": "operator domain or address in client mail",
}


class RuleError(ValueError):
    """A rule file or content setting is wrong; the message names the file or key."""


# ---------------------------------------------------------------------------------------------
# normalisation: the same for message text and for rule phrases

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
_FOLD = {**_INVISIBLE, **{ord(k): v for k, v in _HOMOGLYPHS.items()},
         ord("’"): "'", ord("‘"): "'", ord("`"): "'"}
_FOLD_CHARS = re.compile("[" + "".join(re.escape(chr(c)) for c in _FOLD) + "]")
_COMBINING = re.compile(r"[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a",
                       "$": "s", "!": "i", "|": "l", "9": "g"})
_UNITS = frozenset({"st", "nd", "rd", "th", "mg", "g", "kg", "ml", "l", "x", "k", "m", "h", "am", "pm", "s",
                    "d", "gb", "mb", "tb", "cm", "mm", "km", "lbs", "lb", "oz", "eur", "usd", "ct", "px",
                    "pt", "min", "hr", "hrs", "yr", "yrs", "p", "c", "f", "v", "w", "kw", "kwh", "ms", "fps"})
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
SEP = "\x1e"  # between text blocks (control characters are not text): no phrase matches across it
_TOKEN = re.compile(rf"[^\W_{_CJK}]+|[{_CJK}]|{SEP}")
_CJK_GAP = re.compile(rf"(?<=[{_CJK}]) (?=[{_CJK}])")
_ASCII_TOKEN = re.compile(rf"[a-z0-9]+|{SEP}")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789@$!|")
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


class _Normaliser:
    """Folded text to word tokens, undoing leetspeak and spaced-out letters against a vocabulary."""

    def __init__(self, vocabulary: frozenset[str]):
        self.vocabulary = vocabulary
        self.longest = max((len(w) for w in vocabulary), default=1)

    def _unleet(self, word: str) -> str:
        token = word.strip("!|")
        if token.startswith("$") and token[1:2].isdigit():
            token = token[1:]
        digits = re.match(r"\d+", token)
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
        if _CONTROLS.search(folded):
            folded = _CONTROLS.sub(" ", folded)
        folded = self._unleet_words(folded)
        pattern = _ASCII_TOKEN if folded.isascii() else _TOKEN
        return self._unspace(pattern.findall(folded))


# ---------------------------------------------------------------------------------------------
# rules

@dataclass(frozen=True)
class Rule:
    category: str
    id: str              # "pharmacy.online-pharmacy"
    description: str
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class Hit:
    rule_id: str         # "pharmacy.online-pharmacy"
    category: str        # "pharmacy"
    title: str           # "prescription drugs and online pharmacy"
    evidence: str        # what matched, as normalised text (or the link/header)

    def reason(self) -> str:
        evidence = self.evidence if len(self.evidence) <= 80 else self.evidence[:77] + "..."
        evidence = evidence.replace('"', "'")
        return f'content rule {self.rule_id} ({self.title}): "{evidence}"'


# a phrase step: ("lit", words) | ("pre", prefixes) | ("num", None) | ("gap", n)
Step = tuple[str, Any]


@dataclass
class RuleSet:
    categories: dict[str, str] = field(default_factory=lambda: dict(BUILTIN_CATEGORIES))
    rules: dict[str, Rule] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    shorteners: frozenset[str] = frozenset()
    # compiled
    anchors: dict[str, list[tuple[int, tuple[Step, ...], Rule]]] = field(default_factory=dict)
    literals: dict[int, tuple[frozenset[str], ...]] = field(default_factory=dict)  # id(steps) -> lit steps
    vocabulary: frozenset[str] = frozenset()
    _keep: list[Any] = field(default_factory=list)   # keeps the steps alive that `literals` keys by id
    normaliser: _Normaliser | None = None

    def scan(self, text: str | list[str], limit_hits: int = 50) -> list[tuple[Rule, str]]:
        """Each rule that matches the text (or blocks of text) once, with the normalised words that matched."""
        assert self.normaliser is not None
        blocks = [text] if isinstance(text, str) else text
        tokens = self.normaliser.tokens(f"\n{SEP}\n".join(fold(b) for b in blocks))
        vocabulary = set(tokens)
        present = self.anchors.keys() & vocabulary
        if not present:
            return []
        # only phrases whose every plain word occurs somewhere in the text can match
        candidates = {}
        for word in present:
            entries = [e for e in self.anchors[word]
                       if all(not words.isdisjoint(vocabulary) for words in self.literals[id(e[1])])]
            if entries:
                candidates[word] = entries
        if not candidates:
            return []
        found: list[tuple[Rule, str]] = []
        seen: set[str] = set()
        for i in [i for i, token in enumerate(tokens) if token in candidates]:
            for offset, steps, rule in candidates[tokens[i]]:
                if rule.id in seen:
                    continue
                start = i - offset
                if start < 0:
                    continue
                end = _match(steps, tokens, start, 0)
                if end is not None:
                    seen.add(rule.id)
                    found.append((rule, _CJK_GAP.sub("", " ".join(tokens[start:end]))))
                    if len(found) >= limit_hits:
                        return found
        return found


def _match(steps: tuple[Step, ...], tokens: list[str], pos: int, k: int) -> int | None:
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
                end = _match(steps, tokens, pos + skip, k + 1)
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


_GROUP = re.compile(r"\(([^()]*)\)")


def _expand(phrase: str) -> list[str]:
    """`(a b|c) d` -> ["a b d", "c d"]: parenthesised groups may hold several words per option."""
    groups = _GROUP.findall(phrase)
    if not groups:
        return [phrase]
    template = _GROUP.sub("\x00", phrase)
    out = []
    for choice in itertools.product(*[g.split("|") for g in groups]):
        text = template
        for option in choice:
            text = text.replace("\x00", option.strip(), 1)
        out.append(" ".join(text.split()))
    return out


_PLAIN = _Normaliser(frozenset())


def _word_tokens(word: str) -> list[str]:
    """A rule word normalised exactly as message text is."""
    return _PLAIN.tokens(fold(word))


def _compile_phrase(phrase: str, sets: Mapping[str, list[str]], where: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    for word in phrase.split():
        if re.fullmatch(r"~\d+", word):
            steps.append(("gap", int(word[1:])))
            continue
        if word == "#":
            steps.append(("num", None))
            continue
        if word.endswith("*") and "|" not in word:
            stem = _word_tokens(word[:-1])
            if len(stem) != 1:
                raise RuleError(f"{where}: {word!r}: a prefix must be one word")
            steps.append(("pre", stem[0]))
            continue
        negate = ""
        if word.startswith("<!"):
            negate, word = "notprev", word[2:]
        elif word.startswith("!"):
            negate, word = "notnext", word[1:]
        options: list[str] = []
        for option in word.split("|"):
            if option.startswith("@"):
                if option[1:] not in sets:
                    raise RuleError(f"{where}: unknown word set {option!r} (define it under [sets])")
                options.extend(sets[option[1:]])
            else:
                options.append(option)
        token_lists = [_word_tokens(o) for o in options]
        if negate:
            steps.append((negate, frozenset(t for toks in token_lists for t in toks)))
            continue
        if len(token_lists) == 1 and len(token_lists[0]) > 1:  # "e-liquid", "出会い", "l'argent"
            steps.extend(("lit", frozenset([t])) for t in token_lists[0])
            continue
        words = set()
        for option, toks in zip(options, token_lists):
            if len(toks) != 1:
                raise RuleError(f"{where}: alternative {option!r} in {word!r} is not one word; "
                                f"use a group: (two words|other)")
            words.add(toks[0])
        steps.append(("lit", frozenset(words)))
    if not steps or all(kind != "lit" for kind, _ in steps):
        raise RuleError(f"{where}: phrase {phrase!r} needs at least one plain word")
    if steps[0][0] == "notnext" or steps[-1][0] == "notprev":
        raise RuleError(f"{where}: phrase {phrase!r}: '!' looks at the next word, '<!' at the one before")
    if steps[-1][0] == "gap":
        raise RuleError(f"{where}: phrase {phrase!r} must not end with a gap")
    return tuple(steps)


def _read_rule_file(path: Path, ruleset: RuleSet) -> None:
    where = path.name
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise RuleError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleError(f"{where}: not valid TOML: {exc}") from None
    unknown = set(data) - {"category", "sets", "rules"}
    if unknown:
        raise RuleError(f"{where}: unknown key {sorted(unknown)[0]!r} (category, sets, rules)")
    category = data.get("category", {})
    default_cat = category.get("id") if isinstance(category, dict) else None
    if default_cat is not None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", str(default_cat)):
            raise RuleError(f"{where}: category.id {default_cat!r}: use a-z, 0-9 and '-'")
        title = category.get("title")
        if title:
            if default_cat in ruleset.categories and ruleset.categories[default_cat] != title:
                raise RuleError(f"{where}: category {default_cat!r} is already titled "
                                f"{ruleset.categories[default_cat]!r}")
            ruleset.categories[default_cat] = str(title)
        elif default_cat not in ruleset.categories:
            raise RuleError(f"{where}: new category {default_cat!r} needs a title")
    sets = data.get("sets", {})
    if not isinstance(sets, dict) or not all(isinstance(v, list) for v in sets.values()):
        raise RuleError(f"{where}: [sets] maps names to lists of words")
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise RuleError(f"{where}: rules must be an array of tables ([[rules]])")
    for n, raw in enumerate(rules):
        here = f"{where}: rules[{n}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise RuleError(f"{here}: needs an id")
        cat = raw.get("category", default_cat)
        if cat not in ruleset.categories:
            raise RuleError(f"{here}: unknown category {cat!r}")
        local = raw["id"]
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", local):
            raise RuleError(f"{here}: id {local!r}: use a-z, 0-9 and '-'")
        rule_id = f"{cat}.{local}"
        if rule_id in ruleset.rules:
            raise RuleError(f"{here}: rule {rule_id} is defined twice")
        phrases = raw.get("phrases")
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) for p in phrases):
            raise RuleError(f"{here}: phrases must be a non-empty list of strings")
        extra = set(raw) - {"id", "category", "description", "phrases"}
        if extra:
            raise RuleError(f"{here}: unknown key {sorted(extra)[0]!r}")
        rule = Rule(cat, rule_id, str(raw.get("description", "")), tuple(phrases))
        ruleset.rules[rule_id] = rule
        for phrase in phrases:
            for expanded in _expand(phrase):
                steps = _compile_phrase(expanded, sets, f"{here} ({rule_id})")
                anchor = next(i for i, (kind, _) in enumerate(steps) if kind == "lit")
                if any(kind == "gap" for kind, _ in steps[:anchor]):
                    raise RuleError(f"{here}: phrase {phrase!r}: no gap before the first plain word")
                # zero-width steps before the anchor take no token
                # zero-width steps before the anchor take no token
                offset = anchor - sum(1 for kind, _ in steps[:anchor] if kind in ("notnext", "notprev"))
                ruleset.literals[id(steps)] = tuple(w for kind, w in steps if kind == "lit")
                ruleset._keep.append(steps)
                for word in steps[anchor][1]:
                    ruleset.anchors.setdefault(word, []).append((offset, steps, rule))


def _read_shorteners(path: Path) -> frozenset[str]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise RuleError(f"{path}: cannot read: {exc.strerror}") from None
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def load_rules(paths: Iterable[Path], shorteners: Path = SHORTENERS_FILE) -> RuleSet:
    ruleset = RuleSet()
    paths = list(paths)
    for path in paths:
        _read_rule_file(Path(path), ruleset)
    ruleset.sources = tuple(str(p) for p in paths)
    ruleset.shorteners = _read_shorteners(shorteners)
    vocabulary = {w for words in ruleset.anchors for w in [words] if w.isalpha() and len(w) >= 3 and w.isascii()}
    for entries in ruleset.anchors.values():
        for _, steps, _ in entries:
            for kind, arg in steps:
                if kind == "lit":
                    vocabulary.update(w for w in arg if w.isascii() and w.isalpha() and len(w) >= 3)
    ruleset.vocabulary = frozenset(vocabulary)
    ruleset.normaliser = _Normaliser(ruleset.vocabulary)
    return ruleset


_RULESETS: dict[tuple, RuleSet] = {}


def ruleset_for(extra: tuple[Path, ...] = ()) -> RuleSet:
    """The default rules plus extra rule files, compiled once per set of files (and their mtimes)."""
    files = [*default_rule_files(), *extra]
    key = tuple((str(p), _mtime(p)) for p in files)
    found = _RULESETS.get(key)
    if found is None:
        found = _RULESETS[key] = load_rules(files)
    return found


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


# ---------------------------------------------------------------------------------------------
# settings

@dataclass(frozen=True)
class Settings:
    default: str = "reject"
    categories: Mapping[str, str] = field(default_factory=dict)   # category -> reject|tag|off
    operator_domains: tuple[str, ...] = ()
    operator_addresses: tuple[str, ...] = ()
    extra_rules: tuple[Path, ...] = ()
    branded_links_only: bool = False
    link_allow: tuple[str, ...] = ()

    def action(self, category: str) -> str:
        return self.categories.get(category, self.default)


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return dict(vars(value))


def _paths(value: Any, base: Path) -> tuple[Path, ...]:
    if value is None or value == "":
        return ()
    items = [value] if isinstance(value, (str, Path)) else list(value)
    out = []
    for item in items:
        p = Path(item).expanduser()
        out.append(p if p.is_absolute() else base / p)
    return tuple(out)


def validate_table(data: Mapping[str, Any], where: str, client: bool = False,
                   known_categories: Iterable[str] | None = None) -> None:
    """Check one `[policy.content]` (or `[clients.X.content]`) table; raise RuleError naming the key."""
    allowed = {"default", "categories", "extra_rules", "link_allow"} | (
        {"branded_links_only"} if client else {"operator_domains", "operator_addresses"})
    for key in data:
        if key not in allowed:
            raise RuleError(f"{where}.{key}: unknown key (one of {', '.join(sorted(allowed))})")
    if "default" in data and data["default"] not in ACTIONS:
        raise RuleError(f"{where}.default: must be \"reject\", \"tag\" or \"off\", got {data['default']!r}")
    cats = data.get("categories", {})
    if not isinstance(cats, Mapping):
        raise RuleError(f"{where}.categories: must be a table of category = \"reject\"|\"tag\"|\"off\"")
    known = set(known_categories) if known_categories is not None else None
    for cat, action in cats.items():
        if action not in ACTIONS:
            raise RuleError(f"{where}.categories.{cat}: must be \"reject\", \"tag\" or \"off\", got {action!r}")
        if known is not None and cat not in known:
            raise RuleError(f"{where}.categories.{cat}: unknown category (known: {', '.join(sorted(known))})")
    for key in ("operator_domains", "operator_addresses", "link_allow"):
        value = data.get(key, [])
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
            raise RuleError(f"{where}.{key}: must be a list of strings")
    if "branded_links_only" in data and not isinstance(data["branded_links_only"], bool):
        raise RuleError(f"{where}.branded_links_only: must be true or false")
    extra = data.get("extra_rules")
    if extra is not None and not isinstance(extra, (str, Path, list, tuple)):
        raise RuleError(f"{where}.extra_rules: must be a file name or a list of file names")


def _domains(values: Iterable[str]) -> tuple[str, ...]:
    out = []
    for v in values:
        v = v.strip().lower().rstrip(".").lstrip("@")
        try:
            v = v.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        out.append(v)
    return tuple(out)


_SETTINGS: dict[tuple[int, str], tuple[Any, Settings, RuleSet]] = {}


def content_settings(config: Any, client: Any) -> Settings:
    """The content settings for one client: operator `[policy.content]` merged with the client's.

    Reads `config.content` and `client.content` (a dict, a dataclass or None) so wiring them into
    relay/config.py is one field each; without them every category is `reject`.
    """
    return _settings_and_rules(config, client)[0]


def _settings_and_rules(config: Any, client: Any) -> tuple[Settings, RuleSet]:
    key = (id(config), getattr(client, "name", ""))
    cached = _SETTINGS.get(key)
    if cached is not None and cached[0]() is config:
        return cached[1], cached[2]
    op = _as_dict(getattr(config, "content", None))
    cl = _as_dict(getattr(client, "content", None))
    base = Path(getattr(config, "path", "relay.toml")).absolute().parent
    validate_table(op, "policy.content")
    validate_table(cl, f"clients.{getattr(client, 'name', '?')}.content", client=True)
    categories = {**dict(op.get("categories") or {}), **dict(cl.get("categories") or {})}
    settings = Settings(
        default=cl.get("default") or op.get("default") or "reject",
        categories=categories,
        operator_domains=_domains(op.get("operator_domains") or ()),
        operator_addresses=tuple(a.strip().lower() for a in op.get("operator_addresses") or ()),
        extra_rules=_paths(op.get("extra_rules"), base) + _paths(cl.get("extra_rules"), base),
        branded_links_only=bool(cl.get("branded_links_only", False)),
        link_allow=_domains([*(op.get("link_allow") or ()), *(cl.get("link_allow") or ())]),
    )
    rules = ruleset_for(settings.extra_rules)
    unknown = set(categories) - set(rules.categories)
    if unknown:
        raise RuleError(f"content: unknown category {sorted(unknown)[0]!r} "
                        f"(known: {', '.join(sorted(rules.categories))})")
    try:
        ref = weakref.ref(config)
    except TypeError:
        def ref(config: Any = config) -> Any:  # objects without weak references (tests)
            return config
    _SETTINGS[key] = (ref, settings, rules)
    return settings, rules


# ---------------------------------------------------------------------------------------------
# links and headers

_SHORT_PUBLIC_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "com.au", "net.au", "org.au", "co.nz", "co.jp", "ne.jp",
    "or.jp", "com.br", "com.mx", "com.ar", "co.za", "com.cn", "com.tw", "co.kr", "co.in", "com.tr", "com.es",
    "co.il", "com.sg", "com.hk", "gv.at", "co.at"})
_TLDS = frozenset({
    "com", "net", "org", "info", "biz", "io", "co", "app", "dev", "shop", "online", "site", "store", "xyz", "top",
    "club", "me", "tv", "cc", "ly", "gl", "gd", "example", "test", "email", "link", "click", "live", "pro",
    "money", "bank", "finance", "support", "help", "security", "services", "center", "website", "tech", "cloud"})
_DOMAIN_IN_TEXT = re.compile(r"(?<![\w@.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,24}))(?![\w-])")
_EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@((?:[a-z0-9-]+\.)+[a-z]{2,24})")
_SHOWN_URL = re.compile(r"^\s*(?:(?:https?|ftp)://)?((?:[a-z0-9-]+\.)+[a-z]{2,24})(?::\d+)?(?:[/?#]\S*)?\s*$")
_SHOWN_URL_ANYWHERE = re.compile(r"(?:https?|ftp)://((?:[a-z0-9-]+\.)+[a-z]{2,24})")
_FILE_EXTENSIONS = frozenset({"pdf", "html", "htm", "jpg", "jpeg", "png", "gif", "doc", "docx", "zip", "php",
                              "aspx", "txt", "csv", "xls", "xlsx", "exe", "js", "css", "py", "md", "svg", "mp4",
                              "mp3", "ppt", "pptx", "json", "xml", "ics"})
_REPLY_PREFIX = re.compile(r"^\s*(?:re|fw|fwd|aw|wg|tr|sv|vs|antw|rv|enc|res|odp|vl|r)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]")


def looks_like_domain(name: str) -> bool:
    tld = name.rsplit(".", 1)[-1]
    if tld in _FILE_EXTENSIONS:
        return False
    return len(tld) == 2 or tld in _TLDS


def base_domain(host: str) -> str:
    labels = host.lower().rstrip(".").split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in _SHORT_PUBLIC_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def under(host: str, domains: Iterable[str]) -> bool:
    """host is one of the domains or a subdomain of one."""
    if isinstance(domains, (set, frozenset)):
        labels = host.split(".")
        return any(".".join(labels[i:]) in domains for i in range(len(labels)))
    return any(host == d or host.endswith("." + d) for d in domains)


_IP_CHARS = re.compile(r"[0-9a-fx.:]+", re.I)


def ip_literal(host: str) -> bool:
    """Dotted, decimal, hex or octal IPv4 hosts and bracketed IPv6 (what browsers resolve as IPs)."""
    host = host.strip("[]")
    if not _IP_CHARS.fullmatch(host):
        return False  # a name: letters beyond hex, or other characters
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    parts = host.split(".")
    if 1 <= len(parts) <= 4 and all(re.fullmatch(r"0x[0-9a-f]+|\d+", p) for p in parts if p) and parts[-1]:
        return True
    return False


_NETLOC = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?//([^/?#]*)", re.I)


def _host_of(url: str) -> tuple[str, bool] | None:
    """(host, has userinfo) of an http(s)/ftp URL, or None when it is not one."""
    url = url.strip().replace("\\", "/")
    low = url.lower()
    if low.startswith("www."):
        url = "http://" + url
    elif not low.startswith(("http://", "https://", "ftp://", "//")):
        return None
    m = _NETLOC.match(url)
    if m is None:
        return None
    netloc = m.group(1)
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    else:
        host = host.partition(":")[0]
    host = fold(host).rstrip(".")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        pass
    return host, "@" in netloc


def check_links(view: TextView, settings: Settings, rules: RuleSet, own: tuple[str, ...],
                public_host: str | None) -> list[Hit]:
    title = rules.categories["links"]
    op_title = rules.categories["operator"]
    hits: list[Hit] = []
    seen: set[str] = set()
    allowed = own + settings.link_allow + ((public_host,) if public_host else ())

    def hit(rule: str, evidence: str, category: str = "links", ttl: str = title) -> None:
        if rule not in seen:
            seen.add(rule)
            hits.append(Hit(f"{category}.{rule}", category, ttl, evidence))

    for link in view.links:
        url = link.url.strip()
        if url.lower().startswith("mailto:"):
            address = url[7:].split("?", 1)[0].strip().lower()
            if address in settings.operator_addresses or under(address.rpartition("@")[2], settings.operator_domains):
                hit("address", address, "operator", op_title)
            continue
        found = _host_of(url)
        if found is None or not found[0]:
            continue
        host, userinfo = found
        if public_host and host == public_host:
            continue  # the relay's own pages (subscription form, unsubscribe)
        if userinfo:
            hit("userinfo", url[:80])
        if ip_literal(host):
            hit("ip-host", host)
        if under(host, rules.shorteners):
            hit("shortener", host)
        if settings.operator_domains and under(host, settings.operator_domains):
            hit("domain", host, "operator", op_title)
        if link.source == "html" and link.text:
            shown_text = fold(link.text)
            m = _SHOWN_URL.match(shown_text) or _SHOWN_URL_ANYWHERE.search(shown_text)
            if m and looks_like_domain(m.group(1)):
                shown = m.group(1)
                if base_domain(shown) != base_domain(host) and not under(host, allowed):
                    hit("mismatched-anchor", f"{shown} -> {host}")
        if settings.branded_links_only and not under(host, allowed):
            hit("off-brand", host)
    return hits


def check_operator_text(text: str, settings: Settings, rules: RuleSet, public_url: str | None) -> list[Hit]:
    if not settings.operator_domains and not settings.operator_addresses:
        return []
    folded = fold(text)
    if public_url:
        folded = folded.replace(public_url.lower(), " ")
    title = rules.categories["operator"]
    for address in settings.operator_addresses:
        if re.search(r"(?<![\w.+-])" + re.escape(address) + r"(?![\w-])", folded):
            return [Hit("operator.address", "operator", title, address)]
    for domain in settings.operator_domains:
        if re.search(r"(?<![\w-])" + re.escape(domain) + r"(?![\w-])", folded):
            return [Hit("operator.domain", "operator", title, domain)]
    return []


def check_headers(ctx: MessageContext, subject: str, rules: RuleSet) -> list[Hit]:
    title = rules.categories["headers"]
    hits: list[Hit] = []
    message = ctx.message
    if _REPLY_PREFIX.match(fold(subject)) and not message.has("in-reply-to") and not message.has("references"):
        hits.append(Hit("headers.deceptive-subject", "headers", title,
                        f"Subject {subject[:40]!r} without In-Reply-To or References"))
    for value in message.values("from"):
        for name, address in getaddresses([value]):
            if not name:
                continue
            from_domain = address.rpartition("@")[2].lower().rstrip(".")
            # "=?utf-8?q?...?=.com" decodes as "... .com": readers see no space before the dot
            folded = re.sub(r"\s+\.(?=[a-z])", ".", fold(name))
            shown = [m.group(1) for m in _EMAIL_IN_TEXT.finditer(folded)]
            shown += [m.group(1) for m in _DOMAIN_IN_TEXT.finditer(folded) if looks_like_domain(m.group(1))]
            for domain in shown:
                aligned = (under(domain, (from_domain,)) or under(from_domain, (domain,))
                           or under(domain, ctx.client.sender_domains))
                if not aligned:
                    hits.append(Hit("headers.display-name", "headers", title,
                                    f"From display name shows {domain}, not {from_domain}"))
                    return hits
    return hits


# ---------------------------------------------------------------------------------------------
# the stage

def scan_message(ctx: MessageContext, settings: Settings, rules: RuleSet) -> list[Hit]:
    """Every hit in the message (one per rule), in the order found: headers, links, text."""
    view = reader_view(ctx.message.raw)
    hits: list[Hit] = []
    if settings.action("headers") != "off":
        hits += check_headers(ctx, view.subject, rules)
    public_url = getattr(getattr(ctx.config, "http", None), "public_url", None)
    public_host = (_host_of(public_url) or ("", False))[0] if public_url else None
    wants_links = settings.action("links") != "off" or (
        settings.action("operator") != "off" and settings.operator_domains)
    if wants_links:
        hits += [h for h in check_links(view, settings, rules, tuple(ctx.client.sender_domains), public_host)
                 if settings.action(h.category) != "off"]
    names = " ".join(name for value in ctx.message.values("from") for name, _ in getaddresses([value]) if name)
    visible = [view.subject, names, *view.visible]
    if settings.action("operator") != "off":
        hits += check_operator_text("\n".join(visible + view.hidden), settings, rules, public_url)
    active = any(settings.action(c) != "off" for c in rules.categories)
    if active:
        for rule, words in rules.scan(visible):
            if settings.action(rule.category) != "off":
                hits.append(Hit(rule.id, rule.category, rules.categories[rule.category], words))
        if view.hidden:
            for rule, words in rules.scan(view.hidden):
                if settings.action(rule.category) != "off" and all(h.rule_id != rule.id for h in hits):
                    hits.append(Hit(rule.id, rule.category, rules.categories[rule.category],
                                    words + " (hidden text)"))
    return hits


# above this, decoding and scanning take milliseconds: do it in a thread, not on the event loop
OFF_LOOP_BYTES = 32 * 1024


async def check(ctx: MessageContext) -> Verdict:
    settings, rules = _settings_and_rules(ctx.config, ctx.client)
    if len(ctx.message.raw) > OFF_LOOP_BYTES:
        hits = await asyncio.to_thread(scan_message, ctx, settings, rules)
    else:
        hits = scan_message(ctx, settings, rules)
    if not hits:
        return CONTINUE
    refusing = [h for h in hits if settings.action(h.category) == "reject"]
    if refusing:
        first = refusing[0]
        more = len(refusing) - 1
        reason = first.reason() + (f" (and {more} more)" if more else "")
        return Verdict.reject(reason, "content." + first.rule_id)
    tags = ctx.facts.setdefault(FACTS_KEY, [])
    for h in hits:
        if (h.rule_id, h.category) not in tags:
            tags.append((h.rule_id, h.category))
    return CONTINUE


def tag_header_fields(facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The header fields the core adds to every copy for `tag` hits: one per (rule, category)."""
    return [(TAG_HEADER, f"rule={rule}; category={category}") for rule, category in facts.get(FACTS_KEY, [])]
