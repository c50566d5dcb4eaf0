"""Stage content: prohibited content, deceptive links and deceptive headers, matched on what a reader sees.

The rules are data (`filters/content/rules/*.toml`, plus operator and client rule files); the
text they match is the decoded, reader-visible text of the message (`filters/content/textview.py`),
normalised against evasion (NFKC, case, accents, zero-width characters, homoglyphs, leetspeak,
spaced-out letters). Phrases match whole words only, so "Scunthorpe" or "cocktail" never hit.
Per category the operator (and per client) chooses `reject`, `tag` or `off`. See docs/CONTENT.md.
Folding, word tokens and phrase matching are in `filters/content/text.py`, the link and header
checks in `filters/content/links.py`; this module holds the rules, the settings and the stage.

A check stage never modifies the message: a `tag` hit is recorded in
`ctx.facts["content_tags"]` (a list of `(rule_id, category)` tuples) and the core adds one
`X-Consent-Relay-Content: rule=RULE; category=CATEGORY` header per tag to every copy
(`tag_header_fields(facts)` builds them).
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
import tomllib
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from filters.content.fuzzy import Misspellings
from filters.content.links import (Hit, base_domain, check_headers, check_links, check_operator_text,  # noqa: F401
                                   ip_literal, looks_like_domain, senders, under, _host_of)
from filters.content.rules import SHORTENERS_FILE, default_rule_files
from filters.content.text import SEP, Phrase, Step, WordIndex, _Normaliser, first_hits, fold, match  # noqa: F401
from filters.context import MessageContext
from filters.verdict import CONTINUE, Verdict
from filters.content.textview import reader_view_of

NAME = "content"
DESCRIPTION = ("prohibited content categories, deceptive links and deceptive headers, matched on the "
               "decoded reader-visible text; per category reject, tag or off")
PHASE = "message"

ACTIONS = ("reject", "tag", "off")
FACTS_KEY = "content_tags"
TAG_HEADER = "X-Consent-Relay-Content"

# categories whose rules are code (links and headers), not phrase lists
# rules of this category describe a context (a fraud warning, a security report): they never refuse
# or tag; a rule that names one under `unless` does not count in a message where it matches
CONTEXT = "context"

BUILTIN_CATEGORIES = {
    "links": "deceptive or disallowed links",
    "headers": "deceptive headers",
    "operator": "operator domain or address in client mail",
    "images": "image-only mail",
}


class RuleError(ValueError):
    """A rule file or content setting is wrong; the message names the file or key."""


# ---------------------------------------------------------------------------------------------
# rules

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

    def scan(self, text: str | list[str], limit_hits: int = 50) -> list[tuple[Rule, str]]:
        """Each rule that matches the text (or blocks of text) once, with the normalised words that matched.

        In the order of a walk over the words: by the position of each phrase's first plain word,
        then by the phrase's place in `anchors` for that word. Only phrases whose every plain word
        occurs somewhere can match; `first_hits` finds where each first does.
        """
        assert self.normaliser is not None and self.index is not None
        stream = self.normaliser.stream([text] if isinstance(text, str) else list(text))
        fuzzy = self.misspellings
        if fuzzy is None:
            occurrences = self.index.offsets(stream)
        else:  # where the rule words are, and the tokens that may be misspellings of them: one walk
            occurrences, near = self.index.offsets_near(stream, fuzzy)
            fixed = fuzzy.apply(stream, near)
            if fixed is not stream:
                stream, occurrences = fixed, self.index.offsets(fixed)
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
        unless = raw.get("unless", [])
        if not isinstance(unless, list) or not all(isinstance(u, str) and u.startswith(CONTEXT + ".")
                                                   for u in unless):
            raise RuleError(f"{here}: unless must be a list of context rule ids ({CONTEXT}.NAME)")
        extra = set(raw) - {"id", "category", "description", "phrases", "unless"}
        if extra:
            raise RuleError(f"{here}: unknown key {sorted(extra)[0]!r}")
        rule = Rule(cat, rule_id, str(raw.get("description", "")), tuple(phrases), tuple(unless))
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


def load_rules(paths: Iterable[Path], shorteners: Path = SHORTENERS_FILE) -> RuleSet:
    ruleset = RuleSet()
    paths = list(paths)
    for path in paths:
        _read_rule_file(Path(path), ruleset)
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
# the stage

def scan_message(ctx: MessageContext, settings: Settings, rules: RuleSet) -> list[Hit]:
    """Every hit in the message (one per rule), in the order found: headers, links, text."""
    # the campaign fingerprint and promo-guard read the same text: whichever runs first builds it
    view = ctx.facts.get("text_view")
    if view is None:
        view = ctx.facts["text_view"] = reader_view_of(ctx.message.headers, ctx.message.body)
    hits: list[Hit] = []
    froms = senders(ctx)
    if settings.action("headers") != "off":
        hits += check_headers(ctx, view.subject, rules, froms)
    public_url = getattr(getattr(ctx.config, "http", None), "public_url", None)
    public_host = (_host_of(public_url) or ("", False))[0] if public_url else None
    if view.image_only and settings.action("images") != "off":
        hits.append(Hit("images.image-only", "images", rules.categories["images"],
                        "images without alt text and next to no text"))
    if view.links:  # link rules of several categories (links, affiliate, gambling.link ...): filtered by action
        hits += [h for h in check_links(view, settings, rules, tuple(ctx.client.sender_domains), public_host)
                 if settings.action(h.category) != "off"]
    names = " ".join(name for name, _ in froms if name)
    visible = [view.subject, *view.visible, names]  # (the sender's name last: not read into the subject or text)
    if settings.action("operator") != "off" and (settings.operator_domains or settings.operator_addresses):
        hits += check_operator_text("\n".join(visible + view.hidden), settings, rules, public_url)
    active = any(settings.action(c) != "off" for c in rules.categories)
    if active:
        found = rules.scan(visible)
        contexts = {rule.id for rule, _ in found if rule.category == CONTEXT}

        def counts(rule: Rule) -> bool:
            return (rule.category != CONTEXT and settings.action(rule.category) != "off"
                    and not contexts.intersection(rule.unless))
        for rule, words in found:
            if counts(rule):
                hits.append(Hit(rule.id, rule.category, rules.categories[rule.category], words))
        if view.hidden:
            for rule, words in rules.scan(view.hidden):
                if counts(rule) and all(h.rule_id != rule.id for h in hits):
                    hits.append(Hit(rule.id, rule.category, rules.categories[rule.category],
                                    words + " (hidden text)"))
    return hits


# above this, decoding and scanning take milliseconds: do it in a thread, not on the event loop
OFF_LOOP_BYTES = 32 * 1024


async def check(ctx: MessageContext) -> Verdict:
    settings, rules = _settings_and_rules(ctx.config, ctx.client)
    if ctx.message.size > OFF_LOOP_BYTES:
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
