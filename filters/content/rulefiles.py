"""Rule files to a rule set: phrase syntax compiled, TOML rule files read and checked, compiled once per set of files."""
from __future__ import annotations

import itertools
import os
import re
import tomllib
from pathlib import Path
from typing import Iterable, Mapping

from filters.content.folding import fold
from filters.content.fuzzy import Misspellings
from filters.content.phrases import Phrase, Step
from filters.content.rules import SHARED_SETS_FILE, SHORTENERS_FILE, default_rule_files
from filters.content.ruleset import CONTEXT, OFFER_PREFIX, Rule, RuleError, RuleSet
from filters.content.tokens import _Normaliser
from filters.content.wordindex import WordIndex


_GROUP = re.compile(r"\(([^()]*)\)")


def _expand(phrase: str) -> list[str]:
    """`(a b|c) d` -> ["a b d", "c d"]: parenthesised groups may hold several words per option."""
    groups = _GROUP.findall(phrase)
    if not groups:
        return [phrase]
    template = _GROUP.sub("\x00", phrase)
    out = []
    for choice in itertools.product(*[_options(g) for g in groups]):
        text = template
        for option in choice:
            text = text.replace("\x00", option.strip(), 1)
        out.append(" ".join(text.split()))
    return out


_ONE_WORD = re.compile(r"[^\s|()#*!~<@]+")


def _options(group: str) -> list[str]:
    """A group's options, the one-word ones as one alternation (`(a|b|c d)` -> ["a|b", "c d"]): a
    phrase per option would make thousands of phrases of the same few words."""
    options = [o.strip() for o in group.split("|")]
    single = [o for o in options if _ONE_WORD.fullmatch(o) and len(_word_tokens(o)) == 1]
    rest = [o for o in options if o not in single]
    return (["|".join(single)] if single else []) + rest


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
    # one object per distinct step: thousands of phrases share their word sets, and every object
    # the rule set holds is one the garbage collector walks on each full collection
    return tuple(_STEPS.setdefault(step, step) if not isinstance(step[1], frozenset)
                 else _STEPS.setdefault(step, (step[0], _SETS.setdefault(step[1], step[1]))) for step in steps)


_STEPS: dict[Step, Step] = {}
_SETS: dict[frozenset[str], frozenset[str]] = {}


def _read_shared_sets(path: Path = SHARED_SETS_FILE) -> dict[str, list[str]]:
    """The word sets every rule file may use (`shared-sets.toml`: a `[sets]` table only)."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path.name}: not valid TOML: {exc}") from None
    sets = data.get("sets", {})
    if set(data) - {"sets"} or not isinstance(sets, dict) or not all(isinstance(v, list) for v in sets.values()):
        raise RuleError(f"{path.name}: holds one [sets] table mapping names to lists of words")
    return sets


def _check_unless(unless: object, here: str) -> list[str]:
    if not isinstance(unless, list) or not all(isinstance(u, str) and u.startswith(CONTEXT + ".") for u in unless):
        raise RuleError(f"{here}: unless must be a list of context rule ids ({CONTEXT}.NAME)")
    return unless


def _read_rule_file(path: Path, ruleset: RuleSet, shared: Mapping[str, list[str]] | None = None,
                    offers: bool = False) -> None:
    """Read one rule file into `ruleset`: its rules other than the offer signals (`context.offer-*`),
    or, with `offers`, only those."""
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
    if isinstance(category, dict) and set(category) - {"id", "title", "unless"}:
        raise RuleError(f"{where}: category: unknown key {sorted(set(category) - {'id', 'title', 'unless'})[0]!r} "
                        "(id, title, unless)")
    # contexts named for the whole category: added to each of its rules in this file
    category_unless = _check_unless(category.get("unless", []), f"{where}: category") if isinstance(category, dict) else []
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
    _note_word_sets(ruleset, path.stem, sets)
    if shared:
        sets = {**shared, **sets}
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
        unless = _check_unless(raw.get("unless", []), here)
        if cat == default_cat:
            unless = list(dict.fromkeys([*unless, *category_unless]))
        extra = set(raw) - {"id", "category", "description", "phrases", "unless"}
        if extra:
            raise RuleError(f"{here}: unknown key {sorted(extra)[0]!r}")
        rule = Rule(cat, rule_id, str(raw.get("description", "")), tuple(phrases), tuple(unless))
        if rule_id.startswith(OFFER_PREFIX) != offers:
            for phrase in phrases:  # checked here too, compiled in the other rule set
                for expanded in _expand(phrase):
                    _compile_phrase(expanded, sets, f"{here} ({rule_id})")
            continue
        ruleset.rules[rule_id] = rule
        for phrase in phrases:
            for expanded in _expand(phrase):
                steps = _compile_phrase(expanded, sets, f"{here} ({rule_id})")
                anchor = next(i for i, (kind, _) in enumerate(steps) if kind == "lit")
                if any(kind == "gap" for kind, _ in steps[:anchor]):
                    raise RuleError(f"{here}: phrase {phrase!r}: no gap before the first plain word")
                # zero-width steps before the anchor take no token
                offset = anchor - sum(1 for kind, _ in steps[:anchor] if kind in ("notnext", "notprev"))
                ruleset.literals[id(steps)] = tuple(w for kind, w in steps if kind == "lit")
                ruleset.phrases[id(steps)] = Phrase(steps, offset)
                ruleset._keep.append(steps)
                entry = (offset, steps, rule)  # one tuple, listed under each of its anchor words
                for word in steps[anchor][1]:
                    ruleset.anchors.setdefault(word, []).append(entry)


def _read_shorteners(path: Path) -> frozenset[str]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise RuleError(f"{path}: cannot read: {exc.strerror}") from None
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def _note_word_sets(ruleset: RuleSet, source: str, sets: Mapping[str, list[str]]) -> None:
    """Record the plain words of a file's word sets in `ruleset.word_sets` (see RuleSet)."""
    for name, words in sets.items():
        for word in words:
            if isinstance(word, str) and word.isalpha():
                ruleset.word_sets[word] = (*ruleset.word_sets.get(word, ()), f"w:{source}/{name}")


def load_rules(paths: Iterable[Path], shorteners: Path = SHORTENERS_FILE, offers: bool = False) -> RuleSet:
    """The rule set of these files. The offer signals (`context.offer-*`) are a rule set of their own,
    `offers`: they are looked for only in a message where a stance context would excuse a rule."""
    ruleset = RuleSet()
    paths = list(paths)
    shared = _read_shared_sets()
    _note_word_sets(ruleset, "shared", shared)
    for path in paths:
        _read_rule_file(Path(path), ruleset, shared, offers)
    if not offers:
        signals = load_rules(paths, shorteners, offers=True)
        ruleset.offers = signals if signals.rules else None
    ruleset.sources = tuple(str(p) for p in paths)
    for rule in ruleset.rules.values():
        missing = [u for u in rule.unless if u not in ruleset.rules]
        if missing:
            raise RuleError(f"rule {rule.id}: unless names an unknown context rule {missing[0]!r}")
    ruleset.shorteners = _read_shorteners(shorteners)
    vocabulary = {w for words in ruleset.anchors for w in [words] if w.isalpha() and len(w) >= 3 and w.isascii()}
    for entries in ruleset.anchors.values():
        for _, steps, _ in entries:
            for kind, arg in steps:
                if kind == "lit":
                    vocabulary.update(w for w in arg if w.isascii() and w.isalpha() and len(w) >= 3)
    ruleset.vocabulary = frozenset(vocabulary)
    ruleset.normaliser = _Normaliser(ruleset.vocabulary)
    for word, entries in ruleset.anchors.items():
        for n, (_, steps, rule) in enumerate(entries):
            ruleset.rank.setdefault((word, id(steps)), n)
            ruleset.rule_of[id(steps)] = rule
    for key, phrase in ruleset.phrases.items():
        for word in phrase.steps[phrase.pivot][1]:
            ruleset.by_pivot.setdefault(word, []).append(key)
    words = {w for steps in ruleset.literals.values() for lit in steps for w in lit}
    ruleset.misspellings = Misspellings(words, words)
    ruleset.index = WordIndex((w for steps in ruleset.literals.values() for words in steps for w in words),
                              (w for phrase in ruleset.phrases.values() for w in phrase.steps[phrase.pivot][1]))
    return ruleset


_RULESETS: dict[tuple, RuleSet] = {}


def ruleset_for(extra: tuple[Path, ...] = ()) -> RuleSet:
    """The default rules plus extra rule files, compiled once per set of files (and their mtimes)."""
    files = [*default_rule_files(), *extra]
    key = tuple((str(p), _mtime(p)) for p in [*files, SHARED_SETS_FILE])
    found = _RULESETS.get(key)
    if found is None:
        found = _RULESETS[key] = load_rules(files)
    return found


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1
